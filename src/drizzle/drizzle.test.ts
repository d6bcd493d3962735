import { eq, sql } from 'drizzle-orm';
import { drizzle as plainDrizzle } from 'drizzle-orm/node-postgres';
import { integer, pgTable, serial, text, withReplicas } from 'drizzle-orm/pg-core';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { countersTable, countStaleReads } from '../../test/support/consistency.js';
import { twoRegions } from '../../test/support/two-regions.js';
import { currentContext, withContext } from '../core/context.js';
import type { RegionalPool } from '../pg/pool.js';
import type { LocalCluster } from '../testing/cluster.js';
import { drizzle } from './index.js';

const counters = pgTable('counters', {
  id: integer('id').primaryKey(),
  value: integer('value').notNull(),
});
const notes = pgTable('notes', { id: serial('id').primaryKey(), body: text('body').notNull() });

let cluster: LocalCluster;
let pool: RegionalPool;
let db: ReturnType<typeof drizzle<{ counters: typeof counters; notes: typeof notes }>>;

beforeAll(async () => {
  ({ cluster, pool } = await twoRegions(
    `${countersTable()} CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL);`,
    { pool: { pool: { max: 50 } } },
  ));
  db = drizzle(pool, { schema: { counters, notes } });
});

afterAll(async () => {
  await pool?.end();
  await cluster?.stop();
});

const bump = async (id: number) => {
  const [row] = await db
    .update(counters)
    .set({ value: sql`${counters.value} + 1` })
    .where(eq(counters.id, id))
    .returning({ value: counters.value });
  return row?.value as number;
};

describe('regional/drizzle in a replica region (50 ms one way)', () => {
  it('an update then a select in the same context, a thousand times: never stale', async () => {
    const before = pool.stats();
    const stale = await countStaleReads(1000, bump, async (id) => {
      const [row] = await db
        .select({ value: counters.value })
        .from(counters)
        .where(eq(counters.id, id));
      return row?.value;
    });
    expect(stale).toBe(0);
    expect(pool.stats().replicaReads - before.replicaReads).toBe(1000);
  });

  it("the same run with Drizzle's own withReplicas reading the replica sees stale reads", async () => {
    const replicaDb = withReplicas(plainDrizzle(pool.primaryPool), [
      plainDrizzle(pool.replicaPool as pg.Pool),
    ]);
    const stale = await countStaleReads(200, bump, async (id) => {
      const [row] = await replicaDb
        .select({ value: counters.value })
        .from(counters)
        .where(eq(counters.id, id));
      return row?.value;
    });
    expect(stale).toBeGreaterThan(0);
  });

  it('routes selects to the replica and inserts to the primary, from the query objects', async () => {
    const [read] = await db
      .select({ r: sql<boolean>`pg_is_in_recovery()` })
      .from(counters)
      .limit(1);
    expect(read?.r).toBe(true);
    const [written] = await db
      .insert(notes)
      .values({ body: 'drizzle' })
      .returning({ r: sql<boolean>`pg_is_in_recovery()` });
    expect(written?.r).toBe(false);
    // The relational query API is a select too.
    const found = await withContext(async () => {
      await db.insert(notes).values({ body: 'relational' });
      return db.query.notes.findFirst({ where: eq(notes.body, 'relational') });
    });
    expect(found?.body).toBe('relational');
  });

  it('a select that locks rows goes to the primary', async () => {
    const rows = await db.transaction(async (tx) =>
      tx
        .select({ r: sql<boolean>`pg_is_in_recovery()` })
        .from(counters)
        .where(eq(counters.id, 1))
        .for('update'),
    );
    expect(rows[0]?.r).toBe(false);
  });

  it('transactions run on the primary and record their commit; read-only ones run on the replica', async () => {
    await withContext(async () => {
      const inside = await db.transaction(async (tx) => {
        await tx.update(counters).set({ value: 500 }).where(eq(counters.id, 10));
        const [row] = await tx
          .select({ r: sql<boolean>`pg_is_in_recovery()` })
          .from(counters)
          .limit(1);
        return row?.r;
      });
      expect(inside).toBe(false);
      expect(currentContext().entries()).toHaveLength(1);
      const checked = () => pool.stats().checkedReads + pool.stats().checkedReadsBehind;
      const before = checked();
      const seen = await db.transaction(
        async (tx) =>
          tx
            .select({ value: counters.value, r: sql<boolean>`pg_is_in_recovery()` })
            .from(counters)
            .where(eq(counters.id, 10)),
        { accessMode: 'read only' },
      );
      expect(seen).toEqual([{ value: 500, r: true }]);
      // Its BEGIN asked for the replica's position in the same round trip.
      expect(checked()).toBe(before + 1);
    });
  });

  it('prepared queries (.prepare(name)) are routed and checked like the rest: never stale', async () => {
    const bumpPrepared = db
      .update(counters)
      .set({ value: sql`${counters.value} + 1` })
      .where(eq(counters.id, sql.placeholder('id')))
      .returning({ value: counters.value })
      .prepare('counter_bump');
    const valuePrepared = db
      .select({ value: counters.value, r: sql<boolean>`pg_is_in_recovery()` })
      .from(counters)
      .where(eq(counters.id, sql.placeholder('id')))
      .prepare('counter_value');
    const before = pool.stats();
    let onReplica = 0;
    // One at a time: each read needs the write just before it, which nothing else has told
    // the pool the replica has.
    const stale = await countStaleReads(
      20,
      async (id) => (await bumpPrepared.execute({ id }))[0]?.value as number,
      async (id) => {
        const [row] = await valuePrepared.execute({ id });
        if (row?.r) onReplica++;
        return row?.value;
      },
      { concurrency: 1 },
    );
    expect(stale).toBe(0);
    expect(onReplica).toBe(20);
    const after = pool.stats();
    expect(after.writes - before.writes).toBe(20);
    // Each read asked for the replica's position in its own round trip.
    expect(
      after.checkedReads +
        after.checkedReadsBehind -
        (before.checkedReads + before.checkedReadsBehind),
    ).toBe(20);
  });

  it('raw SQL through db.execute is classified from its text', async () => {
    const read = await db.execute(sql`SELECT pg_is_in_recovery() AS r`);
    expect(read.rows[0]?.r).toBe(true);
    await withContext(async () => {
      await db.execute(sql`UPDATE counters SET value = 7 WHERE id = 11`);
      const [row] = await db
        .select({ value: counters.value })
        .from(counters)
        .where(eq(counters.id, 11));
      expect(row?.value).toBe(7);
    });
  });
});
