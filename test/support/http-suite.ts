import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runInContext } from '../../src/core/context.js';
import { Keyring, SIGNATURE_HEADER, signRequest } from '../../src/core/signing.js';
import { LocalEdge } from '../../src/edge/edge.js';
import {
  encodeToken,
  type HttpStats,
  LagReplayError,
  RegionalHttp,
  type RegionalHttpOptions,
  ReplayMarkers,
  type ReplayMode,
} from '../../src/http/index.js';
import { RegionalPool } from '../../src/pg/pool.js';
import { LocalCluster } from '../../src/testing/cluster.js';
import { type AppHandle, TEST_APP_SCHEMA, TestApp, type TestAppAdapter } from './http-app.js';
import { Client, type ClientResponse } from './http-client.js';

/** 50 ms each way between iad and syd. */
const RTT_MS = 100;
const SECRET = 'e469510d32bf70170f9f515aab060069cedc4684b2b41a80e30c7b419bc96dce';
const OTHER_SECRET = '289f3b097007a46452ac56eea0a4634b134254c24a923eb373e5716181b09be6';
/** Generous, so that a GET after a write is answered in syd even on a loaded machine. */
const MAX_WAIT_MS = 2000;
/** How many clients run the POST-then-GET sequences at once. */
const CLIENTS = 25;

interface Deployment {
  pools: Record<'iad' | 'syd', RegionalPool>;
  apps: Record<'iad' | 'syd', AppHandle>;
  edge: LocalEdge;
  client(): Client;
  stats(region: 'iad' | 'syd'): HttpStats;
  close(): Promise<void>;
}

async function deploy(
  cluster: LocalCluster,
  adapter: TestAppAdapter,
  mode: ReplayMode,
  extra: Partial<RegionalHttpOptions> = {},
): Promise<Deployment> {
  const pools = {} as Deployment['pools'];
  const apps = {} as Deployment['apps'];
  for (const region of ['iad', 'syd'] as const) {
    const endpoints = cluster.endpoints(region);
    const pool = new RegionalPool({
      primaryRegion: 'iad',
      region,
      databaseUrl: endpoints.databaseUrl,
      replicaUrl: endpoints.replicaUrl,
      onWarning: () => {},
    });
    pools[region] = pool;
    const primaryUrl =
      region === 'iad'
        ? undefined
        : `http://127.0.0.1:${await cluster.route({ from: 'syd', to: 'iad', port: apps.iad.port, name: 'http' })}`;
    apps[region] = await adapter.start(new TestApp(pool, region), {
      sources: [pool],
      primaryRegion: 'iad',
      region,
      mode,
      primaryUrl,
      secret: SECRET,
      maxWaitMs: MAX_WAIT_MS,
      readRoutes: ['POST /search'],
      writeRoutes: ['GET /touch'],
      onWarning: () => {},
      ...extra,
    });
  }
  const edge = await LocalEdge.start({
    apps: { iad: { port: apps.iad.port }, syd: { port: apps.syd.port } },
    links: cluster,
  });
  return {
    pools,
    apps,
    edge,
    client: () => new Client(edge.url('syd')),
    stats: (region) => apps[region].regional.stats(),
    async close() {
      await edge.close();
      for (const app of Object.values(apps)) await app.close();
      await Promise.all(Object.values(pools).map((pool) => pool.end()));
    },
  };
}

/**
 * Waits (a few seconds at most) until no connection other than replication's is open on the
 * iad–syd link: connections closed by earlier tests finish crossing it (their last bytes are
 * delivered after the link's delay), so they are not counted as this test's.
 */
async function linkQuiet(cluster: LocalCluster): Promise<void> {
  const link = cluster.link('iad', 'syd');
  const open = () => link.stats().openConnections - link.stats('replication').openConnections;
  for (let i = 0; i < 50 && open() > 0; i++) await new Promise((r) => setTimeout(r, 100));
}

/** Round trips that crossed the iad–syd link other than replication's own traffic. */
function crossings(cluster: LocalCluster): number {
  const link = cluster.link('iad', 'syd');
  return link.stats().roundTrips - link.stats('replication').roundTrips;
}

function expectServedBy(response: ClientResponse, region: string): void {
  expect(response.header('x-regional-region'), response.text).toBe(region);
  expect(String(response.headers['server-timing'])).toMatch(/regional-wait;dur=\d/);
}

/** Regional's HTTP core as syd's instances run it, with a 100 ms bound and no primary region to reach. */
function sydHttpWithBound(mode: ReplayMode, options: RegionalHttpOptions): RegionalHttp {
  return new RegionalHttp({
    primaryRegion: 'iad',
    region: 'syd',
    mode,
    primaryUrl: 'http://127.0.0.1:1',
    secret: SECRET,
    maxWaitMs: 100,
    ...options,
  });
}

/** The server-timing wait of the region that served the response, in ms. */
function waitedMs(response: ClientResponse): number {
  const match = /regional-wait;dur=([\d.]+)/.exec(String(response.headers['server-timing']));
  return Number(match?.[1]);
}

async function countVisits(cluster: LocalCluster): Promise<number> {
  const { rows } = await cluster.query<{ n: number }>(
    'iad',
    'SELECT count(*)::int AS n FROM visits',
  );
  return (rows[0] as { n: number }).n;
}

/** Runs `count` POST + redirected GET sequences with `CLIENTS` clients; returns the stale reads. */
async function postThenRead(
  deployment: Deployment,
  count: number,
  check: (post: ClientResponse, get: ClientResponse) => void,
): Promise<number> {
  let stale = 0;
  let next = 0;
  const clients = Array.from({ length: CLIENTS }, () => deployment.client());
  await Promise.all(
    clients.map(async (client) => {
      while (next < count) {
        const body = `post ${next++} ${Math.random()}`;
        const post = await client.send('POST', '/posts', { json: { body } });
        expect(post.status, post.text).toBe(303);
        const get = await client.get(post.header('location') as string);
        check(post, get);
        if (get.status !== 200 || get.json<{ body: string }>().body !== body) stale++;
      }
    }),
  );
  return stale;
}

/**
 * The behaviour every HTTP adapter must show, through the local edge on a real two-region
 * cluster (iad primary, syd replica, 50 ms each way), in both replay modes.
 */
export function httpBehaviourSuite(
  adapter: TestAppAdapter,
  /** POST-then-redirected-GET sequences in the read-your-writes run (the acceptance asks 1000). */
  { sequences = 1000 } = {},
): void {
  const SEQUENCES = sequences;
  describe(`${adapter.name} through the edge (iad primary, syd replica, 50 ms each way)`, () => {
    let cluster: LocalCluster;
    let seeded: number;

    beforeAll(async () => {
      cluster = await LocalCluster.start({
        temporary: true,
        regions: ['iad', 'syd'],
        rttMs: { syd: RTT_MS },
      });
      await cluster.query('iad', TEST_APP_SCHEMA);
      const { rows } = await cluster.query<{ id: number }>(
        'iad',
        "INSERT INTO posts (body) VALUES ('seeded') RETURNING id",
      );
      seeded = (rows[0] as { id: number }).id;
      await cluster.waitForReplay('syd');
    });
    afterAll(async () => {
      await cluster?.stop();
    });

    describe.each(['fly-replay', 'proxy'] as const)('%s mode', (mode) => {
      let on: Deployment;
      let off: Deployment;

      beforeAll(async () => {
        on = await deploy(cluster, adapter, mode);
        off = await deploy(cluster, adapter, mode, { tokens: false });
      });
      afterAll(async () => {
        await on?.close();
        await off?.close();
      });

      it('GETs in syd without a recent write are answered from the syd replica and never cross to iad', async () => {
        const client = on.client();
        const before = on.pools.syd.stats();
        await linkQuiet(cluster);
        cluster.link('iad', 'syd').resetStats();
        for (let i = 0; i < 20; i++) {
          const response = await client.get(`/posts/${seeded}`);
          expect(response.status).toBe(200);
          expect(response.json()).toEqual({ id: seeded, body: 'seeded' });
          expectServedBy(response, 'syd');
          expect(response.header('x-regional-token')).toBeUndefined();
        }
        expect(crossings(cluster)).toBe(0);
        const after = on.pools.syd.stats();
        expect(after.replicaReads - before.replicaReads).toBe(20);
        expect(after.primaryReads).toBe(before.primaryReads);
        // The check can fail: a write in syd does cross.
        await client.send('POST', '/posts', { json: { body: 'crossing' } });
        expect(crossings(cluster)).toBeGreaterThan(0);
      });

      it(`a POST in syd is executed in iad; the redirected GET in syd (token by cookie) sees the new row, ${SEQUENCES} times: zero stale`, async () => {
        const before = { syd: on.stats('syd'), iad: on.stats('iad') };
        const servedBy = { iad: 0, syd: 0 } as Record<string, number>;
        const stale = await postThenRead(on, SEQUENCES, (post, get) => {
          expectServedBy(post, 'iad');
          expect(post.header('x-regional-token')).toMatch(/^t1\./);
          expect(String(post.headers['set-cookie'])).toMatch(
            /^regional_token=t1\..*HttpOnly; SameSite=Lax$/,
          );
          servedBy[get.header('x-regional-region') as string] =
            (servedBy[get.header('x-regional-region') as string] ?? 0) + 1;
        });
        expect(stale).toBe(0);
        // Every GET was answered in syd, after waiting for the replica where it had to.
        expect(servedBy).toEqual({ iad: 0, syd: SEQUENCES });
        const syd = on.stats('syd');
        // GETs whose token the replica was not known to have were checked by their read, in
        // the read's own round trip (others' checks may have seen the position already).
        const checked = syd.tokenChecksOnRead - before.syd.tokenChecksOnRead;
        expect(checked).toBeGreaterThan(0);
        expect(checked).toBeLessThanOrEqual(SEQUENCES);
        expect(syd.tokenWaits).toBe(before.syd.tokenWaits);
        expect(syd.replays.write - before.syd.replays.write).toBe(SEQUENCES);
        expect(syd.replays.lag - before.syd.replays.lag).toBe(0);
        expect(on.stats('iad').replayedServed - before.iad.replayedServed).toBe(SEQUENCES);
        expect(syd.tokensIgnored).toEqual(before.syd.tokensIgnored);
      });

      it('with tokens turned off nothing waits: while the replica is behind, every read after a write is stale (the check can fail)', async () => {
        // Replay paused: the replica is behind for certain, not by the luck of one race.
        await cluster.pauseReplay('syd');
        try {
          const stale = await postThenRead(off, 20, (post, get) => {
            expectServedBy(post, 'iad');
            expectServedBy(get, 'syd');
            expect(post.header('x-regional-token')).toBeUndefined();
          });
          expect(stale).toBe(20);
        } finally {
          await cluster.resumeReplay('syd');
          await cluster.waitForReplay('syd');
        }
      });

      it('API clients carry the token in a header instead of a cookie', async () => {
        const client = on.client();
        for (let i = 0; i < 20; i++) {
          const body = `api ${i}`;
          const post = await client.send('POST', '/posts', { json: { body } });
          client.cookies.clear();
          const token = post.header('x-regional-token') as string;
          const get = await client.get(post.header('location') as string, {
            headers: { 'x-regional-token': token },
          });
          expect(get.json()).toMatchObject({ body });
          expectServedBy(get, 'syd');
        }
      });

      it('a GET that writes is replayed in iad and succeeds: a stopped write, a 25006 through the pool, a raw 25006', async () => {
        const client = on.client();
        const before = on.stats('syd');
        const visits = await countVisits(cluster);
        const visit = await client.get('/visit');
        expect(visit.status, visit.text).toBe(200);
        expectServedBy(visit, 'iad');
        expect(visit.json()).toEqual({ visits: visits + 1 });
        expect(visit.header('x-regional-token')).toMatch(/^t1\./);
        for (const path of ['/note-fn', '/note-raw']) {
          const note = await client.get(path);
          expect(note.status, note.text).toBe(200);
          expectServedBy(note, 'iad');
          expect(note.json<{ id: number }>().id).toBeGreaterThan(0);
        }
        const after = on.stats('syd');
        expect(after.replays.writeInRead - before.replays.writeInRead).toBe(3);
        expect(after.writeInReadFailures).toBe(before.writeInReadFailures);
      });

      it('a GET that writes after its response has started fails with a clear error, counted; nothing is written', async () => {
        const before = on.stats('syd');
        const visits = await countVisits(cluster);
        const response = await on.client().get('/stream-write');
        expect(response.status).toBe(200);
        expectServedBy(response, 'syd');
        expect(response.text).toMatch(
          /^started\nerror: REGIONAL_WRITE_IN_READ_FAILED: GET \/stream-write tried to write in syd after its response had started/,
        );
        expect(on.stats('syd').writeInReadFailures - before.writeInReadFailures).toBe(1);
        expect(await countVisits(cluster)).toBe(visits);
      });

      it('route rules: a POST in readRoutes runs in syd; a GET in writeRoutes is replayed before it runs', async () => {
        const client = on.client();
        const before = on.stats('syd');
        const search = await client.send('POST', '/search', { json: {} });
        expect(search.status).toBe(200);
        expectServedBy(search, 'syd');
        const touch = await client.get('/touch');
        expect(touch.status).toBe(200);
        expectServedBy(touch, 'iad');
        const after = on.stats('syd');
        expect(after.replays.write - before.replays.write).toBe(1);
        expect(after.replays.writeInRead).toBe(before.replays.writeInRead);
      });

      it('forged, other-secret, expired and malformed tokens are ignored without waiting; a genuine one is waited on', async () => {
        const source = await on.pools.syd.sourceKey();
        const far: [string, bigint][] = [[source, 1n << 62n]];
        const genuine = encodeToken(new Keyring(SECRET), far, 600);
        const real = (await on.client().send('POST', '/posts', { json: { body: 'real' } })).header(
          'x-regional-token',
        ) as string;
        const [, farPayload] = genuine.split('.');
        const [, , keyId, mac] = real.split('.');
        const cases = [
          ['forged', `t1.${farPayload}.${keyId}.${mac}`],
          ['unknownKey', encodeToken(new Keyring(OTHER_SECRET), far, 600)],
          ['expired', encodeToken(new Keyring(SECRET), far, 600, Date.now() - 3_600_000)],
          ['malformed', 't1.not-a-token'],
        ] as const;
        for (const [reason, token] of cases) {
          const before = on.stats('syd');
          for (const carrier of ['header', 'cookie'] as const) {
            const client = on.client();
            const headers: Record<string, string> =
              carrier === 'header'
                ? { 'x-regional-token': token }
                : { cookie: `regional_token=${token}` };
            const response = await client.get(`/posts/${seeded}`, { headers });
            expect(response.status).toBe(200);
            expectServedBy(response, 'syd');
            expect(waitedMs(response)).toBe(0);
          }
          const after = on.stats('syd');
          expect(after.tokensIgnored[reason] - before.tokensIgnored[reason], reason).toBe(2);
          expect(after.tokenWaits).toBe(before.tokenWaits);
          expect(after.tokenChecksOnRead).toBe(before.tokenChecksOnRead);
        }
        // The check can fail: the same far position, genuinely signed, is checked by the
        // handler's first read, waited on (up to the bound), then the request is replayed in iad.
        const before = on.stats('syd');
        const poolBefore = on.pools.syd.stats();
        const response = await on.client().get(`/posts/${seeded}`, {
          headers: { 'x-regional-token': genuine },
        });
        expect(response.status).toBe(200);
        expectServedBy(response, 'iad');
        const after = on.stats('syd');
        const poolAfter = on.pools.syd.stats();
        expect(after.tokenChecksOnRead - before.tokenChecksOnRead).toBe(1);
        expect(after.tokenWaits).toBe(before.tokenWaits);
        expect(poolAfter.checkedReadsBehind - poolBefore.checkedReadsBehind).toBe(1);
        expect(poolAfter.waitTimeouts - poolBefore.waitTimeouts).toBe(1);
        expect(after.replays.lag - before.replays.lag).toBe(1);
        if (mode === 'proxy') {
          // syd's own wait is reported beside iad's entry.
          expect(String(response.headers['server-timing'])).toMatch(
            /regional-wait;dur=(\d+)[.\d]*;desc="syd"/,
          );
          const sydWait = /regional-wait;dur=([\d.]+);desc="syd"/.exec(
            String(response.headers['server-timing']),
          );
          expect(Number(sydWait?.[1])).toBeGreaterThanOrEqual(MAX_WAIT_MS - 1);
        }
      });

      it('past the bound, the lag policy applies: error answers 503, primary runs the handler here', async () => {
        const source = await on.pools.syd.sourceKey();
        const far = encodeToken(new Keyring(SECRET), [[source, 1n << 62n]], 600);
        const request = { method: 'GET', path: '/', https: false };
        const header = (name: string) => (name === 'x-regional-token' ? far : undefined);
        for (const lagPolicy of ['error', 'primary'] as const) {
          const http = sydHttpWithBound(mode, { lagPolicy, sources: [on.pools.syd] });
          const state = await http.begin({ ...request, header });
          if (lagPolicy === 'error') {
            expect(state.action).toBe('answer');
            const answer = http.answer(state);
            expect(answer.status).toBe(503);
            expect(String(answer.body)).toMatch(/REGIONAL_REPLICATION_TIMEOUT.*within 100 ms/);
            expect(http.stats().tokenWaitTimeouts).toBe(1);
          } else {
            // Runs here; its reads wait per query (the pool's bound), not before the handler.
            expect(state.action).toBe('run');
            expect(state.context.position(source)).toBe(1n << 62n);
            expect(http.stats().tokenWaits).toBe(0);
          }
          await http.close();
        }
      });

      it('with the replay policy a pool checks the token in the first read: past the bound it replays the request, or, once the response has started, reads from the primary', async () => {
        const pool = new RegionalPool({ config: { ...on.pools.syd.config, replicaRetryMs: 1 } });
        const source = await pool.sourceKey();
        const far = encodeToken(new Keyring(SECRET), [[source, 1n << 62n]], 600);
        const http = sydHttpWithBound(mode, { sources: [pool] });
        const header = (name: string) => (name === 'x-regional-token' ? far : undefined);
        const read = () => pool.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r');
        try {
          const state = await http.begin({ method: 'GET', path: '/', https: false, header });
          // Nothing waited before the handler: the read is the check.
          expect(state.action).toBe('run');
          expect(http.stats()).toMatchObject({ tokenWaits: 0, tokenChecksOnRead: 1 });
          const error = await runInContext(state.context, read).catch((e: unknown) => e);
          expect(error).toBeInstanceOf(LagReplayError);
          expect(state.replayInstead()).toBe(true);
          expect(state.replayReason).toBe('lag');
          expect(state.context.waitedMs).toBeGreaterThanOrEqual(100 - 1);

          await new Promise((resolve) => setTimeout(resolve, 5)); // past replicaRetryMs
          const started = await http.begin({ method: 'GET', path: '/', https: false, header });
          started.responseStarted = true;
          const { rows } = await runInContext(started.context, read);
          expect(rows).toEqual([{ r: false }]);
          expect(started.replayInstead()).toBe(false);
          expect(pool.stats()).toMatchObject({ checkedReadsBehind: 2, waitTimeouts: 2 });
        } finally {
          await http.close();
          await pool.end();
        }
      });

      it('a replay marker from outside is not trusted; a genuine one is honoured once and the request is never replayed again', async () => {
        const markers = new ReplayMarkers(new Keyring(SECRET));
        const otherMarkers = new ReplayMarkers(new Keyring(OTHER_SECRET));
        const forgedSignature = `v1 key=0123abcd ts=${Math.floor(Date.now() / 1000)} nonce=${'n'.repeat(22)} body=unsigned mac=${'m'.repeat(43)}`;
        const outside: Record<string, string>[] = [
          { 'x-regional-replay': forgedSignature },
          { 'x-regional-replay': otherMarkers.header('POST', '/posts') },
          {
            'fly-replay-src': `instance=x;region=iad;t=1;state=${Buffer.from(forgedSignature).toString('base64url')}`,
          },
          {
            'fly-replay-src': `instance=x;region=iad;t=1;state=${otherMarkers.flyState('POST', '/posts')}`,
          },
        ];
        for (const headers of outside) {
          const before = on.stats('syd');
          const post = await on
            .client()
            .send('POST', '/posts', { json: { body: 'outside' }, headers });
          expect(post.status).toBe(303);
          // Not trusted: treated as any write arriving in syd, so replayed in iad.
          expectServedBy(post, 'iad');
          const after = on.stats('syd');
          expect(after.untrustedMarkers - before.untrustedMarkers).toBe(1);
          expect(after.replays.write - before.replays.write).toBe(1);
        }
        // A genuine marker (as an instance signs it) is trusted once: the request runs where
        // it lands, never replayed again. Sent a second time, it is refused as a replay.
        const genuine: Record<string, string>[] = [
          { 'x-regional-replay': markers.header('POST', '/posts') },
          {
            'fly-replay-src': `instance=x;region=syd;t=1;state=${markers.flyState('POST', '/posts')}`,
          },
        ];
        for (const headers of genuine) {
          const before = on.stats('syd');
          const first = await on
            .client()
            .send('POST', '/posts', { json: { body: 'marked' }, headers });
          expect(first.status).toBe(303);
          expectServedBy(first, 'syd');
          const second = await on
            .client()
            .send('POST', '/posts', { json: { body: 'again' }, headers });
          expectServedBy(second, 'iad');
          const after = on.stats('syd');
          expect(after.replayedServed - before.replayedServed).toBe(1);
          expect(after.untrustedMarkers - before.untrustedMarkers).toBe(1);
          expect(after.replays.write - before.replays.write).toBe(1);
        }
      });

      it("serves Regional's health endpoints and the signed ping in syd, before any replay or wait", async () => {
        const client = on.client();
        const live = await client.get('/_regional/health/live');
        expect(live.status).toBe(200);
        expect(live.json()).toEqual({ alive: true, region: 'syd' });
        const ready = await client.get('/_regional/health/ready');
        expect(ready.status, ready.text).toBe(200);
        // Anyone gets the status; the detail only a caller that signs the request.
        expect(ready.json()).toEqual({ ready: true, region: 'syd' });
        const detailed = await client.get('/_regional/health/ready', {
          headers: {
            [SIGNATURE_HEADER]: signRequest(new Keyring(SECRET), {
              method: 'GET',
              path: '/_regional/health/ready',
              body: '',
            }),
          },
        });
        const report = detailed.json<{
          ready: boolean;
          checks: Record<string, { status: string }>;
        }>();
        expect(report.ready).toBe(true);
        expect(Object.keys(report.checks)).toEqual(
          expect.arrayContaining([
            'primary',
            'replica',
            'lag',
            'schema',
            ...(mode === 'proxy' ? ['primaryInstance'] : []),
          ]),
        );
        const unsigned = await client.get('/_regional/ping');
        expect(unsigned.status).toBe(401);
        const signed = await client.get('/_regional/ping', {
          headers: {
            [SIGNATURE_HEADER]: signRequest(new Keyring(SECRET), {
              method: 'GET',
              path: '/_regional/ping',
              body: '',
            }),
          },
        });
        expect(signed.status).toBe(200);
        expect(signed.json()).toMatchObject({
          region: 'syd',
          keyId: new Keyring(SECRET).current.id,
        });
      });

      it('readiness fails with 503, naming the check, when the syd replica is down', async () => {
        await cluster.server('syd').stop();
        try {
          const signed = () => ({
            headers: {
              [SIGNATURE_HEADER]: signRequest(new Keyring(SECRET), {
                method: 'GET',
                path: '/_regional/health/ready',
                body: '',
              }),
            },
          });
          // A report is reused for a second: ask until one made after the stop answers.
          let ready = await on.client().get('/_regional/health/ready', signed());
          for (let i = 0; i < 40 && ready.status === 200; i++) {
            await new Promise((resolve) => setTimeout(resolve, 100));
            ready = await on.client().get('/_regional/health/ready', signed());
          }
          expect(ready.status).toBe(503);
          expect(ready.json()).toMatchObject({ ready: false, failed: ['replica'], region: 'syd' });
          const unsigned = await on.client().get('/_regional/health/ready');
          expect(unsigned.status).toBe(503);
          expect(unsigned.json()).toEqual({ ready: false, region: 'syd' });
          // Liveness is only about the process.
          expect((await on.client().get('/_regional/health/live')).status).toBe(200);
        } finally {
          await cluster.server('syd').start();
          await cluster.waitForReplay('syd');
        }
      });

      it('a handler failing because the primary is unreachable answers 503 with its code, and no internals', async () => {
        const response = await on.client().get('/unavailable');
        expect(response.status, response.text).toBe(503);
        expect(response.header('retry-after')).toBe('1');
        expect(response.json()).toEqual({
          error: {
            code: 'REGIONAL_PRIMARY_UNAVAILABLE',
            message: 'The database is unreachable right now; nothing was changed. Retry shortly.',
          },
        });
        expect(response.text).not.toMatch(/127\.0\.0\.1|ECONNREFUSED|\bat /);
        expectServedBy(response, 'syd');
        expect(on.stats('syd').errorsAnswered).toBeGreaterThan(0);
      });

      it('a replayed request reports its trip in Server-Timing (at least the injected latency)', async () => {
        const post = await on.client().send('POST', '/posts', { json: { body: 'timed' } });
        const timings = String(post.headers['server-timing']);
        if (mode === 'proxy') {
          // syd measured the whole trip to iad and back: a round trip at least.
          const trip = /regional-replay;dur=([\d.]+);desc="proxy syd>iad"/.exec(timings);
          expect(Number(trip?.[1])).toBeGreaterThanOrEqual(RTT_MS);
          expect(timings).toMatch(/regional-replay;desc="from syd"/);
        } else {
          // iad saw the replay arrive from the edge in syd: one way at least.
          const trip = /regional-replay;dur=([\d.]+);desc="from syd"/.exec(timings);
          expect(Number(trip?.[1])).toBeGreaterThanOrEqual(RTT_MS / 2);
        }
      });
    });

    // Fly.io's replay cache exists only in fly-replay mode.
    describe('fly-replay mode with primaryOnlyPaths', () => {
      let cached: Deployment;

      beforeAll(async () => {
        cached = await deploy(cluster, adapter, 'fly-replay', { primaryOnlyPaths: ['/posts'] });
      });
      afterAll(async () => {
        await cached?.close();
      });

      it('after the first write there, the edge sends the next ones straight to iad; each GET after still reads its own write in syd', async () => {
        const client = cached.client();
        const before = { syd: cached.stats('syd'), edge: cached.edge.stats() };
        for (let i = 0; i < 5; i++) {
          const body = `cached replay ${i} ${Math.random()}`;
          const post = await client.send('POST', '/posts', { json: { body } });
          expect(post.status, post.text).toBe(303);
          expectServedBy(post, 'iad');
          const get = await client.get(post.header('location') as string);
          expectServedBy(get, 'syd');
          expect(get.json<{ body: string }>().body).toBe(body);
        }
        // Only the first stopped in syd, which answered with fly-replay and the cache headers.
        expect(cached.stats('syd').replays.write - before.syd.replays.write).toBe(1);
        expect(cached.edge.stats().replayCacheHits - before.edge.replayCacheHits).toBe(4);
      });
    });
  });
}
