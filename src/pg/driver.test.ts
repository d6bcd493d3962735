/** The driver behaviour suite over `RegionalPool` (node-postgres). */
import pg from 'pg';
import { driverBehaviourSuite } from '../../test/support/driver-suite.js';
import { RegionalPool } from './pool.js';

type Queryable = { query(text: string, values?: unknown[]): Promise<{ rows: unknown[] }> };
type Row = { value: number; r: boolean; n: string };

const BUMP = 'UPDATE counters SET value = value + 1 WHERE id = $1 RETURNING value';
const READ = 'SELECT value, pg_is_in_recovery() AS r FROM counters WHERE id = $1';

const row = async (on: Queryable, text: string, values: unknown[] = []) =>
  (await on.query(text, values)).rows[0] as Row;
const served = async (on: Queryable, text: string, values: unknown[] = []) => {
  const found = (await on.query(text, values)).rows[0] as Row | undefined;
  return { value: found?.value as number, inRecovery: found?.r as boolean };
};

driverBehaviourSuite({
  name: 'regional/pg (RegionalPool)',
  open(options, connections) {
    const pool = new RegionalPool({ ...options, pool: { max: connections } });
    // Reading the replica without Regional: a plain pg.Pool on its URL.
    const plain = new pg.Pool({ connectionString: options.replicaUrl ?? '', max: connections });
    plain.on('error', () => {}); // the suite stops the replica under it
    return {
      bump: async (id) => (await row(pool, BUMP, [id])).value,
      read: async (id) => (await served(pool, READ, [id])).value,
      inRecovery: async () => (await row(pool, 'SELECT pg_is_in_recovery() AS r')).r,
      writeInRecovery: async (body) =>
        (
          await row(
            pool,
            'INSERT INTO notes (body) VALUES ($1) RETURNING pg_is_in_recovery() AS r',
            [body],
          )
        ).r,
      callWritingFunction: (id) =>
        served(pool, 'SELECT bump_counter($1) AS value, pg_is_in_recovery() AS r', [id]),
      nextval: async () => {
        const { n, r } = await row(
          pool,
          "SELECT nextval('tickets') AS n, pg_is_in_recovery() AS r",
        );
        return { value: Number(n), inRecovery: r };
      },
      readWriteTransaction: (id) =>
        pool.transaction(async (tx) => ({
          written: (await row(tx, BUMP, [id])).value,
          seen: await served(tx, READ, [id]),
        })),
      readOnlyTransaction: (id) =>
        pool.transaction((tx) => served(tx, READ, [id]), { readOnly: true }),
      failingTransaction: (id, failure) =>
        pool.transaction(async (tx) => {
          await tx.query(BUMP, [id]);
          if (failure === 'throw') throw new Error('changed my mind');
          await tx.query('INSERT INTO counters (id, value) VALUES ($1, 0)', [id]);
        }),
      stats: () => pool.stats(),
      naiveRead: async (id) => (await served(plain, READ, [id])).value,
      end: async () => {
        await Promise.all([pool.end(), plain.end()]);
      },
    };
  },
});
