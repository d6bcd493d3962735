/**
 * The fault suite's app: one process per region, started by `LocalApps`. Wired the way the
 * README tells users to (Hono, `regional({ sources: [pool] })`, a `RegionalPool`, procedures
 * mounted on `/_regional/*`), and importing only the package's public subpaths.
 *
 * - `POST /items {client, value}` → 201 `{id}`: one insert (replayed in the primary region).
 * - `POST /calls {client, value, key}` → 201 `{id, replayed}`: the procedure `addItem` (call id
 *   = `key`) inserts the item and its `item_audit` row in one transaction. A read route: it runs
 *   in the client's region and the procedure travels over the signed RPC.
 * - `GET /items?client=c` → `{mine, maxId, count}`, read through the pool.
 *
 * `FAULTS_NAIVE=1`: the same endpoints over plain `pg.Pool`s (reads on the local replica, no
 * tokens, no replay, no procedures) — what ORM read-replica helpers do. Errors are left to
 * Hono's defaults on purpose: how they look is what the suite judges.
 *
 * Environment: what `LocalApps` gives (PRIMARY_REGION, REGION, DATABASE_URL,
 * DATABASE_REPLICA_URL, PORT, REGIONAL_*), plus `FAULTS_NAIVE`.
 */
import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import pg from 'pg';
import { regional } from 'regional/hono';
import { RegionalPool } from 'regional/pg';
import { Procedures } from 'regional/rpc';

type Query = (text: string, values?: unknown[]) => Promise<pg.QueryResult>;
type Tx = (fn: (query: Query) => Promise<number>) => Promise<number>;

const region = process.env.REGION ?? 'local';
const port = Number(process.env.PORT ?? 8080);
const naive = process.env.FAULTS_NAIVE === '1';
const closers: (() => Promise<unknown>)[] = [];

const INSERT_ITEM = 'INSERT INTO items (client, value, region) VALUES ($1, $2, $3) RETURNING id';
const INSERT_AUDIT = 'INSERT INTO item_audit (value) VALUES ($1)';
// One statement, one snapshot: the client's values and the table's extent agree.
const READ_ITEMS = `SELECT
  (SELECT coalesce(array_agg(value ORDER BY id), '{}') FROM items WHERE client = $1) AS mine,
  (SELECT max(id) FROM items) AS max_id,
  (SELECT count(*) FROM items) AS count`;

interface Body {
  client: string;
  value: string;
  key?: string;
}

const app = new Hono();
let read: Query;
let write: Query;
let addItem: (body: Body) => Promise<{ id: number; replayed: boolean }>;

if (naive) {
  const plain = (url: string | undefined) => {
    const pool = new pg.Pool({ connectionString: url });
    pool.on('error', (error) => console.warn(`[faults ${region}] idle connection:`, error.message));
    closers.push(() => pool.end());
    return pool;
  };
  const primary = plain(process.env.DATABASE_URL);
  const replica = process.env.DATABASE_REPLICA_URL
    ? plain(process.env.DATABASE_REPLICA_URL)
    : primary;
  read = (text, values) => replica.query(text, values);
  write = (text, values) => primary.query(text, values);
  const transaction: Tx = async (fn) => {
    const client = await primary.connect();
    try {
      await client.query('BEGIN');
      const id = await fn((text, values) => client.query(text, values));
      await client.query('COMMIT');
      return id;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      throw error;
    } finally {
      client.release();
    }
  };
  // No call ids: a retried call simply runs again.
  addItem = async (body) => ({
    id: await transaction(async (query) => {
      const { rows } = await query(INSERT_ITEM, [body.client, body.value, region]);
      await query(INSERT_AUDIT, [body.value]);
      return Number(rows[0].id);
    }),
    replayed: false,
  });
} else {
  const pool = new RegionalPool();
  const procedures = new Procedures({ pool });
  closers.push(
    () => procedures.close(),
    () => pool.end(),
  );
  read = (text, values) => pool.query(text, values);
  write = read; // the pool routes each statement
  const procedure = procedures.define('addItem', async (tx, input: Body, call) => {
    const { rows } = await tx.query<{ id: string }>(INSERT_ITEM, [
      input.client,
      input.value,
      call.region,
    ]);
    await tx.query(INSERT_AUDIT, [input.value]);
    return { id: Number(rows[0]?.id) };
  });
  addItem = async ({ client, value, key }) => {
    const outcome = await procedure.invoke({ client, value }, { id: key });
    return { id: outcome.result.id, replayed: outcome.replayed };
  };
  app.use(regional({ sources: [pool], readRoutes: ['POST /calls'] }));
  app.all('/_regional/*', async (c) => (await procedures.handler(c.req.raw)) ?? c.notFound());
}

app.post('/items', async (c) => {
  const { client, value } = await c.req.json<Body>();
  const { rows } = await write(INSERT_ITEM, [client, value, region]);
  return c.json({ id: Number(rows[0].id) }, 201);
});

app.post('/calls', async (c) => {
  const body = await c.req.json<Body>();
  return c.json(await addItem(body), 201);
});

app.get('/items', async (c) => {
  const { rows } = await read(READ_ITEMS, [c.req.query('client') ?? '']);
  const row = rows[0];
  return c.json({
    mine: row.mine as string[],
    maxId: row.max_id === null ? 0 : Number(row.max_id),
    count: Number(row.count),
  });
});

// Requests being handled, so that stopping lets them finish.
let inFlight = 0;
let onIdle: (() => void) | undefined;
const fetch: typeof app.fetch = async (...args) => {
  inFlight++;
  try {
    return await app.fetch(...args);
  } finally {
    if (--inFlight === 0) onIdle?.();
  }
};

const server = serve({ fetch, port, hostname: '127.0.0.1' }, () => {
  console.log(`listening on ${port} in ${region}${naive ? ' (naive)' : ''}`);
});
(server as unknown as { keepAliveTimeout: number }).keepAliveTimeout = 65_000;

/** SIGTERM: no new connections, let requests in flight finish (3 s at most), close the pools. */
let stopping = false;
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  server.close();
  if (inFlight > 0)
    await Promise.race([
      new Promise<void>((resolve) => (onIdle = resolve)),
      new Promise<void>((resolve) => setTimeout(resolve, 3_000)),
    ]);
  await Promise.allSettled(closers.map((close) => close()));
  process.exit(0);
}
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());
