import { type Generated, Kysely, PostgresDialect, sql } from 'kysely';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { countersTable, countStaleReads } from '../../test/support/consistency.js';
import { twoRegions } from '../../test/support/two-regions.js';
import { currentContext, withContext } from '../core/context.js';
import type { RegionalPool } from '../pg/pool.js';
import type { LocalCluster } from '../testing/cluster.js';
import { kindOfNode, RegionalDialect } from './index.js';

interface Database {
  counters: { id: number; value: number };
  notes: { id: Generated<number>; body: string };
}

let cluster: LocalCluster;
let pool: RegionalPool;
let db: Kysely<Database>;

beforeAll(async () => {
  ({ cluster, pool } = await twoRegions(
    `${countersTable()} CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL);`,
    { pool: { pool: { max: 50 } } },
  ));
  db = new Kysely<Database>({ dialect: new RegionalDialect({ pool }) });
});

afterAll(async () => {
  await db?.destroy();
  await pool?.end();
  await cluster?.stop();
});

const bump = async (id: number) => {
  const row = await db
    .updateTable('counters')
    .set((eb) => ({ value: eb('value', '+', 1) }))
    .where('id', '=', id)
    .returning('value')
    .executeTakeFirstOrThrow();
  return row.value;
};

const inRecovery = sql<boolean>`pg_is_in_recovery()`.as('r');

describe('regional/kysely in a replica region (50 ms one way)', () => {
  it('an update then a select in the same context, a thousand times: never stale', async () => {
    const before = pool.stats();
    const stale = await countStaleReads(1000, bump, async (id) => {
      const row = await db
        .selectFrom('counters')
        .select('value')
        .where('id', '=', id)
        .executeTakeFirst();
      return row?.value;
    });
    expect(stale).toBe(0);
    expect(pool.stats().replicaReads - before.replicaReads).toBe(1000);
  });

  it("the same run with Kysely's plain Postgres dialect on the replica sees stale reads", async () => {
    const plain = new Kysely<Database>({
      dialect: new PostgresDialect({ pool: pool.replicaPool as pg.Pool }),
    });
    const stale = await countStaleReads(200, bump, async (id) => {
      const row = await plain
        .selectFrom('counters')
        .select('value')
        .where('id', '=', id)
        .executeTakeFirst();
      return row?.value;
    });
    expect(stale).toBeGreaterThan(0);
  });

  it('routes from the operation nodes: selects to the replica, writes and locking selects to the primary', async () => {
    expect(
      (await db.selectFrom('counters').select(inRecovery).limit(1).executeTakeFirst())?.r,
    ).toBe(true);
    const inserted = await db
      .insertInto('notes')
      .values({ body: 'kysely' })
      .returning(inRecovery)
      .executeTakeFirst();
    expect(inserted?.r).toBe(false);
    const locked = await db
      .transaction()
      .execute((tx) =>
        tx
          .selectFrom('counters')
          .select(inRecovery)
          .where('id', '=', 1)
          .forUpdate()
          .executeTakeFirst(),
      );
    expect(locked?.r).toBe(false);

    const select = db.selectFrom('counters').selectAll().compile().query;
    expect(kindOfNode(select)).toBe('read');
    expect(kindOfNode(db.selectFrom('counters').selectAll().forShare().compile().query)).toBe(
      'write',
    );
    expect(kindOfNode(db.deleteFrom('notes').compile().query)).toBe('write');
    const writingCte = db
      .with('gone', (q) => q.deleteFrom('notes').returning('id'))
      .selectFrom('gone')
      .selectAll()
      .compile().query;
    expect(kindOfNode(writingCte)).toBe('write');
    expect(kindOfNode(sql`SELECT 1`.compile(db).query)).toBeUndefined();
  });

  it('transactions run on the primary and record their commit; read-only ones run on the replica', async () => {
    await withContext(async () => {
      const inside = await db.transaction().execute(async (tx) => {
        await tx.updateTable('counters').set({ value: 900 }).where('id', '=', 20).execute();
        return (await tx.selectFrom('counters').select(inRecovery).limit(1).executeTakeFirst())?.r;
      });
      expect(inside).toBe(false);
      expect(currentContext().entries()).toHaveLength(1);
      const checked = () => pool.stats().checkedReads + pool.stats().checkedReadsBehind;
      const before = checked();
      const seen = await db
        .transaction()
        .setAccessMode('read only')
        .execute((tx) =>
          tx
            .selectFrom('counters')
            .select(['value', inRecovery])
            .where('id', '=', 20)
            .executeTakeFirst(),
        );
      expect(seen).toEqual({ value: 900, r: true });
      // Its BEGIN asked for the replica's position in the same round trip.
      expect(checked()).toBe(before + 1);
    });
  });

  it('a transaction that throws is rolled back', async () => {
    await expect(
      db.transaction().execute(async (tx) => {
        await tx.insertInto('notes').values({ body: 'never' }).execute();
        throw new Error('abort');
      }),
    ).rejects.toThrow('abort');
    await withContext(async () => {
      const rows = await db.selectFrom('notes').selectAll().where('body', '=', 'never').execute();
      expect(rows).toEqual([]);
    });
  });
});
