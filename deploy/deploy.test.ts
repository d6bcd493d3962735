import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { loadConfig } from '../src/core/config.js';
import { HEALTH_LIVE_PATH, HEALTH_READY_PATH } from '../src/http/endpoints.js';
import { loadHttpSettings } from '../src/http/settings.js';
import { findPostgresBinaries } from '../src/testing/postgres/binaries.js';

// No Docker engine runs here: these tests check that the recipes are well formed and agree
// with the code — ports, variables, commands, paths.

const ROOT = path.resolve(import.meta.dirname, '..');
const read = (file: string) => readFileSync(path.join(ROOT, file), 'utf8');
const SECRET = 'e469510d32bf70170f9f515aab060069cedc4684b2b41a80e30c7b419bc96dce';

/** Every source file of the project, to check that a variable is really read somewhere. */
const sources = (() => {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir)) {
      const full = path.join(dir, entry);
      if (statSync(full).isDirectory()) walk(full);
      else if (full.endsWith('.ts') && !full.endsWith('.test.ts'))
        out.push(readFileSync(full, 'utf8'));
    }
  };
  walk(path.join(ROOT, 'src'));
  walk(path.join(ROOT, 'examples'));
  return out.join('\n');
})();

/** Variables every recipe may set that the platform or the OS reads, not our code. */
const PLATFORM_VARIABLES = new Set(['NODE_ENV']);

function expectReadByCode(variables: Iterable<string>): void {
  for (const name of variables) {
    if (PLATFORM_VARIABLES.has(name)) continue;
    expect(
      sources.includes(name),
      `${name} is set by a recipe but read nowhere in src/ or examples/`,
    ).toBe(true);
  }
}

/** `--dir <path>` of a `regional migrate` command, checked to hold migration files. */
function expectMigrateCommand(command: string): void {
  expect(command).toMatch(/\bregional(\.js)? migrate\b/);
  const dir = /--dir\s+(\S+)/.exec(command)?.[1];
  expect(dir, command).toBeDefined();
  const files = readdirSync(path.join(ROOT, dir as string));
  expect(files.some((f) => f.endsWith('.sql'))).toBe(true);
}

const dockerfile = read('deploy/Dockerfile');
const instruction = (name: string) =>
  dockerfile
    .split('\n')
    .filter((line) => line.startsWith(`${name} `))
    .map((line) => line.slice(name.length + 1).trim());

describe('deploy/Dockerfile', () => {
  const port = /PORT=(\d+)/.exec(dockerfile)?.[1];

  it('builds on a Node.js the package supports and installs from the lockfile', () => {
    const image = instruction('FROM')[0] as string;
    const major = Number(/node:(\d+)/.exec(image)?.[1]);
    const required = Number(/(\d+)/.exec(JSON.parse(read('package.json')).engines.node)?.[1]);
    expect(major).toBeGreaterThanOrEqual(required);
    expect(instruction('COPY')[0]).toBe('package.json package-lock.json ./');
    expect(instruction('RUN').join('\n')).toMatch(/npm ci .*--omit=optional/);
  });

  it('exposes the port the app listens on, and its health check is the liveness endpoint', () => {
    expect(instruction('EXPOSE')).toEqual([port]);
    expect(dockerfile).toContain(HEALTH_LIVE_PATH);
  });

  it('starts a server that exists, with every package it imports installed', () => {
    const cmd = JSON.parse(instruction('CMD')[0] as string) as string[];
    const entry = cmd.find((part) => part.endsWith('.ts')) as string;
    expect(existsSync(path.join(ROOT, entry))).toBe(true);
    const pkg = JSON.parse(read('package.json'));
    const installed = new Set([
      ...Object.keys(pkg.dependencies),
      ...Object.keys(pkg.devDependencies),
    ]);
    const forum = readdirSync(path.join(ROOT, 'examples/forum'))
      .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'))
      .map((f) => read(`examples/forum/${f}`))
      .join('\n');
    for (const [, specifier] of forum.matchAll(/from '([^.'][^']*)'/g)) {
      const name = (specifier as string).startsWith('@')
        ? (specifier as string).split('/').slice(0, 2).join('/')
        : ((specifier as string).split('/')[0] as string);
      if (name === 'regional' || name.startsWith('node:')) continue;
      expect(
        installed.has(name),
        `${name} (imported by the forum) is not installed by npm ci`,
      ).toBe(true);
    }
    // Dev dependencies are what the forum runs on, so the install must include them.
    expect(instruction('RUN').join('\n')).toMatch(/--include=dev/);
  });

  it('sets only variables the code reads', () => {
    const set = instruction('ENV').flatMap((line) =>
      [...line.matchAll(/([A-Z_]+)=/g)].map((m) => m[1] as string),
    );
    expectReadByCode(set);
  });
});

describe('deploy/fly.toml', () => {
  const fly = parseToml(read('deploy/fly.toml')) as {
    app: string;
    primary_region: string;
    build: { dockerfile: string };
    env: Record<string, string>;
    deploy: { release_command: string };
    http_service: { internal_port: number; checks: { path: string; method: string }[] };
  };

  it('names the primary region once, for Fly and for Regional', () => {
    expect(fly.env.PRIMARY_REGION).toBe(fly.primary_region);
  });

  it('serves on the port the image listens on, checked by the readiness endpoint', () => {
    expect(String(fly.http_service.internal_port)).toBe(fly.env.PORT);
    expect(fly.env.PORT).toBe(/PORT=(\d+)/.exec(dockerfile)?.[1]);
    expect(fly.http_service.checks.map((c) => c.path)).toEqual([HEALTH_READY_PATH]);
  });

  it('builds the Dockerfile beside it and runs migrations as the release command', () => {
    expect(existsSync(path.join(ROOT, 'deploy', fly.build.dockerfile))).toBe(true);
    expectMigrateCommand(fly.deploy.release_command);
  });

  it("reaches the primary region's instances by Fly's private DNS, on the app's port", () => {
    const url = new URL(fly.env.REGIONAL_PRIMARY_URL as string);
    expect(url.hostname).toBe(`${fly.primary_region}.${fly.app}.internal`);
    expect(url.port).toBe(fly.env.PORT);
  });

  it('is a valid configuration for Regional in a replica region, with the replica derived as Fly expects', () => {
    expectReadByCode(Object.keys(fly.env));
    const env = {
      ...fly.env,
      FLY_APP_NAME: fly.app,
      FLY_REGION: 'syd',
      DATABASE_URL: 'postgres://forum:secret@forum-db.flycast:5432/forum',
      REGIONAL_SECRET: SECRET,
    };
    const config = loadConfig({}, env);
    expect(config).toMatchObject({ mode: 'multi', region: 'syd', isPrimaryRegion: false });
    expect(new URL(config.replicaUrl as string).port).toBe('5433');
    expect(loadHttpSettings({ env }).mode).toBe('fly-replay');
  });
});

describe('deploy/docker-compose.yml', () => {
  const compose = parseYaml(read('deploy/docker-compose.yml'), { merge: true }) as {
    services: Record<
      string,
      {
        image?: string;
        build?: { context: string; dockerfile: string };
        command?: string[] | string;
        environment?: Record<string, string>;
        volumes?: string[];
        ports?: string[];
        depends_on?: Record<string, { condition: string }>;
        healthcheck?: { test: string[] };
      }
    >;
  };
  const services = compose.services;
  const apps = ['iad', 'cdg', 'syd'].map((region) => [region, services[`app-${region}`]] as const);
  const substitute = (env: Record<string, string>) =>
    Object.fromEntries(
      Object.entries(env).map(([k, v]) => [
        k,
        String(v).startsWith('${REGIONAL_SECRET') ? SECRET : String(v),
      ]),
    );

  it('runs the official Postgres image of the same major version as the local cluster', () => {
    const major = findPostgresBinaries().major;
    for (const name of ['pg-iad', 'pg-cdg', 'pg-syd'])
      expect(services[name]?.image).toBe(`postgres:${major}`);
  });

  it('makes each replica a streaming replica of the primary, with its own slot, using the replication user the init script creates', () => {
    const init = services['pg-iad']?.volumes?.find((v) =>
      v.includes('docker-entrypoint-initdb.d'),
    ) as string;
    const script = read(path.join('deploy', init.split(':')[0] as string));
    const password = /PASSWORD '([^']+)'/.exec(script)?.[1];
    expect(script).toMatch(/CREATE ROLE replicator WITH REPLICATION LOGIN/);
    for (const region of ['cdg', 'syd']) {
      const command = String(services[`pg-${region}`]?.command);
      expect(command).toMatch(/pg_basebackup\s.*-h pg-iad -U replicator .*-R .*-S replica_/s);
      expect(command).toContain(`-S replica_${region}`);
      expect(command).toContain(`PGPASSWORD=${password}`);
      expect(services[`pg-${region}`]?.depends_on?.['pg-iad']?.condition).toBe('service_healthy');
    }
    expect(String(services['pg-iad']?.command)).toMatch(/wal_level=replica/);
  });

  it('runs migrations once, in the primary region, before any app instance', () => {
    const migrate = services.migrate;
    expectMigrateCommand(((migrate?.command ?? []) as string[]).join(' '));
    expect(migrate?.environment?.REGION).toBe(migrate?.environment?.PRIMARY_REGION);
    for (const [, app] of apps)
      expect(app?.depends_on?.migrate?.condition).toBe('service_completed_successfully');
  });

  it("gives every region's app a configuration Regional accepts, pointing at the right servers", () => {
    const ports = new Set<string>();
    for (const [region, app] of apps) {
      const env = substitute(app?.environment ?? {});
      expectReadByCode(Object.keys(env));
      const config = loadConfig({}, env);
      expect(config.region).toBe(region);
      expect(new URL(config.databaseUrl).hostname).toBe('pg-iad');
      if (region === 'iad') expect(config.replicaUrl).toBeNull();
      else expect(new URL(config.replicaUrl as string).hostname).toBe(`pg-${region}`);
      const primary = new URL(env.REGIONAL_PRIMARY_URL as string);
      expect(services[primary.hostname]).toBeDefined();
      expect(primary.port).toBe(env.PORT);
      expect(loadHttpSettings({ env }).mode).toBe('proxy');
      expect(app?.ports?.[0]).toMatch(new RegExp(`:${env.PORT}$`));
      ports.add((app?.ports?.[0] ?? '').split(':')[0] as string);
      expect(app?.healthcheck?.test.join(' ')).toContain(HEALTH_READY_PATH);
      expect(
        existsSync(
          path.resolve(
            ROOT,
            'deploy',
            app?.build?.context as string,
            app?.build?.dockerfile as string,
          ),
        ),
      ).toBe(true);
    }
    expect(ports.size).toBe(3);
  });
});
