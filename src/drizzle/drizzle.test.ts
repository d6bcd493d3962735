/**
 * What is particular to regional/drizzle on RegionalPool: the relational query API, locking
 * selects, prepared queries, raw SQL through db.execute, a read-only transaction's checked BEGIN.
 * The contract every driver keeps runs over Drizzle's query builder in driver.test.ts, from
 * test/support/driver-suite.ts.
 */
import { eq, sql } from 'drizzle-orm';
import { integer, pgTable, serial, text } from 'drizzle-orm/pg-core';
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

describe('regional/drizzle in a replica region (50 ms one way)', () => {
  it("the relational query API is a read: on the replica, after the context's write", async () => {
    const found = await withContext(async () => {
      await db.insert(notes).values({ body: 'relational' });
      return db.query.notes.findFirst({
        columns: { body: true },
        extras: { r: sql<boolean>`pg_is_in_recovery()`.as('r') },
        where: eq(notes.body, 'relational'),
      });
    });
    expect(found).toEqual({ body: 'relational', r: true });
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

  it("a read-only transaction's BEGIN asks for the replica's position in its own round trip", async () => {
    await withContext(async () => {
      await db.transaction(async (tx) => {
        await tx.update(counters).set({ value: 500 }).where(eq(counters.id, 10));
      });
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
