/**
 * What is particular to regional/kysely: routing from Kysely's operation nodes (locking selects,
 * writing CTEs, raw SQL), a read-only transaction's checked BEGIN, rollback. The contract every
 * driver keeps runs over Kysely's query builder in driver.test.ts, from
 * test/support/driver-suite.ts.
 */
import { type Generated, Kysely, sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { countersTable } from '../../test/support/consistency.js';
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

const inRecovery = sql<boolean>`pg_is_in_recovery()`.as('r');

describe('regional/kysely in a replica region (50 ms one way)', () => {
  it('routes from the operation nodes: locking selects and writing CTEs to the primary', async () => {
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

  it("a read-only transaction's BEGIN asks for the replica's position in its own round trip", async () => {
    await withContext(async () => {
      await db.transaction().execute(async (tx) => {
        await tx.updateTable('counters').set({ value: 900 }).where('id', '=', 20).execute();
      });
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
