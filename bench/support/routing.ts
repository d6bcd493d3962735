/**
 * What RegionalPool's routing costs per read, timed with the replica pool's `query` answering
 * at once (no I/O): the part of a read's CPU that is Regional's own.
 */
import type pg from 'pg';
import type { RegionalPool } from '../../src/pg/index.js';

const SELECT = 'SELECT id, value, body FROM items WHERE id = $1';

export async function pgRoutingMicros(pool: RegionalPool, n = 200_000): Promise<number> {
  const replica = pool.replicaPool as pg.Pool & { query: unknown };
  const real = replica.query;
  const answer = Promise.resolve({ rows: [], rowCount: 0, command: 'SELECT', oid: 0, fields: [] });
  replica.query = () => answer;
  const direct = replica.query as (text: string, values: unknown[]) => Promise<unknown>;
  try {
    for (let i = 0; i < 20_000; i++) await pool.query(SELECT, [i]);
    const started = performance.now();
    for (let i = 0; i < n; i++) await pool.query(SELECT, [i]);
    const routed = performance.now() - started;
    const bare = performance.now();
    for (let i = 0; i < n; i++) await direct(SELECT, [i]);
    return ((routed - (performance.now() - bare)) * 1000) / n;
  } finally {
    replica.query = real;
  }
}
