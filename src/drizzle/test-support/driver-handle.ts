/**
 * The driver behaviour suite's operations written with Drizzle's query builder, shared by the
 * Drizzle setups (on node-postgres and on postgres.js): only how the database is opened differs.
 */
import { eq, sql } from 'drizzle-orm';
import {
  integer,
  type PgDatabase,
  type PgQueryResultHKT,
  pgTable,
  serial,
  text,
} from 'drizzle-orm/pg-core';
import type { DriverHandle } from '../../../test/support/driver-suite.js';

const counters = pgTable('counters', {
  id: integer('id').primaryKey(),
  value: integer('value').notNull(),
});
const notes = pgTable('notes', { id: serial('id').primaryKey(), body: text('body').notNull() });
const inRecovery = sql<boolean>`pg_is_in_recovery()`;
const served = { value: counters.value, inRecovery };

// biome-ignore lint/suspicious/noExplicitAny: any Drizzle Postgres database, whatever its driver's result type
type Database = PgDatabase<PgQueryResultHKT, any>;

/** `UPDATE counters SET value = value + 1 WHERE id = $1 RETURNING value`: the value written. */
export async function bumpCounter(db: Database, id: number): Promise<number> {
  const [row] = await db
    .update(counters)
    .set({ value: sql`${counters.value} + 1` })
    .where(eq(counters.id, id))
    .returning({ value: counters.value });
  return row?.value as number;
}

/** `SELECT value, pg_is_in_recovery() FROM counters WHERE id = $1`. */
async function servedRow(db: Database, id: number) {
  const [row] = await db.select(served).from(counters).where(eq(counters.id, id));
  return { value: row?.value, inRecovery: row?.inRecovery as boolean };
}

/** `SELECT value FROM counters WHERE id = $1` (with `pg_is_in_recovery()`, unused here). */
export async function readCounter(db: Database, id: number): Promise<number | undefined> {
  return (await servedRow(db, id)).value;
}

/**
 * The suite's handle over `db` (Regional's), reading `naive` (Drizzle's own `withReplicas`) for
 * the runs without waiting.
 */
export function drizzleHandle(
  db: Database,
  naive: Database,
  own: Pick<DriverHandle, 'stats' | 'end'>,
): DriverHandle {
  return {
    bump: (id) => bumpCounter(db, id),
    read: (id) => readCounter(db, id),
    inRecovery: async () =>
      (await db.select({ inRecovery }).from(counters).limit(1))[0]?.inRecovery as boolean,
    writeInRecovery: async (body) =>
      (await db.insert(notes).values({ body }).returning({ inRecovery }))[0]?.inRecovery as boolean,
    callWritingFunction: async (id) => {
      const [row] = await db
        .select({ value: sql<number>`bump_counter(${id})`, inRecovery })
        .from(counters)
        .where(eq(counters.id, id));
      return row as { value: number; inRecovery: boolean };
    },
    nextval: async () => {
      const [row] = await db
        .select({ value: sql<string>`nextval('tickets')`, inRecovery })
        .from(counters)
        .limit(1);
      return { value: Number(row?.value), inRecovery: row?.inRecovery as boolean };
    },
    readWriteTransaction: (id) =>
      db.transaction(async (tx) => ({
        written: await bumpCounter(tx, id),
        seen: await servedRow(tx, id),
      })),
    readOnlyTransaction: (id) =>
      db.transaction((tx) => servedRow(tx, id), { accessMode: 'read only' }),
    failingTransaction: (id, failure) =>
      db.transaction(async (tx) => {
        await bumpCounter(tx, id);
        if (failure === 'throw') throw new Error('changed my mind');
        await tx.insert(counters).values({ id, value: 0 });
      }),
    stats: own.stats,
    naiveRead: (id) => readCounter(naive, id),
    end: own.end,
  };
}
