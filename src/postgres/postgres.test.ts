/**
 * regional/postgres on a real cluster (iad primary, syd replica, 50 ms each way): postgres.js's
 * own API, routed; round trips counted on the link.
 */
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { countersTable, countStaleReads } from '../../test/support/consistency.js';
import { withContext } from '../core/context.js';
import { ConfigError, ReplicationTimeoutError } from '../core/errors.js';
import type { LocalCluster } from '../testing/cluster.js';
import { LocalCluster as Cluster } from '../testing/cluster.js';
import { RegionalPostgres, type RegionalPostgresOptions } from './index.js';
import { assertSupported } from './queries.js';

let cluster: LocalCluster;
const dbs: RegionalPostgres[] = [];

function sydDb(options: Partial<RegionalPostgresOptions> = {}): RegionalPostgres {
  const syd = cluster.endpoints('syd');
  const db = new RegionalPostgres({
    primaryRegion: 'iad',
    region: 'syd',
    databaseUrl: syd.databaseUrl,
    replicaUrl: syd.replicaUrl,
    onWarning: () => {},
    postgres: { onnotice: () => {} },
    ...options,
  });
  dbs.push(db);
  return db;
}

beforeAll(async () => {
  cluster = await Cluster.start({ temporary: true, regions: ['iad', 'syd'], rttMs: { syd: 100 } });
  await cluster.query(
    'iad',
    `${countersTable()}
     CREATE TABLE notes (id serial PRIMARY KEY, body text);
     CREATE SEQUENCE tickets;
     CREATE FUNCTION add_note(b text) RETURNS int LANGUAGE sql AS $$ INSERT INTO notes (body) VALUES (b) RETURNING id $$;`,
  );
  await cluster.waitForReplay('syd');
});

afterAll(async () => {
  await Promise.all(dbs.map((db) => db.end()));
  await cluster?.stop();
});

const crossings = () => {
  const link = cluster.link('iad', 'syd');
  return link.stats('postgres').roundTrips;
};

describe('regional/postgres (postgres.js) in a replica region', () => {
  it('reads run on the replica and writes on the primary; helpers, fragments and modifiers work', async () => {
    const { sql } = sydDb();
    const [read] = await sql`select pg_is_in_recovery() as r`;
    expect(read?.r).toBe(true);
    const [written] =
      await sql`insert into notes ${sql({ body: 'hello' })} returning (select pg_is_in_recovery()) as r, id`;
    expect(written?.r).toBe(false);
    const where = sql`where id = ${written?.id as number}`;
    const rows = await withContext(async () => {
      await sql`update notes set body = ${'edited'} ${where}`;
      return sql`select body from notes ${where}`.values();
    });
    expect(rows).toEqual([['edited']]);
    expect(await sql.unsafe('select $1::int + 1 as n', [41])).toEqual([{ n: 42 }]);
  });

  it('a write then a read in the same context, three hundred times: never stale; without Regional: stale', async () => {
    const db = sydDb();
    const { sql } = db;
    const bump = async (id: number) =>
      (
        await sql<
          { value: number }[]
        >`update counters set value = value + 1 where id = ${id} returning value`
      )[0]?.value as number;
    const stale = await countStaleReads(
      300,
      bump,
      async (id) =>
        (await sql<{ value: number }[]>`select value from counters where id = ${id}`)[0]?.value,
    );
    expect(stale).toBe(0);
    expect(db.stats().replicaReads).toBeGreaterThanOrEqual(300);
    expect(db.stats().primaryReads).toBe(0);
    const plain = postgres(cluster.endpoints('syd').replicaUrl as string, { max: 10 });
    try {
      const naive = await countStaleReads(
        100,
        bump,
        async (id) =>
          (await plain<{ value: number }[]>`select value from counters where id = ${id}`)[0]?.value,
      );
      expect(naive).toBeGreaterThan(0);
    } finally {
      await plain.end();
    }
  });

  it('a prepared write and its commit position cost one round trip; a checked read crosses nothing', async () => {
    const { sql } = sydDb({ postgres: { max: 1, onnotice: () => {} } });
    const write = () => sql`update counters set value = value + 1 where id = ${7}`;
    await withContext(async () => {
      await write(); // prepares the statement on the connection
      await sql`select value from counters where id = ${7}`;
    });
    await withContext(async () => {
      cluster.link('iad', 'syd').resetStats();
      await write();
      expect(crossings()).toBe(1);
      cluster.link('iad', 'syd').resetStats();
      await sql`select value from counters where id = ${7}`;
      expect(crossings()).toBe(0);
    });
  });

  it('the replica refusing a write (a writing function, nextval) sends it to the primary', async () => {
    const db = sydDb();
    const [note] = await db.sql`select add_note(${'fn'}) as id`;
    expect(note?.id).toBeGreaterThan(0);
    const [ticket] = await db.sql`select nextval('tickets') as n`;
    expect(Number(ticket?.n)).toBeGreaterThan(0);
    // nextval() is known to write: it goes to the primary at once; the function needed the retry.
    expect(db.stats().readOnlyRetries).toBe(1);
  });

  it('sql.begin runs on the primary and records its commit; read only runs on the replica; savepoints roll back', async () => {
    const db = sydDb();
    const { sql } = db;
    await withContext(async () => {
      const primary = await sql.begin(async (tx) => {
        const [inserted] = await tx`insert into notes (body) values ('tx') returning id`;
        await tx.savepoint(async (sp) => {
          await sp`insert into notes (body) values ('kept')`;
        });
        await tx
          .savepoint(async (sp) => {
            await sp`insert into notes (body) values ('dropped')`;
            throw new Error('undo');
          })
          .catch(() => {});
        const [where] = await tx`select pg_is_in_recovery() as r`;
        return { id: inserted?.id as number, r: where?.r };
      });
      expect(primary.r).toBe(false);
      const seen =
        await sql`select body from notes where id >= ${primary.id} and body in ('tx', 'kept', 'dropped') order by id`;
      expect(seen.map((row) => row.body)).toEqual(['tx', 'kept']);
      const [readOnly] = await sql.begin(
        'read only',
        async (tx) => tx`select pg_is_in_recovery() as r`,
      );
      expect(readOnly?.r).toBe(true);
    });
    await expect(
      sql.begin(async (tx) => {
        await tx`insert into notes (body) values ('rolled back')`;
        throw new Error('no');
      }),
    ).rejects.toThrow('no');
    const { rows } = await cluster.query<{ n: string }>(
      'iad',
      "select count(*) as n from notes where body = 'rolled back'",
    );
    expect(rows[0]?.n).toBe('0');
  });

  it('sql.reserve keeps one primary session; its writes are recorded', async () => {
    const { sql } = sydDb();
    const reserved = await sql.reserve();
    try {
      await reserved`create temporary table scratch (n int)`;
      await withContext(async () => {
        await reserved`insert into notes (body) values ('reserved')`;
        const [row] = await sql`select count(*) as n from notes where body = 'reserved'`;
        expect(Number(row?.n)).toBe(1);
      });
      expect(await reserved`select count(*)::int as n from scratch`).toEqual([{ n: 0 }]);
    } finally {
      reserved.release();
    }
  });

  it('a paused replica: reads wait up to the bound, then read the primary; with the error policy they fail', async () => {
    await cluster.pauseReplay('syd');
    try {
      const db = sydDb({ maxWaitMs: 200, replicaRetryMs: 100 });
      await withContext(async () => {
        await db.sql`update counters set value = value + 1 where id = ${3}`;
        const [row] = await db.sql`select pg_is_in_recovery() as r from counters where id = ${3}`;
        expect(row?.r).toBe(false);
      });
      expect(db.stats().waitTimeouts).toBe(1);
      const strict = sydDb({ maxWaitMs: 200, waitPolicy: 'error' });
      await withContext(async () => {
        await strict.sql`update counters set value = value + 1 where id = ${4}`;
        await expect(strict.sql`select value from counters where id = ${4}`).rejects.toBeInstanceOf(
          ReplicationTimeoutError,
        );
      });
    } finally {
      await cluster.resumeReplay('syd');
    }
  });

  it('a table this context just created, on a replica that has not replayed it: the read waits and reads it', async () => {
    const db = sydDb();
    await cluster.pauseReplay('syd');
    try {
      await withContext(async () => {
        await db.sql`create table created_here (id int)`;
        await db.sql`insert into created_here values (1)`;
        // Checked on the paused replica, which has no such table yet: that error is stale too.
        const read = db.sql`select id, pg_is_in_recovery() as r from created_here`.then(
          (rows) => [...rows],
          (error: unknown) => error,
        );
        await new Promise((resolve) => setTimeout(resolve, 150));
        await cluster.resumeReplay('syd');
        expect(await read).toEqual([{ id: 1, r: true }]);
      });
      expect(db.stats()).toMatchObject({ checkedReadsBehind: 1, primaryReads: 0 });
    } finally {
      await cluster.resumeReplay('syd');
    }
  });

  it('a stopped replica: reads are served by the primary, without an error', async () => {
    const db = sydDb({ replicaRetryMs: 200 });
    await db.sql`select 1`;
    await cluster.server('syd').stop();
    try {
      const [row] = await db.sql`select pg_is_in_recovery() as r`;
      expect(row?.r).toBe(false);
      expect(db.stats().primaryReads).toBeGreaterThan(0);
    } finally {
      await cluster.server('syd').start();
      await cluster.waitForReplay('syd');
    }
  });
});

describe('regional/postgres configuration', () => {
  it('REGIONAL_WRITES=forward, which only RegionalPool supports, is refused naming the variable', () => {
    const before = process.env.REGIONAL_WRITES;
    process.env.REGIONAL_WRITES = 'forward';
    try {
      expect(
        () =>
          new RegionalPostgres({
            primaryRegion: 'iad',
            region: 'syd',
            databaseUrl: 'postgres://app@127.0.0.1:1/app',
            replicaUrl: 'postgres://app@127.0.0.1:2/app',
          }),
      ).toThrow(/REGIONAL_WRITES.*regional\/pg/);
    } finally {
      if (before === undefined) delete process.env.REGIONAL_WRITES;
      else process.env.REGIONAL_WRITES = before;
    }
  });

  it('a replica URL in the primary region is a clear error naming the variable', () => {
    expect(
      () =>
        new RegionalPostgres({
          primaryRegion: 'iad',
          region: 'iad',
          databaseUrl: 'postgres://app@127.0.0.1:1/app',
          replicaUrl: 'postgres://app@127.0.0.1:2/app',
        }),
    ).toThrow(ConfigError);
  });

  it('a postgres.js whose queries work differently inside (4.x) is refused with a clear error', () => {
    // A 4.x query object: no `canceller`, a different shape inside.
    const other = (() => ({ handler() {}, strings: ['select 1'] })) as unknown as Parameters<
      typeof assertSupported
    >[0];
    expect(() => assertSupported(other)).toThrow(/supports postgres\.js 3\.4/);
  });
});
