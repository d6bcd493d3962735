/**
 * RegionalPool under server faults, on a real cluster: servers killed under a query, a replica
 * that comes back as a process that is behind. Servers are killed and restarted here, so these
 * tests have a cluster of their own. (A replica killed under a checked read, and reads that fell
 * back to the primary being remembered, are in the behaviour suite every driver runs:
 * test/support/driver-suite.ts.)
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { withContext } from '../core/context.js';
import { PrimaryUnavailableError, RegionalError } from '../core/errors.js';
import { LocalCluster } from '../testing/cluster.js';
import { LatencyProxy } from '../testing/link/latency-proxy.js';
import { RegionalPool, type RegionalPoolOptions } from './pool.js';

let cluster: LocalCluster;
const pools: RegionalPool[] = [];
const closers: (() => Promise<unknown>)[] = [];
/** Exceptions nobody caught (an 'error' event without a listener) while a test ran. */
const uncaught: Error[] = [];
const recordUncaught = (error: Error) => uncaught.push(error);

beforeAll(async () => {
  cluster = await LocalCluster.start({
    temporary: true,
    regions: ['iad', 'cdg', 'syd'],
    rttMs: { cdg: 40, syd: 40 },
  });
  await cluster.query(
    'iad',
    `CREATE TABLE items (id serial PRIMARY KEY, body text NOT NULL);
     CREATE TABLE counters (id int PRIMARY KEY, value int NOT NULL);
     INSERT INTO counters VALUES (1, 0);`,
  );
  await Promise.all([cluster.waitForReplay('syd'), cluster.waitForReplay('cdg')]);
  process.on('uncaughtExceptionMonitor', recordUncaught);
});

afterEach(async () => {
  for (const close of closers.splice(0)) await close();
  await Promise.all(pools.splice(0).map((pool) => pool.end()));
  // Every server back up and replaying, whatever a test did.
  for (const region of ['iad', 'syd', 'cdg']) await cluster.server(region).start();
  for (const region of ['syd', 'cdg']) await cluster.resumeReplay(region).catch(() => {});
  await cluster.waitForStreaming(30_000);
  expect(uncaught).toEqual([]);
});

afterAll(async () => {
  process.off('uncaughtExceptionMonitor', recordUncaught);
  await cluster?.stop();
});

function sydPool(options: Partial<RegionalPoolOptions> = {}): RegionalPool {
  const syd = cluster.endpoints('syd');
  const pool = new RegionalPool({
    primaryRegion: 'iad',
    region: 'syd',
    databaseUrl: syd.databaseUrl,
    replicaUrl: syd.replicaUrl,
    onWarning: () => {},
    ...options,
  });
  pools.push(pool);
  return pool;
}

/**
 * A TCP path to a replica that can be switched to another server: to the pool, the replica at
 * its URL went away and came back as another process.
 */
async function switchableReplica(region: string) {
  const url = new URL(cluster.serverUrl(region));
  const proxy = new LatencyProxy({
    name: `test->${region} replica`,
    targetPort: Number(url.port),
    oneWayMs: 0,
  });
  url.port = String(await proxy.listen());
  closers.push(() => proxy.close());
  return {
    url: url.toString(),
    switchTo: (to: string) => proxy.retarget(Number(new URL(cluster.serverUrl(to)).port)),
  };
}

/**
 * What `promise` fails with (null if it succeeds), handled from the start: it may fail while the
 * test still awaits the kill, which would otherwise be an unhandled rejection.
 */
function failure(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => null,
    (error: unknown) => error,
  );
}

describe('a server dying under a query never takes the process down', () => {
  it('a write when the primary is killed fails with the real cause, saying it may have been sent', async () => {
    const pool = sydPool();
    const write = failure(
      pool.query(
        'UPDATE counters SET value = value + 1 WHERE id = 1 AND pg_sleep(1.5) IS NOT NULL',
      ),
    );
    await sleep(300);
    await cluster.server('iad').kill();
    const error = await write;
    expect(error).toBeInstanceOf(PrimaryUnavailableError);
    expect((error as PrimaryUnavailableError).code).toBe('REGIONAL_PRIMARY_UNAVAILABLE');
    expect((error as PrimaryUnavailableError).sent).toBe(true);
    expect((error as Error).message).not.toMatch(/not queryable/);
    expect((error as Error).message).toMatch(/may or may not have been committed/);
  });

  it('a transaction and a checked-out client when the primary is killed: clear errors', async () => {
    const pool = sydPool();
    const client = await pool.connect({ on: 'primary' });
    await client.query('SELECT 1');
    const transaction = failure(
      pool.transaction(async (tx) => {
        await tx.query('UPDATE counters SET value = value + 1 WHERE id = 1');
        await tx.query('SELECT pg_sleep(1.5)');
      }),
    );
    await sleep(300);
    await cluster.server('iad').kill();
    expect(await transaction).toMatchObject({ code: 'REGIONAL_PRIMARY_UNAVAILABLE' });
    // The checked-out client sat idle when its server died: its next query names the cause.
    const error = await client.query('SELECT 1').then(
      () => null,
      (e: unknown) => e,
    );
    client.release();
    expect(error).toBeInstanceOf(RegionalError);
    expect((error as RegionalError).code).toBe('REGIONAL_PRIMARY_UNAVAILABLE');
    expect((error as Error).message).not.toMatch(/not queryable/);
  });

  it('like pg: a checked-out client and the pool tell their error listeners when connections break', async () => {
    const pool = sydPool();
    const poolErrors: Error[] = [];
    pool.on('error', (error) => poolErrors.push(error));
    const client = await pool.connect({ on: 'primary' });
    const clientErrors: Error[] = [];
    const onError = (error: Error) => clientErrors.push(error);
    client.on('error', onError);
    await client.query('SELECT 1');
    await pool.query('SELECT 1', [], { on: 'primary' }); // leaves an idle connection in the pool
    await cluster.server('iad').kill();
    for (let i = 0; i < 50 && (clientErrors.length === 0 || poolErrors.length === 0); i++)
      await sleep(20);
    expect(clientErrors.length).toBeGreaterThan(0);
    expect(poolErrors.length).toBeGreaterThan(0);
    client.removeListener('error', onError);
    client.release();
  });

  it('while the primary is down writes fail at once saying nothing was sent; once back they work', async () => {
    const pool = sydPool();
    await pool.query('UPDATE counters SET value = value + 1 WHERE id = 1');
    await cluster.server('iad').kill();
    // (A write sent on a pooled connection before its close arrived could not tell whether it
    // reached the server; once the pool has heard, it knows nothing is sent.)
    await sleep(200);
    const error = await pool.query('UPDATE counters SET value = value + 1 WHERE id = 1').then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toMatchObject({ code: 'REGIONAL_PRIMARY_UNAVAILABLE', sent: false });
    await cluster.server('iad').start();
    await cluster.waitForStreaming(30_000);
    // The pooled connection died with the old server: replaced, not reported.
    const { rowCount } = await pool.query('UPDATE counters SET value = value + 1 WHERE id = 1');
    expect(rowCount).toBe(1);
  });
});

describe('what the pool knows of a replica does not outlive the replica process', () => {
  it('a replica that comes back as a process that is behind is not read until it has caught up', async () => {
    const switchable = await switchableReplica('syd');
    const pool = sydPool({ replicaUrl: switchable.url, replicaRetryMs: 100, maxWaitMs: 300 });
    await cluster.pauseReplay('cdg');
    await withContext(async () => {
      const { rows } = await pool.query<{ id: number }>(
        "INSERT INTO items (body) VALUES ('seen before the restart') RETURNING id",
      );
      const id = rows[0]?.id;
      const read = () => pool.query('SELECT id FROM items WHERE id = $1', [id]);
      expect((await read()).rowCount).toBe(1);
      expect(pool.tracker?.known).not.toBeNull();
      // The replica goes away and comes back behind (cdg, paused before the insert).
      switchable.switchTo('cdg');
      await sleep(500); // past the failure window: only what is remembered could send reads there
      for (let i = 0; i < 20; i++) expect((await read()).rowCount).toBe(1);
    });
    expect(pool.stats().replicaRestarts).toBe(1);
    expect(pool.stats().tracker?.forgotten).toBeGreaterThan(0);
    // Once the new process has replayed what the primary had, reads use it again.
    await cluster.resumeReplay('cdg');
    const deadline = Date.now() + 10_000;
    const before = pool.stats().replicaReads;
    while (pool.stats().replicaReads === before && Date.now() < deadline) {
      await pool.query('SELECT 1');
      await sleep(50);
    }
    expect(pool.stats().replicaReads).toBeGreaterThan(before);
  });

  it('a killed and restarted replica forgets what was seen and counts the restart', async () => {
    const pool = sydPool();
    await withContext(async () => {
      await pool.query("INSERT INTO items (body) VALUES ('warm')");
      await pool.query('SELECT count(*) FROM items');
    });
    expect(pool.tracker?.known).not.toBeNull();
    await cluster.server('syd').kill();
    await sleep(200);
    expect(pool.tracker?.known).toBeNull();
    await cluster.server('syd').start();
    const deadline = Date.now() + 10_000;
    while (pool.stats().replicaRestarts === 0 && Date.now() < deadline) await sleep(50);
    expect(pool.stats().replicaRestarts).toBe(1);
  });
});
