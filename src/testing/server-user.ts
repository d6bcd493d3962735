import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, renameSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { PostgresBinaries } from './postgres/binaries.js';

/** The unprivileged account servers run as when this process is root. */
export interface ServerUser {
  name: string;
  uid: number;
  gid: number;
}

function lookup(name: string): ServerUser | null {
  const id = (flag: string) =>
    spawnSync('id', [flag, name], { encoding: 'utf8' }).stdout?.trim() ?? '';
  const uid = id('-u');
  const gid = id('-g');
  if (!/^\d+$/.test(uid) || !/^\d+$/.test(gid)) return null;
  return { name, uid: Number(uid), gid: Number(gid) };
}

/**
 * Postgres refuses to run as root. When this process is root, servers run as the user named
 * by `REGIONAL_SERVER_USER`, else `postgres`, else a `regional` system user created on first
 * use. When it is not root, servers run as the current user and this returns `null`.
 */
export function resolveServerUser(): ServerUser | null {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return null;
  const requested = process.env.REGIONAL_SERVER_USER;
  if (requested) {
    const user = lookup(requested);
    if (!user) {
      throw new Error(
        `REGIONAL_SERVER_USER=${requested}: no such user. Name an existing unprivileged user, or unset it to use "postgres".`,
      );
    }
    if (user.uid === 0)
      throw new Error('REGIONAL_SERVER_USER must not be root: Postgres refuses to run as root.');
    return user;
  }
  const existing = lookup('postgres') ?? lookup('regional');
  if (existing) return existing;
  try {
    execFileSync(
      'useradd',
      ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', 'regional'],
      {
        stdio: 'pipe',
      },
    );
  } catch (error) {
    throw new Error(
      'Running as root, Postgres needs an unprivileged user, and none was found: creating user "regional" ' +
        `failed (${(error as Error).message.trim()}). Create one and set REGIONAL_SERVER_USER to its name.`,
    );
  }
  const created = lookup('regional');
  if (!created) throw new Error('Created user "regional" but cannot look it up with `id`.');
  return created;
}

const canAccess = (user: ServerUser, flag: '-x' | '-w', target: string) =>
  spawnSync('test', [flag, target], { uid: user.uid, gid: user.gid }).status === 0;

/**
 * Checks that `user` can create files in `dir`, naming the folder that stops it if not
 * (every parent folder needs its search bit for that user).
 */
export function assertWritableBy(user: ServerUser, dir: string): void {
  if (canAccess(user, '-w', dir)) return;
  const parts = path.resolve(dir).split(path.sep).filter(Boolean);
  let current: string = path.sep;
  for (const part of parts) {
    current = path.join(current, part);
    if (!canAccess(user, '-x', current)) {
      throw new Error(
        `The Postgres servers run as user "${user.name}", who cannot enter ${current} (no search permission), ` +
          `so cannot reach the data directory ${dir}. Either allow it (chmod o+x ${current}) or choose a ` +
          `data directory that user can reach, e.g. --dir ${path.join(os.tmpdir(), 'regional')}.`,
      );
    }
  }
  throw new Error(
    `User "${user.name}" cannot write to ${dir}; chown it to that user or choose another --dir.`,
  );
}

/**
 * The server user must be able to execute the binaries. A checkout under a private home folder
 * (mode 700) hides them: then a copy is made once in the system temp folder, which it can reach.
 */
export function binariesUsableBy(
  binaries: PostgresBinaries,
  user: ServerUser | null,
): PostgresBinaries {
  if (!user || canAccess(user, '-x', binaries.postgres)) return binaries;
  const root = path.join(os.tmpdir(), `regional-postgres-${binaries.version}`);
  const relocated = (file: string) => path.join(root, path.relative(binaries.root, file));
  if (!existsSync(relocated(binaries.postgres))) {
    const staging = `${root}.${process.pid}.tmp`;
    mkdirSync(path.dirname(root), { recursive: true });
    cpSync(binaries.root, staging, { recursive: true, verbatimSymlinks: true });
    chmodSync(staging, 0o755);
    try {
      renameSync(staging, root);
    } catch {
      // Another process placed the same copy first; theirs is as good as ours.
    }
  }
  const copy = {
    ...binaries,
    root,
    initdb: relocated(binaries.initdb),
    postgres: relocated(binaries.postgres),
  };
  if (!canAccess(user, '-x', copy.postgres)) {
    throw new Error(
      `User "${user.name}" cannot execute ${binaries.postgres} nor its copy ${copy.postgres}. ` +
        'Make the checkout reachable (chmod o+x on its parent folders).',
    );
  }
  return copy;
}
