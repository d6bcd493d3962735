/**
 * The dashboard's server against stand-in instances (plain node:http servers answering as a
 * Regional app would): what it reads from /metrics, readiness and headers, and how it follows
 * a write. The real thing, in a browser, is examples/forum/demo/dashboard.test.ts.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Dashboard, type DashboardState, parseServerTiming } from './server.js';

const METRICS = `# HELP regional_db_queries_total Statements routed
# TYPE regional_db_queries_total counter
regional_db_queries_total{regional_region="syd",db_system_name="postgresql",regional_route="replica",regional_reason="read"} 7
regional_db_queries_total{regional_region="syd",db_system_name="postgresql",regional_route="primary",regional_reason="lag"} 2
regional_db_queries_total{regional_region="syd",db_system_name="redis",regional_route="primary",regional_reason="write"} 3
# UNIT regional_replica_lag_seconds s
# TYPE regional_replica_lag_seconds gauge
regional_replica_lag_seconds{regional_region="syd",db_system_name="postgresql"} 0.125
# TYPE regional_replica_lag_bytes gauge
regional_replica_lag_bytes{regional_region="syd",db_system_name="postgresql"} 4096
# TYPE regional_replica_usable gauge
regional_replica_usable{regional_region="syd",db_system_name="redis"} 0
regional_replica_usable{regional_region="syd",db_system_name="postgresql"} 1
# TYPE regional_replication_wait_duration histogram
regional_replication_wait_duration_count{regional_region="syd",regional_outcome="replica"} 4
regional_replication_wait_duration_sum{regional_region="syd",regional_outcome="replica"} 0.2
regional_replication_wait_duration_bucket{regional_region="syd",regional_outcome="replica",le="+Inf"} 4
# TYPE regional_http_replays_total counter
regional_http_replays_total{regional_region="syd",regional_replay_reason="write"} 5
`;

/** What was written, in every stand-in region (the database they share). */
let written = '';

/** A stand-in instance of `region`; `visibleAfter` reads of /things/1 answer 404 first. */
async function instance(region: string, options: { metrics: boolean; visibleAfter: number }) {
  let reads = 0;
  const server = http.createServer(async (req, res) => {
    const timing = `regional-wait;dur=1.5;desc="${region}", regional-replay;dur=80.0;desc="from cdg"`;
    const headers = { 'x-regional-region': region, 'server-timing': timing };
    if (req.url === '/metrics') {
      if (!options.metrics) return res.writeHead(404).end();
      return res.writeHead(200, { 'content-type': 'text/plain' }).end(METRICS);
    }
    if (req.url === '/_regional/health/ready') return res.writeHead(503).end('{}');
    if (req.method === 'POST' && req.url === '/things') {
      let body = '';
      for await (const chunk of req) body += chunk;
      written = (JSON.parse(body) as { name: string }).name;
      return res
        .writeHead(201, { ...headers, 'x-regional-token': 'token-1' })
        .end(JSON.stringify({ id: 1 }));
    }
    if (req.url === '/things/1') {
      // The writing region answers at once, and only when the token comes with the read.
      const ok = req.headers['x-regional-token'] === 'token-1' || ++reads > options.visibleAfter;
      return res.writeHead(ok ? 200 : 404, headers).end(ok ? JSON.stringify({ written }) : '');
    }
    res.writeHead(200, headers).end('home');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

describe('the dashboard server (stand-in instances)', () => {
  let syd: Awaited<ReturnType<typeof instance>>;
  let iad: Awaited<ReturnType<typeof instance>>;
  let dashboard: Dashboard;
  const state = async () =>
    (await (await fetch(`${dashboard.url}/api/state`)).json()) as DashboardState;

  beforeAll(async () => {
    iad = await instance('iad', { metrics: false, visibleAfter: 2 });
    syd = await instance('syd', { metrics: true, visibleAfter: 5 });
    dashboard = await Dashboard.start({
      regions: () => [
        { region: 'iad', entry: iad.url, instance: iad.url },
        { region: 'syd', entry: syd.url, instance: syd.url },
      ],
      primaryRegion: 'iad',
      probe: {
        read: '/',
        write: { method: 'POST', path: '/things', body: (name) => ({ name }) },
      },
      startedBy: 'a test',
      scrapeMs: 50,
      readEveryMs: 50,
    });
  });

  afterAll(async () => {
    await dashboard?.close();
    iad?.server.close();
    syd?.server.close();
  });

  it('reads lag, routes, waits, replays and readiness from what the instances expose', async () => {
    await vi.waitFor(async () => expect((await state()).regions[1]?.lag.length).toBeGreaterThan(1));
    const { regions, primaryRegion, canWrite } = await state();
    expect({ primaryRegion, canWrite }).toEqual({ primaryRegion: 'iad', canWrite: true });
    expect(regions[0]).toMatchObject({
      region: 'iad',
      role: 'primary',
      ready: false,
      figures: null,
      metricsError: 'GET /metrics answered 404',
    });
    expect(regions[1]).toMatchObject({
      region: 'syd',
      role: 'replica',
      metricsError: null,
      figures: {
        lagSeconds: 0.125,
        lagBytes: 4096,
        replicaUsable: true,
        queries: {
          postgresql: { replica: { read: 7 }, primary: { lag: 2 } },
          redis: { primary: { write: 3 } },
        },
        replicationWaits: { count: 4, seconds: 0.2 },
        replays: { write: 5 },
      },
    });
    expect(regions[1]?.lag.at(-1)?.[1]).toBe(0.125);
  });

  it("describes its own requests from Regional's headers: where each ran, the wait, the replay", async () => {
    await vi.waitFor(async () => expect((await state()).requests.length).toBeGreaterThan(1));
    const [latest] = (await state()).requests;
    expect(latest).toMatchObject({
      method: 'GET',
      path: '/',
      kind: 'read',
      status: 200,
      waitMs: 1.5,
      replay: 'from cdg',
      error: null,
    });
    expect(latest?.ranIn).toBe(latest?.entry);
  });

  it('writes in one region and reads it back everywhere: with the token there, without elsewhere', async () => {
    const started = await fetch(`${dashboard.url}/api/write`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ region: 'syd' }),
    });
    expect(started.status).toBe(202);
    await vi.waitFor(async () => expect((await state()).write?.state).toBe('done'), {
      timeout: 5_000,
    });
    const { write } = await state();
    expect(write).toMatchObject({ region: 'syd', ranIn: 'syd', readPath: '/things/1' });
    expect(write?.arrivals).toMatchObject([
      // Not there at the first two reads: replication has yet to bring it.
      { region: 'iad', withToken: false, state: 'arrived', tries: 3 },
      { region: 'syd', withToken: true, state: 'arrived', tries: 1 },
    ]);
  });

  it('refuses a write in a region it does not know', async () => {
    const response = await fetch(`${dashboard.url}/api/write`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ region: 'lhr' }),
    });
    expect(response.status).toBe(409);
    expect(await response.json()).toEqual({ error: 'no region "lhr"' });
  });

  it('serves its page, which says it is for local runs only', async () => {
    const page = await fetch(`${dashboard.url}/`);
    expect(page.headers.get('content-security-policy')).toMatch(/default-src 'none'/);
    expect(await page.text()).toMatch(/For local runs only/);
  });
});

describe('parseServerTiming', () => {
  it('reads each entry once (the first of a name), with its duration and description', () => {
    const timings = parseServerTiming(
      'regional-replay;dur=201.5;desc="proxy syd>iad", regional-wait;dur=0.0;desc="iad", regional-wait;dur=9',
    );
    expect(Object.fromEntries(timings)).toEqual({
      'regional-replay': { dur: 201.5, desc: 'proxy syd>iad' },
      'regional-wait': { dur: 0, desc: 'iad' },
    });
    expect(parseServerTiming(null).size).toBe(0);
  });
});
