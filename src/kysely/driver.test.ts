/**
 * The driver behaviour suite over Kysely with `RegionalDialect` (on `RegionalPool`), through
 * Kysely's query builder: Kysely's own operation nodes are what is routed.
 */
import { type Generated, Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { driverBehaviourSuite } from '../../test/support/driver-suite.js';
import { RegionalPool } from '../pg/pool.js';
import { RegionalDialect } from './index.js';

interface Database {
  counters: { id: number; value: number };
  notes: { id: Generated<number>; body: string };
}

const inRecovery = sql<boolean>`pg_is_in_recovery()`.as('inRecovery');

/** `SELECT value, pg_is_in_recovery() FROM counters WHERE id = $1` on `db` (or a transaction). */
const served = async (db: Kysely<Database>, id: number) => {
  const row = await db
    .selectFrom('counters')
    .select(['value', inRecovery])
    .where('id', '=', id)
    .executeTakeFirst();
  return { value: row?.value, inRecovery: row?.inRecovery as boolean };
};

const bump = async (db: Kysely<Database>, id: number) =>
  (
    await db
      .updateTable('counters')
      .set((eb) => ({ value: eb('value', '+', 1) }))
      .where('id', '=', id)
      .returning('value')
      .executeTakeFirstOrThrow()
  ).value;

driverBehaviourSuite({
  name: 'regional/kysely (RegionalDialect on RegionalPool)',
  open(options, connections) {
    const pool = new RegionalPool({ ...options, pool: { max: connections } });
    const db = new Kysely<Database>({ dialect: new RegionalDialect({ pool }) });
    // Kysely without Regional: its own Postgres dialect on a plain pool on the replica's URL.
    const plain = new pg.Pool({ connectionString: options.replicaUrl ?? '', max: connections });
    plain.on('error', () => {}); // the suite stops the replica under it
    const naive = new Kysely<Database>({ dialect: new PostgresDialect({ pool: plain }) });
    return {
      bump: (id) => bump(db, id),
      read: async (id) => (await served(db, id)).value,
      inRecovery: async () =>
        (await db.selectNoFrom(inRecovery).executeTakeFirstOrThrow()).inRecovery,
      writeInRecovery: async (body) =>
        (
          await db
            .insertInto('notes')
            .values({ body })
            .returning(inRecovery)
            .executeTakeFirstOrThrow()
        ).inRecovery,
      callWritingFunction: async (id) =>
        db
          .selectNoFrom((eb) => [
            eb.fn<number>('bump_counter', [eb.val(id)]).as('value'),
            inRecovery,
          ])
          .executeTakeFirstOrThrow(),
      nextval: async () => {
        const row = await db
          .selectNoFrom((eb) => [
            eb.fn<string>('nextval', [sql.lit('tickets')]).as('value'),
            inRecovery,
          ])
          .executeTakeFirstOrThrow();
        return { value: Number(row.value), inRecovery: row.inRecovery };
      },
      readWriteTransaction: (id) =>
        db
          .transaction()
          .execute(async (tx) => ({ written: await bump(tx, id), seen: await served(tx, id) })),
      readOnlyTransaction: (id) =>
        db
          .transaction()
          .setAccessMode('read only')
          .execute((tx) => served(tx, id)),
      failingTransaction: (id, failure) =>
        db.transaction().execute(async (tx) => {
          await bump(tx, id);
          if (failure === 'throw') throw new Error('changed my mind');
          await tx.insertInto('counters').values({ id, value: 0 }).execute();
        }),
      stats: () => pool.stats(),
      naiveRead: async (id) => (await served(naive, id)).value,
      end: async () => {
        await Promise.all([db.destroy(), naive.destroy()]);
        await pool.end();
      },
    };
  },
});
