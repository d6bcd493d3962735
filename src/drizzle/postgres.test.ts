/** Drizzle on postgres.js (`drizzlePostgres` over a `RegionalPostgres`), on a real cluster. */
import { eq, sql } from 'drizzle-orm';
import { integer, pgTable, serial, text, timestamp } from 'drizzle-orm/pg-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { countStaleReads } from '../../test/support/consistency.js';
import { withContext } from '../core/context.js';
import { RegionalPostgres } from '../postgres/index.js';
import { LocalCluster } from '../testing/cluster.js';
import { drizzlePostgres } from './index.js';
import { bumpCounter, readCounter } from './test-support/driver-handle.js';

const counters = pgTable('counters', { id: integer('id').primaryKey(), value: integer('value') });
const posts = pgTable('posts', {
  id: serial('id').primaryKey(),
  body: text('body').notNull(),
  at: timestamp('at').notNull().defaultNow(),
});

let cluster: LocalCluster;
let database: RegionalPostgres;

beforeAll(async () => {
  cluster = await LocalCluster.start({
    temporary: true,
    regions: ['iad', 'syd'],
    rttMs: { syd: 100 },
  });
  await cluster.query(
    'iad',
    `CREATE TABLE counters (id int PRIMARY KEY, value int NOT NULL);
     INSERT INTO counters SELECT g, 0 FROM generate_series(1, 2000) g;
     CREATE TABLE posts (id serial PRIMARY KEY, body text NOT NULL, at timestamp NOT NULL DEFAULT now());`,
  );
  await cluster.waitForReplay('syd');
  const syd = cluster.endpoints('syd');
  database = new RegionalPostgres({
    primaryRegion: 'iad',
    region: 'syd',
    databaseUrl: syd.databaseUrl,
    replicaUrl: syd.replicaUrl,
    onWarning: () => {},
    postgres: { onnotice: () => {} },
  });
});

afterAll(async () => {
  await database?.end();
  await cluster?.stop();
});

describe('Drizzle on postgres.js, routed', () => {
  it('selects read the replica, inserts the primary; dates come back as Drizzle maps them', async () => {
    const db = drizzlePostgres(database);
    const [where] = await db
      .select({ r: sql<boolean>`pg_is_in_recovery()` })
      .from(counters)
      .limit(1);
    expect(where?.r).toBe(true);
    const inserted = await withContext(async () => {
      const [row] = await db
        .insert(posts)
        .values({ body: 'hello' })
        .returning({ id: posts.id, r: sql<boolean>`pg_is_in_recovery()` });
      expect(row?.r).toBe(false);
      return (
        await db
          .select()
          .from(posts)
          .where(eq(posts.id, row?.id as number))
      )[0];
    });
    expect(inserted?.body).toBe('hello');
    expect(inserted?.at).toBeInstanceOf(Date);
  });

  it('an update then a select in the same context, three hundred times: never stale', async () => {
    const db = drizzlePostgres(database);
    const stale = await countStaleReads(
      300,
      (id) => bumpCounter(db, id),
      (id) => readCounter(db, id),
    );
    expect(stale).toBe(0);
  });

  it('transactions run on the primary; read-only ones on the replica', async () => {
    const db = drizzlePostgres(database);
    const onPrimary = await db.transaction(async (tx) => {
      await tx.insert(posts).values({ body: 'in a transaction' });
      return (await tx.execute<{ r: boolean }>(sql`select pg_is_in_recovery() as r`))[0]?.r;
    });
    expect(onPrimary).toBe(false);
    const onReplica = await db.transaction(
      async (tx) => (await tx.execute<{ r: boolean }>(sql`select pg_is_in_recovery() as r`))[0]?.r,
      { accessMode: 'read only' },
    );
    expect(onReplica).toBe(true);
  });
});
