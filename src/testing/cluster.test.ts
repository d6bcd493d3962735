import { existsSync, rmSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startScript, waitGone } from '../../test/support/child.js';
import { LocalCluster } from './cluster.js';
import { findPostgresBinaries } from './postgres/binaries.js';
import { isAlive, PostgresServer } from './postgres/server.js';
import { childPids, waitAllGone } from './process.js';
import { resolveServerUser } from './server-user.js';

// Round trips small enough to keep the suite quick, large enough to measure.
const RTT = { cdg: 60, syd: 120, 'cdg-syd': 160 };

let cluster: LocalCluster;
let primary: pg.Pool;
const replicas: Record<string, pg.Pool> = {};

function pool(url: string): pg.Pool {
  const p = new pg.Pool({ connectionString: url, max: 2 });
  p.on('error', () => {});
  return p;
}

beforeAll(async () => {
  cluster = await LocalCluster.start({ temporary: true, rttMs: RTT });
  primary = pool(cluster.serverUrl('iad'));
  for (const region of ['cdg', 'syd']) replicas[region] = pool(cluster.serverUrl(region));
  await primary.query('CREATE TABLE items (id serial PRIMARY KEY, note text NOT NULL)');
});

afterAll(async () => {
  await Promise.all([primary, ...Object.values(replicas)].map((p) => p?.end()));
  await cluster?.stop();
});

/** Inserts a row on the primary; resolves with its id once committed. */
async function insert(note: string): Promise<number> {
  const { rows } = await primary.query<{ id: number }>(
    'INSERT INTO items (note) VALUES ($1) RETURNING id',
    [note],
  );
  return (rows[0] as { id: number }).id;
}

/** Polls `region`'s replica until row `id` is visible; resolves with the milliseconds it took. */
async function timeUntilVisible(region: string, id: number, timeoutMs = 20_000): Promise<number> {
  const started = performance.now();
  const replica = replicas[region] as pg.Pool;
  for (;;) {
    const { rowCount } = await replica
      .query('SELECT 1 FROM items WHERE id = $1', [id])
      .catch(() => ({ rowCount: 0 }));
    if (rowCount === 1) return performance.now() - started;
    if (performance.now() - started > timeoutMs)
      throw new Error(`row ${id} not visible in ${region} after ${timeoutMs} ms`);
    await sleep(1);
  }
}

async function rowCount(region: string): Promise<number> {
  const client = region === 'iad' ? primary : (replicas[region] as pg.Pool);
  const { rows } = await client.query<{ n: string }>('SELECT count(*) AS n FROM items');
  return Number((rows[0] as { n: string }).n);
}

describe('LocalCluster', () => {
  it('gives each region its configuration: the primary through the link, the local replica direct', async () => {
    const iad = cluster.endpoints('iad');
    expect(iad.role).toBe('primary');
    expect(iad.replicaUrl).toBeNull();
    for (const region of ['cdg', 'syd']) {
      const endpoints = cluster.endpoints(region);
      expect(endpoints.replicaUrl).toBe(cluster.serverUrl(region));
      expect(endpoints.databaseUrl).not.toBe(iad.databaseUrl);
      const c = new pg.Client(endpoints.databaseUrl);
      await c.connect();
      const { rows } = await c.query('SELECT pg_is_in_recovery() AS standby');
      await c.end();
      expect(rows[0].standby).toBe(false);
    }
    const r = new pg.Client(cluster.endpoints('syd').replicaUrl as string);
    await r.connect();
    const { rows } = await r.query('SELECT pg_is_in_recovery() AS standby');
    await r.end();
    expect(rows[0].standby).toBe(true);
    expect(cluster.env('syd')).toMatchObject({ PRIMARY_REGION: 'iad', REGION: 'syd' });
  });

  it('replicates a row to every replica, no sooner than the one-way delay', async () => {
    for (let i = 0; i < 3; i++) {
      const id = await insert(`replicated ${i}`);
      const [cdg, syd] = await Promise.all([
        timeUntilVisible('cdg', id),
        timeUntilVisible('syd', id),
      ]);
      // Measured from the commit's acknowledgement, which left the primary after the WAL did,
      // so these are lower bounds of the true lag.
      expect(cdg).toBeGreaterThanOrEqual(RTT.cdg / 2 - 2);
      expect(syd).toBeGreaterThanOrEqual(RTT.syd / 2 - 2);
    }
  });

  it('a new delay on a link changes the replication lag', async () => {
    const link = cluster.link('iad', 'syd');
    link.setRtt(600);
    try {
      const id = await insert('slow link');
      expect(await timeUntilVisible('syd', id)).toBeGreaterThanOrEqual(300 - 2);
    } finally {
      link.setRtt(RTT.syd);
    }
    const id = await insert('fast again');
    await timeUntilVisible('syd', id);
  });

  for (const mode of ['hang', 'refuse'] as const) {
    it(`a ${mode} cut stops replication; restoring resumes it with nothing lost`, async () => {
      const link = cluster.link('syd', 'iad');
      await cluster.waitForReplay('syd');
      const before = await rowCount('syd');
      await link.cut(mode);
      try {
        for (let i = 0; i < 20; i++) await insert(`during ${mode} cut ${i}`);
        await sleep(RTT.syd * 3);
        expect(await rowCount('syd')).toBe(before);
      } finally {
        await link.restore();
      }
      await cluster.waitForReplay('syd');
      expect(await rowCount('syd')).toBe(before + 20);
      expect(await rowCount('syd')).toBe(await rowCount('iad'));
    });
  }

  /** Each proxy of `link` as `name state` (the cluster's own and any route). */
  const states = (link: ReturnType<LocalCluster['link']>) =>
    Object.fromEntries(link.proxies.map((p) => [p.name, p.state]));

  it('a filtered cut cuts only the proxies whose name contains it, also those added while it lasts', async () => {
    const link = cluster.link('syd', 'iad');
    const iadPort = Number(new URL(cluster.serverUrl('iad')).port);
    const routes: number[] = [];
    await link.cut('refuse', 'replication');
    try {
      expect(link.state).toBe('up'); // the whole link is not cut
      expect(link.stateOf('syd->iad replication')).toBe('refuse');
      routes.push(await cluster.route({ from: 'syd', to: 'iad', port: iadPort, name: 'x' }));
      routes.push(
        await cluster.route({ from: 'syd', to: 'iad', port: iadPort, name: 'replication 2' }),
      );
      expect(states(link)).toMatchObject({
        'syd->iad replication': 'refuse',
        'syd->iad replication 2': 'refuse',
        'syd->iad postgres': 'up',
        'syd->iad x': 'up',
      });
      // The app's path to the primary still works while replication is cut.
      const app = new pg.Client(cluster.endpoints('syd').databaseUrl);
      await app.connect();
      expect((await app.query('SELECT 1 AS one')).rows[0].one).toBe(1);
      await app.end();
    } finally {
      await link.restore('replication');
    }
    expect(Object.values(states(link)).every((s) => s === 'up')).toBe(true);
    const id = await insert('after a filtered cut');
    await timeUntilVisible('syd', id);
    for (const port of routes) await cluster.unroute(port);
  });

  it('a whole-link cut with a filtered restore heals only the matching proxies; restore() heals all', async () => {
    const link = cluster.link('syd', 'iad');
    await link.cut('hang');
    try {
      await link.restore('postgres');
      expect(link.state).toBe('hang');
      expect(states(link)).toMatchObject({
        'syd->iad replication': 'hang',
        'syd->iad postgres': 'up',
      });
      const app = new pg.Client(cluster.endpoints('syd').databaseUrl);
      await app.connect();
      expect((await app.query('SELECT 1 AS one')).rows[0].one).toBe(1);
      await app.end();
    } finally {
      await link.restore();
    }
    expect(link.state).toBe('up');
    expect(Object.values(states(link)).every((s) => s === 'up')).toBe(true);
    const id = await insert('after a partial heal');
    await timeUntilVisible('syd', id);
  });

  it('a filtered round trip applies to the matching proxies, also those added later; setRtt without a filter resets it', async () => {
    const link = cluster.link('syd', 'iad');
    const delay = (name: string) => link.proxies.find((p) => p.name === name)?.oneWayMs;
    link.setRtt(500, 'replication');
    const iadPort = Number(new URL(cluster.serverUrl('iad')).port);
    const late = await cluster.route({
      from: 'syd',
      to: 'iad',
      port: iadPort,
      name: 'replication 3',
    });
    try {
      expect(delay('syd->iad replication')).toBe(250);
      expect(delay('syd->iad replication 3')).toBe(250);
      expect(delay('syd->iad postgres')).toBe(RTT.syd / 2);
      expect(link.rttMs).toBe(RTT.syd);
      expect(link.rttOf('syd->iad replication')).toBe(500);
    } finally {
      link.setRtt(RTT.syd);
    }
    expect(delay('syd->iad replication')).toBe(RTT.syd / 2);
    expect(delay('syd->iad replication 3')).toBe(RTT.syd / 2);
    await cluster.unroute(late);
  });

  it('a replica killed with SIGKILL and restarted catches up with nothing lost', async () => {
    const replica = cluster.server('cdg');
    const pid = replica.pid as number;
    const started = childPids(pid); // startup, walreceiver, checkpointer, …
    expect(started.length).toBeGreaterThan(0);
    await replica.kill();
    expect(isAlive(pid)).toBe(false);
    // All at once, as in a crash: none lingers (a lingering backend blocks the next start).
    expect(await waitAllGone(started, 0)).toBe(true);
    for (let i = 0; i < 20; i++) await insert(`while cdg is down ${i}`);
    await replica.start();
    await cluster.waitForReplay('cdg');
    expect(await rowCount('cdg')).toBe(await rowCount('iad'));
  });

  it('the primary killed with SIGKILL and restarted keeps every committed row', async () => {
    const ids: number[] = [];
    for (let i = 0; i < 50; i++) ids.push(await insert(`committed ${i}`));
    const server = cluster.server('iad');
    const started = childPids(server.pid as number);
    expect(started.length).toBeGreaterThan(0);
    await server.kill();
    expect(await waitAllGone(started, 0)).toBe(true);
    await server.start();
    const fresh = new pg.Client(cluster.serverUrl('iad'));
    await fresh.connect();
    const { rows } = await fresh.query('SELECT id FROM items WHERE id = ANY($1)', [ids]);
    await fresh.end();
    expect(rows.length).toBe(ids.length);
    // Replicas reconnect to the restarted primary and keep streaming.
    const id = await insert('after primary restart');
    await Promise.all([timeUntilVisible('cdg', id), timeUntilVisible('syd', id)]);
  });

  it('paused replay makes the replica fall behind by a measurable LSN distance; resuming closes it', async () => {
    await cluster.waitForReplay('syd');
    await cluster.pauseReplay('syd');
    try {
      await primary.query(
        "INSERT INTO items (note) SELECT 'bulk ' || g FROM generate_series(1, 2000) g",
      );
      await cluster.waitForStreaming();
      await sleep(RTT.syd * 2);
      expect(await cluster.lagBytes('syd')).toBeGreaterThan(10_000n);
    } finally {
      await cluster.resumeReplay('syd');
    }
    await cluster.waitForReplay('syd');
    expect(await cluster.lagBytes('syd')).toBe(0n);
  });

  it('measures the current replication lag of each replica', async () => {
    const lag = await cluster.measureLag();
    expect(lag.cdg).toBeGreaterThanOrEqual(RTT.cdg / 2 - 2);
    expect(lag.syd).toBeGreaterThanOrEqual(RTT.syd / 2 - 2);
  });

  it('counts the round trips that cross a link', async () => {
    const link = cluster.link('syd', 'iad');
    const client = new pg.Client(cluster.endpoints('syd').databaseUrl);
    await client.connect();
    link.resetStats();
    for (let i = 0; i < 5; i++) await client.query('SELECT 1');
    expect(link.stats('postgres').roundTrips).toBe(5);
    await client.end();
  });

  it('a route crosses the link; unroute closes it, its connections, and nothing else', async () => {
    const iadPort = new URL(cluster.serverUrl('iad')).port;
    const via = (port: number) =>
      new pg.Client(cluster.serverUrl('iad').replace(`:${iadPort}/`, `:${port}/`));
    const link = cluster.link('syd', 'iad');
    const before = link.proxies.length;
    const port = await cluster.route({ from: 'syd', to: 'iad', port: Number(iadPort), name: 'db' });
    expect(link.proxies.length).toBe(before + 1);
    const client = via(port);
    client.on('error', () => {});
    await client.connect();
    link.resetStats();
    await client.query('SELECT 1');
    expect(link.stats('syd->iad db').roundTrips).toBe(1);

    const ended = new Promise<void>((resolve) => client.once('end', resolve));
    expect(await cluster.unroute(port)).toBe(true);
    await ended; // the open connection was closed with it
    expect(link.proxies.length).toBe(before);
    await expect(via(port).connect()).rejects.toThrow(/ECONNREFUSED/);
    // Twice, or a port that is no route (here the primary's own), changes nothing.
    expect(await cluster.unroute(port)).toBe(false);
    expect(await cluster.unroute(Number(iadPort))).toBe(false);
    expect(await cluster.route({ from: 'iad', to: 'iad', port: 1234, name: 'same' })).toBe(1234);
    expect(await cluster.unroute(1234)).toBe(false);
    // The cluster's own paths still work: replication and the app's path to the primary.
    const id = await insert('after unroute');
    await timeUntilVisible('syd', id);
    const app = new pg.Client(cluster.endpoints('syd').databaseUrl);
    await app.connect();
    try {
      expect((await app.query('SELECT 1 FROM items WHERE id = $1', [id])).rowCount).toBe(1);
    } finally {
      await app.end();
    }
    expect(link.proxies.length).toBe(before);
  });

  it('a second cluster runs beside the first, on other ports', async () => {
    const second = await LocalCluster.start({
      temporary: true,
      regions: ['iad', 'syd'],
      rttMs: { syd: 20 },
    });
    try {
      const ports = new Set(
        cluster.regions
          .flatMap((r) => [r.databaseUrl, r.replicaUrl])
          .map((u) => u && new URL(u).port),
      );
      for (const r of second.regions) {
        expect(ports.has(new URL(r.databaseUrl).port)).toBe(false);
      }
      await second.query('iad', 'CREATE TABLE second (x int)');
      await second.query('iad', 'INSERT INTO second VALUES (1)');
      await second.waitForReplay('syd');
      expect((await second.query('syd', 'SELECT x FROM second')).rows).toEqual([{ x: 1 }]);
      await expect(primary.query('SELECT * FROM second')).rejects.toThrow(/does not exist/);
    } finally {
      await second.stop();
    }
    expect(existsSync(second.dir)).toBe(false);
  });
});

describe('LocalCluster lifecycle', () => {
  it('restarts from its directory with the data kept, and stops leaving no process behind', async () => {
    const dir = path.join(cluster.dir, 'lifecycle');
    const first = await LocalCluster.start({ dir, regions: ['iad', 'syd'], rttMs: { syd: 20 } });
    await first.query('iad', 'CREATE TABLE kept (x int)');
    await first.query('iad', 'INSERT INTO kept VALUES (42)');
    const pids = first.topology.regions.map((r) => first.server(r).pid as number);
    await first.stop();
    for (const pid of pids) expect(isAlive(pid)).toBe(false);

    const second = await LocalCluster.start({ dir, regions: ['iad', 'syd'], rttMs: { syd: 20 } });
    try {
      expect(second.endpoints('syd')).toEqual(first.endpoints('syd'));
      expect((await second.query('syd', 'SELECT x FROM kept')).rows).toEqual([{ x: 42 }]);
    } finally {
      await second.stop();
    }
  });

  it('finds a leftover server from a crashed run and stops it instead of starting a second one', async () => {
    const dir = path.join(cluster.dir, 'leftover');
    const first = await LocalCluster.start({ dir, regions: ['iad'] });
    const port = first.server('iad').port;
    await first.stop();
    // A server nobody tracks, as a crashed run would leave behind.
    const orphan = new PostgresServer({
      name: 'orphan',
      dataDir: path.join(dir, 'pg', 'iad'),
      port,
      binaries: findPostgresBinaries(),
      user: resolveServerUser(),
      logFile: path.join(dir, 'logs', 'orphan.log'),
      settings: () => ({ listen_addresses: '127.0.0.1', unix_socket_directories: '' }),
    });
    await orphan.start();
    const orphanPid = orphan.pid as number;
    const second = await LocalCluster.start({ dir, regions: ['iad'] });
    try {
      expect(isAlive(orphanPid)).toBe(false);
      expect(second.server('iad').pid).not.toBe(orphanPid);
      expect((await second.query('iad', 'SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    } finally {
      await second.stop();
    }
  });

  it('refuses a directory already in use by a running cluster', async () => {
    await expect(LocalCluster.start({ dir: cluster.dir })).rejects.toThrow(
      /already running in process/,
    );
  });

  it('stops its servers when the process that started them dies by SIGKILL', async () => {
    const script = `
      import { LocalCluster } from './src/testing/cluster.ts';
      const c = await LocalCluster.start({ temporary: true, regions: ['iad', 'syd'], rttMs: { syd: 10 } });
      console.log(JSON.stringify({ dir: c.dir, pids: c.topology.regions.map((r) => c.server(r).pid) }));
      setInterval(() => {}, 1000);
    `;
    const { child, line } = await startScript(script);
    const { dir, pids } = JSON.parse(line) as { dir: string; pids: number[] };
    expect(pids.every(isAlive)).toBe(true);
    child.kill('SIGKILL');
    expect(await waitGone(pids)).toEqual([]);
    rmSync(dir, { recursive: true, force: true });
  });
});
