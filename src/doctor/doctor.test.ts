import { spawn } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serveWeb } from '../../test/support/web-server.js';
import { Keyring } from '../core/signing.js';
import { pingHandler } from '../health/ping.js';
import { LocalCluster } from '../testing/cluster.js';
import { freePort } from '../testing/ports.js';
import { runDoctor } from './index.js';

const SECRET = 'e469510d32bf70170f9f515aab060069cedc4684b2b41a80e30c7b419bc96dce';
let cluster: LocalCluster;
let iadInstance: Awaited<ReturnType<typeof serveWeb>>;
let strangerInstance: Awaited<ReturnType<typeof serveWeb>>;
let primaryUrlFromSyd: string;

beforeAll(async () => {
  cluster = await LocalCluster.start({
    temporary: true,
    regions: ['iad', 'syd'],
    rttMs: { syd: 40 },
  });
  // The primary-region instance mounts the signed ping; a second one was given another secret.
  iadInstance = await serveWeb(pingHandler({ keyring: new Keyring(SECRET), region: 'iad' }));
  strangerInstance = await serveWeb(
    pingHandler({
      keyring: new Keyring('289f3b097007a46452ac56eea0a4634b134254c24a923eb373e5716181b09be6'),
      region: 'iad',
    }),
  );
  const port = await cluster.route({
    from: 'syd',
    to: 'iad',
    port: iadInstance.port,
    name: 'http',
  });
  primaryUrlFromSyd = `http://127.0.0.1:${port}`;
});

afterAll(async () => {
  await iadInstance?.close();
  await strangerInstance?.close();
  await cluster?.stop();
});

const sydEnv = (extra: Record<string, string | undefined> = {}) => ({
  ...cluster.env('syd'),
  REGIONAL_SECRET: SECRET,
  REGIONAL_PRIMARY_URL: primaryUrlFromSyd,
  ...extra,
});

/** Runs `regional doctor` with only `env` (and PATH), as a user would. */
const runCli = (env: Record<string, string | undefined>, args: string[] = []) =>
  new Promise<{ code: number | null; stdout: string }>((resolve) => {
    const child = spawn(
      process.execPath,
      [path.resolve(import.meta.dirname, '../../bin/regional.js'), 'doctor', ...args],
      {
        env: { PATH: process.env.PATH, ...env } as NodeJS.ProcessEnv,
      },
    );
    let stdout = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.on('exit', (code) => resolve({ code, stdout }));
  });

const failures = async (env: Record<string, string | undefined>, peers: string[] = []) =>
  (await runDoctor({ env, peers })).findings.filter((f) => f.level === 'fail');

describe('regional doctor', () => {
  it('passes on a healthy cluster, including the signed ping to the primary region', async () => {
    const { findings, problems } = await runDoctor({ env: sydEnv() });
    expect(problems).toBe(0);
    const checks = findings.map((f) => f.check);
    expect(checks).toEqual(
      expect.arrayContaining([
        'configuration',
        'secret',
        'primary',
        'replica',
        'replica lag',
        'clock',
        `peer ${primaryUrlFromSyd}`,
      ]),
    );
    expect(findings.find((f) => f.check === 'replica lag')?.message).toMatch(
      /ms behind the primary/,
    );
  });

  it('finds a missing secret and a short one', async () => {
    const missing = await failures(
      sydEnv({ REGIONAL_SECRET: undefined, REGIONAL_PRIMARY_URL: undefined }),
    );
    expect(missing.map((f) => f.check)).toEqual(['secret']);
    expect(missing[0]?.fix).toMatch(/openssl rand -hex 32/);
    const short = await failures(sydEnv({ REGIONAL_SECRET: 'tooshort' }));
    expect(short[0]?.message).toMatch(/REGIONAL_SECRET: is 8 characters; use at least 32/);
  });

  it('finds a replica URL that points at a primary', async () => {
    const found = await failures(sydEnv({ DATABASE_REPLICA_URL: cluster.serverUrl('iad') }));
    expect(found.map((f) => f.check)).toEqual(['replica']);
    expect(found[0]?.message).toMatch(/points at a primary \(not in recovery\), not at a replica/);
  });

  it('finds instances in other regions that do not share the secret', async () => {
    const found = await failures(sydEnv(), [strangerInstance.url]);
    expect(found.map((f) => f.check)).toEqual([`peer ${strangerInstance.url}`]);
    expect(found[0]?.message).toMatch(/does not share this REGIONAL_SECRET/);
  });

  it('exits 1 with a message per problem, and 0 when healthy', async () => {
    const healthy = await runCli(sydEnv());
    expect(healthy).toMatchObject({ code: 0 });
    expect(healthy.stdout).toMatch(/No problems found\./);
    const broken = await runCli(
      sydEnv({ REGIONAL_SECRET: 'tooshort', DATABASE_REPLICA_URL: cluster.serverUrl('iad') }),
    );
    expect(broken.code).toBe(1);
    expect(broken.stdout).toMatch(/✗ secret: .*\n\s+→ Set the same random REGIONAL_SECRET/);
    expect(broken.stdout).toMatch(/✗ replica: /);
    expect(broken.stdout).toMatch(/3 problems found\./);
  });

  it('never prints a password: not from a query parameter, a peer URL, or a URL that does not parse', async () => {
    const closed = await freePort();
    const secrets = ['QueryS3cret', 'SslS3cret', 'UserinfoS3cret', 'PeerS3cret', 'Unparseable'];
    const inQuery = await runCli(
      sydEnv({
        DATABASE_URL: `postgres://regional:UserinfoS3cret@127.0.0.1:${closed}/app?password=QueryS3cret`,
        DATABASE_REPLICA_URL: `postgres://regional@127.0.0.1:${closed}/app?sslpassword=SslS3cret&sslmode=disable`,
      }),
      ['--peer', `http://app:PeerS3cret@127.0.0.1:${closed}`],
    );
    expect(inQuery.code).toBe(1);
    expect(inQuery.stdout).toMatch(/cannot reach DATABASE_URL \(.*password=\*\*\*/);
    expect(inQuery.stdout).toMatch(/cannot reach DATABASE_REPLICA_URL \(.*sslpassword=\*\*\*/);
    expect(inQuery.stdout).toMatch(/peer http:\/\/app:\*\*\*@127\.0\.0\.1/);
    const unparseable = await runCli(
      sydEnv({ DATABASE_URL: `postgres://regional:Unparseable@127.0.0.1:${closed}:x/app` }),
    );
    expect(unparseable.code).toBe(1);
    expect(unparseable.stdout).toMatch(/✗ configuration: DATABASE_URL: .* is not a URL/);
    const asJson = await runCli(
      sydEnv({ DATABASE_URL: `postgres://regional:Unparseable@127.0.0.1:${closed}:x/app` }),
      ['--json'],
    );
    for (const output of [inQuery.stdout, unparseable.stdout, asJson.stdout]) {
      for (const secret of secrets) expect(output).not.toContain(secret);
    }
  });
});
