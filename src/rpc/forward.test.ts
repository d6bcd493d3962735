import net from 'node:net';
import { pgTable, serial, text } from 'drizzle-orm/pg-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withContext } from '../core/context.js';
import { drizzle } from '../drizzle/index.js';
import { RegionalPool } from '../pg/pool.js';
import type { LocalCluster } from '../testing/cluster.js';
import { CallRefusedError, InstancesUnreachableError, ProcedureError } from './errors.js';
import { type App, type AppOptions, startApp, startCluster } from './test-support/apps.js';

// 20 ms each way between iad (primary) and syd.
const RTT_MS = 40;

let cluster: LocalCluster;
let rpcPort: number;
let syd: App;
const apps: App[] = [];
const servers: net.Server[] = [];

async function app(region: string, options: AppOptions = {}): Promise<App> {
  const started = await startApp(cluster, region, options);
  apps.push(started);
  return started;
}

/** A syd app in forward mode whose writes travel to `url`. */
const forwarding = (url: string, procedures: AppOptions['procedures'] = {}) =>
  app('syd', {
    pool: { writes: 'forward', maxWaitMs: 5_000 },
    procedures: { primaryUrl: url, ...procedures },
  });

const link = () => cluster.link('syd', 'iad');
const events = async (body: string) =>
  (await cluster.query('iad', 'SELECT id FROM events WHERE body = $1', [body])).rowCount ?? 0;

/** A TCP server that takes a request and drops the connection: delivered, answer lost. */
async function blackHole(): Promise<{ port: number; requests: () => number }> {
  let requests = 0;
  const server = net.createServer((socket) => {
    socket.once('data', () => {
      requests++;
      socket.destroy();
    });
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as net.AddressInfo).port, requests: () => requests };
}

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

beforeAll(async () => {
  cluster = await startCluster(
    RTT_MS,
    `CREATE TABLE events (id serial PRIMARY KEY, body text UNIQUE NOT NULL, at timestamptz, data jsonb, raw bytea)`,
  );
  // REGIONAL_WRITES=forward everywhere: the primary-region instance serves forwarded statements.
  const iad = await app('iad', { listen: true, pool: { writes: 'forward' } });
  rpcPort = await cluster.route({ from: 'syd', to: 'iad', port: iad.port, name: 'rpc' });
  syd = await forwarding(`http://127.0.0.1:${rpcPort}`);
});

afterAll(async () => {
  await Promise.all(apps.map((a) => a.close()));
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  await cluster?.stop();
});

describe("statement forwarding (writes: 'forward', 20 ms one way)", () => {
  it('a write travels to the primary region in one round trip; syd never connects to the primary', async () => {
    await syd.pool.query('INSERT INTO events (body) VALUES ($1)', ['warm-up']);
    link().resetStats();
    const at = new Date('2025-01-02T03:04:05.678Z');
    const { rows, rowCount, command, fields } = await syd.pool.query(
      'INSERT INTO events (body, at, data, raw) VALUES ($1, $2, $3, $4) RETURNING id, at, data, raw',
      ['first', at, { tags: ['a'] }, Buffer.from([1, 2, 3])],
    );
    expect(command).toBe('INSERT');
    expect(rowCount).toBe(1);
    expect(fields.map((f) => f.name)).toEqual(['id', 'at', 'data', 'raw']);
    expect(rows[0]).toMatchObject({ at, data: { tags: ['a'] }, raw: Buffer.from([1, 2, 3]) });
    expect(rows[0]?.at).toBeInstanceOf(Date);
    expect(link().stats('syd->iad rpc').roundTrips).toBe(1);
    // Not one connection to the primary from syd, ever: replication has its own proxy.
    expect(link().stats('syd->iad postgres').connections).toBe(0);
    expect(syd.procedures.stats().forwarded).toBeGreaterThanOrEqual(2);
  });

  it('the next read in the same context waits for the forwarded write; with { await: false } it is stale', async () => {
    await cluster.pauseReplay('syd');
    try {
      await withContext(async () => {
        await syd.pool.query('INSERT INTO events (body) VALUES ($1)', ['not-awaited'], {
          await: false,
        });
        const stale = await syd.pool.query('SELECT id FROM events WHERE body = $1', [
          'not-awaited',
        ]);
        expect(stale.rows).toEqual([]);
      });
      await withContext(async () => {
        await syd.pool.query('INSERT INTO events (body) VALUES ($1)', ['awaited']);
        setTimeout(() => void cluster.resumeReplay('syd'), 100);
        const fresh = await syd.pool.query('SELECT id FROM events WHERE body = $1', ['awaited']);
        expect(fresh.rows).toHaveLength(1);
      });
    } finally {
      await cluster.resumeReplay('syd');
    }
  });

  it('several statements in one text, and writes from a checked-out client, are forwarded too', async () => {
    const results = await syd.pool.query(
      "INSERT INTO events (body) VALUES ('multi-1'); INSERT INTO events (body) VALUES ('multi-2')",
    );
    expect(Array.isArray(results)).toBe(true);
    expect((await events('multi-1')) + (await events('multi-2'))).toBe(2);
    const arrays = (await syd.pool.query({
      text: "INSERT INTO events (body) VALUES ('arr-1') RETURNING body; INSERT INTO events (body) VALUES ('arr-2') RETURNING body, at",
      rowMode: 'array',
    })) as unknown as { rows: unknown[][] }[];
    expect(arrays.map((r) => r.rows)).toEqual([[['arr-1']], [['arr-2', null]]]);
    const client = await syd.pool.connect();
    try {
      await client.query('INSERT INTO events (body) VALUES ($1)', ['from-client']);
    } finally {
      client.release();
    }
    expect(await events('from-client')).toBe(1);
    expect(link().stats('syd->iad postgres').connections).toBe(0);
  });

  it('Drizzle writes outside a transaction are forwarded as well', async () => {
    const table = pgTable('events', {
      id: serial('id').primaryKey(),
      body: text('body').notNull(),
    });
    const db = drizzle(syd.pool);
    const [row] = await db.insert(table).values({ body: 'drizzle' }).returning();
    expect(row?.body).toBe('drizzle');
    expect(await events('drizzle')).toBe(1);
    expect(link().stats('syd->iad postgres').connections).toBe(0);
  });

  it('a pool in forward mode with nothing to carry its writes says what is missing', async () => {
    const endpoints = cluster.endpoints('syd');
    const pool = new RegionalPool({
      primaryRegion: 'iad',
      region: 'syd',
      databaseUrl: endpoints.databaseUrl,
      replicaUrl: endpoints.replicaUrl,
      writes: 'forward',
    });
    try {
      await expect(pool.query("INSERT INTO events (body) VALUES ('orphan')")).rejects.toMatchObject(
        {
          code: 'REGIONAL_NO_FORWARDER',
          message: expect.stringMatching(/new Procedures\(\{ pool \}\)/),
        },
      );
    } finally {
      await pool.end();
    }
    expect(await events('orphan')).toBe(0);
  });

  it('SQL errors come back with their SQLSTATE', async () => {
    const error = await syd.pool
      .query('INSERT INTO events (body) VALUES ($1)', ['first'])
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ProcedureError);
    expect(error).toMatchObject({ code: '23505', constraint: 'events_body_key' });
  });

  it('read-write transactions are refused with a clear error; read-only ones run on the replica', async () => {
    await expect(
      syd.pool.transaction(async (tx) => tx.query("INSERT INTO events (body) VALUES ('tx')")),
    ).rejects.toMatchObject({ code: 'REGIONAL_TRANSACTION_NEEDS_PRIMARY' });
    const client = await syd.pool.connect();
    try {
      await expect(client.query('BEGIN')).rejects.toThrow(/Define the transaction as a procedure/);
    } finally {
      client.release();
    }
    const inRecovery = await syd.pool.transaction(
      async (tx) => (await tx.query('SELECT pg_is_in_recovery() AS r')).rows[0]?.r,
      { readOnly: true },
    );
    expect(inRecovery).toBe(true);
    expect(await events('tx')).toBe(0);
  });

  it('an instance that does not serve statements refuses them (403), and nothing runs', async () => {
    const direct = await app('iad', { listen: true }); // writes: 'direct'
    const caller = await forwarding(`http://127.0.0.1:${direct.port}`);
    const error = await caller.pool
      .query('INSERT INTO events (body) VALUES ($1)', ['refused'])
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CallRefusedError);
    expect(error).toMatchObject({ remoteStatus: 403, code: 'REGIONAL_FORWARDING_OFF' });
    expect(await events('refused')).toBe(0);
  });

  it('a write that may have been delivered is not sent again: a clear error about its unknown outcome', async () => {
    const hole = await blackHole();
    const caller = await forwarding(`http://127.0.0.1:${hole.port}`, { attempts: 3 });
    const error = await caller.pool
      .query('INSERT INTO events (body) VALUES ($1)', ['lost'])
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'REGIONAL_WRITE_OUTCOME_UNKNOWN' });
    expect(hole.requests()).toBe(1);
  });

  it('no instance reachable: with the fallback on it is written over a direct connection, with it off a clear error', async () => {
    const url = `http://127.0.0.1:${await closedPort()}`;
    const off = await forwarding(url, { attempts: 2 });
    const error = await off.pool
      .query('INSERT INTO events (body) VALUES ($1)', ['unreachable'])
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InstancesUnreachableError);
    expect(await events('unreachable')).toBe(0);

    const on = await forwarding(url, { attempts: 2, fallback: 'direct' });
    await withContext(async () => {
      await on.pool.query('INSERT INTO events (body) VALUES ($1)', ['fell-back']);
      const { rows } = await on.pool.query('SELECT id FROM events WHERE body = $1', ['fell-back']);
      expect(rows).toHaveLength(1);
    });
    expect(on.procedures.stats().fallbacks).toBe(1);
    expect(await events('fell-back')).toBe(1);
  });
});
