/**
 * The driver behaviour suite over Drizzle on `RegionalPool`, through Drizzle's query builder:
 * Drizzle's own query objects are what is routed.
 */
import { eq, sql } from 'drizzle-orm';
import { drizzle as plainDrizzle } from 'drizzle-orm/node-postgres';
import { integer, pgTable, serial, text, withReplicas } from 'drizzle-orm/pg-core';
import pg from 'pg';
import { driverBehaviourSuite } from '../../test/support/driver-suite.js';
import { RegionalPool } from '../pg/pool.js';
import { drizzle } from './index.js';

const counters = pgTable('counters', {
  id: integer('id').primaryKey(),
  value: integer('value').notNull(),
});
const notes = pgTable('notes', { id: serial('id').primaryKey(), body: text('body').notNull() });
const inRecovery = sql<boolean>`pg_is_in_recovery()`;
const served = { value: counters.value, inRecovery };

driverBehaviourSuite({
  name: 'regional/drizzle on RegionalPool',
  open(options, connections) {
    const pool = new RegionalPool({ ...options, pool: { max: connections } });
    const db = drizzle(pool);
    // Drizzle's own read replicas: withReplicas over plain node-postgres pools.
    const plain = [options.databaseUrl, options.replicaUrl ?? ''].map((url) => {
      const plainPool = new pg.Pool({ connectionString: url, max: connections });
      plainPool.on('error', () => {}); // the suite stops the replica under it
      return plainPool;
    });
    const [primary, replica] = plain.map((plainPool) => plainDrizzle(plainPool)) as [
      ReturnType<typeof plainDrizzle>,
      ReturnType<typeof plainDrizzle>,
    ];
    const naive = withReplicas(primary, [replica]);
    return {
      bump: async (id) =>
        (
          await db
            .update(counters)
            .set({ value: sql`${counters.value} + 1` })
            .where(eq(counters.id, id))
            .returning({ value: counters.value })
        )[0]?.value as number,
      read: async (id) =>
        (await db.select(served).from(counters).where(eq(counters.id, id)))[0]?.value,
      inRecovery: async () =>
        (await db.select({ inRecovery }).from(counters).limit(1))[0]?.inRecovery as boolean,
      writeInRecovery: async (body) =>
        (await db.insert(notes).values({ body }).returning({ inRecovery }))[0]
          ?.inRecovery as boolean,
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
        db.transaction(async (tx) => {
          const [written] = await tx
            .update(counters)
            .set({ value: sql`${counters.value} + 1` })
            .where(eq(counters.id, id))
            .returning({ value: counters.value });
          const [seen] = await tx.select(served).from(counters).where(eq(counters.id, id));
          return {
            written: written?.value as number,
            seen: { value: seen?.value, inRecovery: seen?.inRecovery as boolean },
          };
        }),
      readOnlyTransaction: (id) =>
        db.transaction(
          async (tx) => {
            const [seen] = await tx.select(served).from(counters).where(eq(counters.id, id));
            return { value: seen?.value, inRecovery: seen?.inRecovery as boolean };
          },
          { accessMode: 'read only' },
        ),
      failingTransaction: (id, failure) =>
        db.transaction(async (tx) => {
          await tx
            .update(counters)
            .set({ value: sql`${counters.value} + 1` })
            .where(eq(counters.id, id));
          if (failure === 'throw') throw new Error('changed my mind');
          await tx.insert(counters).values({ id, value: 0 });
        }),
      stats: () => pool.stats(),
      naiveRead: async (id) =>
        (await naive.select(served).from(counters).where(eq(counters.id, id)))[0]?.value,
      end: async () => {
        await Promise.all([pool.end(), ...plain.map((plainPool) => plainPool.end())]);
      },
    };
  },
});
