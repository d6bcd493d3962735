import { execFileSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import path from 'node:path';

/** The `redis-server` program the local cluster runs. */
export interface RedisBinary {
  path: string;
  /** Full version, e.g. `7.0.15`. */
  version: string;
  major: number;
}

/** Oldest Redis the cluster runs: `INFO replication` with `master_replid`, streams, ACL-style auth. */
const MIN_MAJOR = 6;

/** How to get `redis-server`, for error messages and skipped tests. */
export const REDIS_INSTALL_HINT =
  'install it with `sudo apt-get install redis-server` (Debian, Ubuntu) or `brew install redis` (macOS), ' +
  'or set REGIONAL_REDIS_SERVER to the path of a redis-server binary';

/** `redis-server` cannot be found or run; the message says how to install it. */
export class RedisMissingError extends Error {
  constructor(detail: string) {
    super(
      `redis-server is needed for the Redis part of the local cluster, but ${detail}: ${REDIS_INSTALL_HINT}.`,
    );
    this.name = 'RedisMissingError';
  }
}

function executable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function onPath(program: string, searchPath: string): string | null {
  for (const dir of searchPath.split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, program);
    if (executable(candidate)) return candidate;
  }
  return null;
}

/**
 * Finds `redis-server`: `REGIONAL_REDIS_SERVER` if set, else the first one on `PATH`. No npm
 * package ships it, so it comes from the system (the Debian package, Homebrew).
 *
 * @example
 * const { path, version } = findRedisServer(); // throws RedisMissingError with the install hint
 */
export function findRedisServer(env: NodeJS.ProcessEnv = process.env): RedisBinary {
  const given = env.REGIONAL_REDIS_SERVER;
  const file = given || onPath('redis-server', env.PATH ?? '');
  if (!file) throw new RedisMissingError('there is no redis-server on PATH');
  if (!executable(file)) {
    throw new RedisMissingError(`REGIONAL_REDIS_SERVER=${given} is not an executable file`);
  }
  let output: string;
  try {
    output = execFileSync(file, ['--version'], { encoding: 'utf8', timeout: 10_000 });
  } catch (error) {
    throw new RedisMissingError(`${file} does not run (${(error as Error).message.trim()})`);
  }
  const match = /v=(\d+)\.(\d+)\.(\d+)/.exec(output);
  if (!match) throw new RedisMissingError(`${file} --version printed no version: ${output.trim()}`);
  const major = Number(match[1]);
  if (major < MIN_MAJOR) {
    throw new RedisMissingError(
      `${file} is Redis ${match[1]}.${match[2]}.${match[3]}, older than ${MIN_MAJOR}.0`,
    );
  }
  return { path: file, version: `${match[1]}.${match[2]}.${match[3]}`, major };
}

/**
 * Why the Redis tests cannot run here (`redis-server` missing), or `null` when they can. Under
 * CI (`CI` set) always `null`: there a missing redis-server must fail the tests, not skip them.
 *
 * @example
 * const reason = redisUnavailableReason();
 * (reason ? describe.skip : describe)(`Redis${reason ? ` — SKIPPED: ${reason}` : ''}`, () => {});
 */
export function redisUnavailableReason(env: NodeJS.ProcessEnv = process.env): string | null {
  if (env.CI) return null;
  try {
    findRedisServer(env);
    return null;
  } catch (error) {
    if (error instanceof RedisMissingError) return error.message;
    throw error;
  }
}
