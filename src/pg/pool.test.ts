/**
 * What is particular to RegionalPool, on a real cluster: round trips counted on the link,
 * checked reads, named statements, checked-out clients, its options. The contract every driver
 * keeps (routing, read-your-writes, bounds, transactions, a replica that goes away) runs over
 * RegionalPool in driver.test.ts, from test/support/driver-suite.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { countersTable } from '../../test/support/consistency.js';
import { currentContext, detached, withContext } from '../core/context.js';
import { ConfigError } from '../core/errors.js';
import { formatLsn } from '../core/lsn.js';
import { ReplayTracker } from '../core/tracker.js';
import { LocalCluster } from '../testing/cluster.js';
import { LatencyProxy } from '../testing/link/latency-proxy.js';
import { freePort } from '../testing/ports.js';
import { RegionalPool, type RegionalPoolOptions } from './pool.js';
import { replayLsnPoller } from './replay-poller.js';

// 50 ms each way between iad and syd, as in the acceptance criteria.
const RTT_MS = 100;

let cluster: LocalCluster;
const pools: RegionalPool[] = [];
const warnings: string[] = [];

function sydPool(options: Partial<RegionalPoolOptions> = {}): RegionalPool {
  const syd = cluster.endpoints('syd');
  const pool = new RegionalPool({
    primaryRegion: 'iad',
    region: 'syd',
    databaseUrl: syd.databaseUrl,
    replicaUrl: syd.replicaUrl,
    onWarning: (message) => warnings.push(message),
    ...options,
  });
  pools.push(pool);
  return pool;
}

function iadPool(): RegionalPool {
  const pool = new RegionalPool({
    primaryRegion: 'iad',
    region: 'iad',
    databaseUrl: cluster.endpoints('iad').databaseUrl,
    onWarning: (message) => warnings.push(message),
  });
  pools.push(pool);
  return pool;
}

beforeAll(async () => {
  cluster = await LocalCluster.start({
    temporary: true,
    regions: ['iad', 'syd'],
    rttMs: { syd: RTT_MS },
  });
  await cluster.query(
    'iad',
    `${countersTable()}
     CREATE TABLE notes (id serial PRIMARY KEY, body text UNIQUE);
     CREATE SEQUENCE tickets;
     CREATE FUNCTION add_note(b text) RETURNS int LANGUAGE sql AS $$ INSERT INTO notes (body) VALUES (b) RETURNING id $$;`,
  );
  await cluster.waitForReplay('syd');
});

afterAll(async () => {
  await Promise.all(pools.map((pool) => pool.end()));
  await cluster?.stop();
});

/** `promise`, or a clear failure if it has not settled after `ms` (a deadlock, not a slow run). */
function settlesWithin<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: still waiting after ${ms} ms`)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

const inRecovery = async (pool: RegionalPool) =>
  (await pool.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r')).rows[0]?.r;

/**
 * Runs `test` with syd's replay paused; `resume` resumes it (and runs anyway if the test fails
 * first, so later tests find replication running).
 */
async function withReplayPaused(test: (resume: () => Promise<void>) => Promise<void>) {
  await cluster.pauseReplay('syd');
  let resumed = false;
  const resume = async () => {
    if (resumed) return;
    resumed = true;
    await cluster.resumeReplay('syd');
  };
  try {
    await test(resume);
  } finally {
    await resume();
  }
}

const bump = (pool: RegionalPool) => async (id: number) =>
  (
    await pool.query<{ value: number }>(
      'UPDATE counters SET value = value + 1 WHERE id = $1 RETURNING value',
      [id],
    )
  ).rows[0]?.value as number;

describe('RegionalPool in a replica region (50 ms one way)', () => {
  it('captures the commit LSN in the same round trip as the write', async () => {
    const pool = sydPool();
    await pool.query('SELECT 1', [], { on: 'primary' }); // open a connection to the primary first
    const link = cluster.link('syd', 'iad');
    link.resetStats();
    await withContext(async () => {
      await pool.query('INSERT INTO notes (body) VALUES ($1)', ['one trip']);
      expect(currentContext().entries()).toHaveLength(1);
    });
    expect(link.stats('postgres').roundTrips).toBe(1);

    link.resetStats();
    await pool.transaction(async (tx) => {
      await tx.query('INSERT INTO notes (body) VALUES ($1)', ['tx one']);
      await tx.query('INSERT INTO notes (body) VALUES ($1)', ['tx two']);
    });
    // BEGIN, two statements, and COMMIT with its LSN: nothing more.
    expect(link.stats('postgres').roundTrips).toBe(4);
  });

  it("a read forced onto the replica ({ on: 'replica' }) that writes is retried on the primary, counted", async () => {
    // (Reads that turn out to write, through every driver: test/support/driver-suite.ts.)
    const pool = sydPool();
    const forced = await pool.query<{ n: string; r: boolean }>(
      "SELECT nextval('tickets') AS n, pg_is_in_recovery() AS r",
      [],
      { on: 'replica' },
    );
    expect(Number(forced.rows[0]?.n)).toBeGreaterThan(0);
    expect(forced.rows[0]?.r).toBe(false);
    expect(pool.stats().readOnlyRetries).toBe(1);
  });

  it('a quoted or commented advisory lock call is taken on the primary, not on the replica', async () => {
    // One connection per server, so the session lock can be released on the one holding it.
    const pool = sydPool({ pool: { max: 1 } });
    const heldOn = async (region: 'iad' | 'syd') =>
      (
        await cluster.query<{ n: number }>(
          region,
          "SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242",
        )
      ).rows[0]?.n;
    for (const sql of [
      'SELECT "pg_advisory_lock"(4242)',
      'SELECT pg_catalog."pg_advisory_lock"(4242)',
      'SELECT pg_advisory_lock /* why */ (4242)',
      'SELECT pg_advisory_lock -- c\n(4242)',
    ]) {
      await pool.query(sql);
      expect({ sql, primary: await heldOn('iad'), replica: await heldOn('syd') }).toEqual({
        sql,
        primary: 1,
        replica: 0,
      });
      const { rows } = await pool.query<{ released: boolean }>(
        'SELECT "pg_advisory_unlock" /* same session */ (4242) AS released',
      );
      expect(rows[0]?.released).toBe(true);
      expect(await heldOn('iad')).toBe(0);
    }
  });

  it('{ await: false } records nothing, so the next read does not wait', async () => {
    const pool = sydPool();
    await withContext(async () => {
      await pool.query('UPDATE counters SET value = value + 1 WHERE id = 1', [], { await: false });
      expect(currentContext().entries()).toEqual([]);
      await pool.query('SELECT 1');
    });
    expect(pool.stats().tracker?.waits ?? 0).toBe(0);
  });

  it('fire-and-forget writes ({ await: false }, detached code) pass a read request guard and record nothing', async () => {
    const pool = sydPool();
    await withContext(async () => {
      // What the HTTP layer installs in read requests of replica regions.
      currentContext().beforeWrite = () => {
        throw new Error('this read request would be replayed');
      };
      await expect(
        pool.query('UPDATE counters SET value = value + 1 WHERE id = 1998'),
      ).rejects.toThrow(/replayed/);
      await pool.query('UPDATE counters SET value = value + 1 WHERE id = 1998', [], {
        await: false,
      });
      await detached(() => pool.query('UPDATE counters SET value = value + 1 WHERE id = 1998'));
      await detached(() =>
        pool.transaction(async (tx) =>
          tx.query('UPDATE counters SET value = value + 1 WHERE id = 1998'),
        ),
      );
      expect(currentContext().entries()).toEqual([]);
    });
    const { rows } = await cluster.query<{ value: number }>(
      'iad',
      'SELECT value FROM counters WHERE id = 1998',
    );
    expect(rows[0]?.value).toBe(3);
  });

  it('a read-only repeatable-read transaction (it cannot check its BEGIN) runs on the replica, after waiting for this context', async () => {
    const pool = sydPool();
    await withContext(async () => {
      const written = await bump(pool)(3);
      const seen = await pool.transaction(
        async (tx) => {
          expect(tx.on).toBe('replica');
          expect(
            (await tx.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r')).rows[0]?.r,
          ).toBe(true);
          return (await tx.query<{ value: number }>('SELECT value FROM counters WHERE id = 3'))
            .rows[0]?.value;
        },
        { readOnly: true, isolationLevel: 'repeatable read' },
      );
      expect(seen).toBe(written);
    });
  });

  it('a failed transaction rolls back and leaves the pool usable', async () => {
    const pool = sydPool({ pool: { max: 1 } });
    await pool.query('INSERT INTO notes (body) VALUES ($1)', ['taken']);
    await expect(
      pool.transaction(async (tx) => {
        expect(tx.on).toBe('primary');
        await tx.query('INSERT INTO notes (body) VALUES ($1)', ['rolled back']);
        throw new Error('changed my mind');
      }),
    ).rejects.toThrow('changed my mind');
    await expect(
      pool.query('INSERT INTO notes (body) VALUES ($1)', ['taken']),
    ).rejects.toMatchObject({ code: '23505' });
    await pool.query('INSERT INTO notes (body) VALUES ($1)', ['after failures']);
    const { rows } = await pool.query('SELECT body FROM notes WHERE body IN ($1, $2)', [
      'rolled back',
      'after failures',
    ]);
    expect(rows).toEqual([{ body: 'after failures' }]);
  });

  it('a checked-out client keeps a transaction on one server and records its COMMIT', async () => {
    const pool = sydPool();
    await withContext(async () => {
      const client = await pool.connect();
      try {
        const before = await client.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r');
        expect(before.rows[0]?.r).toBe(true);
        expect(client.server).toBe('replica');
        await client.query('BEGIN');
        const pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]
          ?.pid;
        await client.query('UPDATE counters SET value = 100 WHERE id = 4');
        expect(
          (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid,
        ).toBe(pid);
        expect(client.server).toBe('primary');
        await client.query('COMMIT');
        expect(currentContext().entries()).toHaveLength(1);
        const after = await client.query<{ value: number; r: boolean }>(
          'SELECT value, pg_is_in_recovery() AS r FROM counters WHERE id = 4',
        );
        expect(after.rows[0]).toEqual({ value: 100, r: true });
      } finally {
        client.release();
      }
    });
  });

  it('a multi-statement write and a statement that cannot run in a transaction block both work', async () => {
    const pool = sydPool();
    await withContext(async () => {
      await pool.query(
        "INSERT INTO notes (body) VALUES ('multi 1'); INSERT INTO notes (body) VALUES ('multi 2')",
      );
      const { rows } = await pool.query(
        "SELECT count(*)::int AS n FROM notes WHERE body LIKE 'multi %'",
      );
      expect(rows[0]?.n).toBe(2);
    });
    await pool.query('VACUUM notes');
  });

  it('a read that needs a write the replica is not known to have asks for its position in the same round trip: no poll', async () => {
    const pool = sydPool();
    await withContext(async () => {
      await pool.query('INSERT INTO notes (body) VALUES ($1)', ['checked']);
      await cluster.waitForReplay('syd');
      const polls = pool.stats().tracker?.polls;
      const { rows } = await pool.query('SELECT body FROM notes WHERE body = $1', ['checked']);
      expect(rows).toEqual([{ body: 'checked' }]);
      expect(pool.stats()).toMatchObject({
        checkedReads: 1,
        checkedReadsBehind: 0,
        replicaReads: 1,
      });
      expect(pool.stats().tracker?.polls).toBe(polls);
      // The position it saw is known now: the next read neither checks nor polls.
      await pool.query('SELECT 1');
      expect(pool.stats()).toMatchObject({ checkedReads: 1, replicaReads: 2, primaryReads: 0 });
      expect(pool.stats().tracker?.polls).toBe(polls);
    });
  });

  it('a checked read runs in read committed whatever the default, and a failing one leaves its connection clean', async () => {
    // Under repeatable read the read would share the probe's snapshot, taken before the
    // position the probe reports.
    const pool = sydPool({
      replicaPool: { max: 1, options: '-c default_transaction_isolation=repeatable\\ read' },
    });
    const { rows: defaults } = await pool.query('SHOW default_transaction_isolation');
    expect(defaults).toEqual([{ default_transaction_isolation: 'repeatable read' }]);
    await withContext(async () => {
      await pool.query('INSERT INTO notes (body) VALUES ($1)', ['isolation']);
      await cluster.waitForReplay('syd');
      const { rows } = await pool.query("SELECT current_setting('transaction_isolation') AS i");
      expect(rows).toEqual([{ i: 'read committed' }]);
      expect(pool.stats().checkedReads).toBe(1);
      await pool.query('INSERT INTO notes (body) VALUES ($1)', ['isolation 2']);
      await expect(pool.query('SELECT 1 / 0 AS n')).rejects.toMatchObject({ code: '22012' });
      // Its only connection was rolled back: the next read on it runs as usual.
      expect((await pool.query('SELECT 2 AS n')).rows).toEqual([{ n: 2 }]);
    });
  });

  it('named (prepared) statements: a read is checked in its own round trip, each is parsed once per connection', async () => {
    // One connection each, so both uses of a name land on the connection it was prepared on.
    const pool = sydPool({ primaryPool: { max: 1 }, replicaPool: { max: 1 } });
    const add = { name: 'note_add', text: 'INSERT INTO notes (body) VALUES ($1)' };
    const byBody = {
      name: 'note_by_body',
      text: 'SELECT body, pg_is_in_recovery() AS r FROM notes WHERE body = $1',
    };
    await withContext(async () => {
      for (const body of ['named 1', 'named 2']) {
        await pool.query({ ...add, values: [body] });
        await cluster.waitForReplay('syd');
        const polls = pool.stats().tracker?.polls;
        expect((await pool.query({ ...byBody, values: [body] })).rows).toEqual([{ body, r: true }]);
        expect(pool.stats().tracker?.polls).toBe(polls);
      }
    });
    expect(pool.stats()).toMatchObject({ checkedReads: 2, checkedReadsBehind: 0, writes: 2 });
    // Prepared on the server under its name, and both runs used that one statement (parsing
    // it again would have failed: the name exists).
    const uses =
      "SELECT name, generic_plans + custom_plans AS runs FROM pg_prepared_statements WHERE name LIKE 'note_%'";
    expect((await pool.query(uses)).rows).toEqual([{ name: 'note_by_body', runs: '2' }]);
    expect((await pool.query(uses, [], { on: 'primary' })).rows).toEqual([
      { name: 'note_add', runs: '2' },
    ]);
  });

  it('a named statement that fails to parse is not taken as prepared; one that fails to run stays prepared', async () => {
    const pool = sydPool({ replicaPool: { max: 1 } });
    // Each read below needs a fresh write, which the replica has (so the check passes) but the
    // pool does not know it has: every read is a checked one.
    const written = async (body: string) => {
      await pool.query('INSERT INTO notes (body) VALUES ($1)', [body]);
      await cluster.waitForReplay('syd');
    };
    await withContext(async () => {
      await written('named failures 1');
      await expect(
        pool.query({ name: 'broken', text: 'SELECT body FROM notes WHERE' }),
      ).rejects.toMatchObject({
        code: '42601',
      });
      // The failed Parse left nothing under the name: a good statement can take it.
      const divide = { name: 'broken', text: 'SELECT 10 / $1::int AS n' };
      await written('named failures 2');
      await expect(pool.query({ ...divide, values: [0] })).rejects.toMatchObject({
        code: '22012',
      });
      // It failed when run, inside the checked read's rolled-back transaction: still prepared.
      await written('named failures 3');
      expect((await pool.query({ ...divide, values: [5] })).rows).toEqual([{ n: 2 }]);
      // Reusing a name for different text is refused before anything is sent, as
      // node-postgres refuses it, and the connection goes on as usual.
      await written('named failures 4');
      await expect(pool.query({ name: 'broken', text: 'SELECT 2' })).rejects.toThrow(
        "Prepared statements must be unique - 'broken' was used for a different statement",
      );
      expect((await pool.query('SELECT 3 AS n')).rows).toEqual([{ n: 3 }]);
    });
    // Checked: the two that failed in the server (their errors stand: the replica had the
    // write) and the two that ran; not the one refused before it was sent.
    expect(pool.stats()).toMatchObject({ checkedReads: 4, checkedReadsBehind: 0 });
    const { rows } = await pool.query(
      "SELECT statement FROM pg_prepared_statements WHERE name = 'broken'",
    );
    expect(rows).toEqual([{ statement: 'SELECT 10 / $1::int AS n' }]);
  });

  it('a checked read that finds the replica behind waits for it and reads again: never stale', async () => {
    const pool = sydPool();
    await withReplayPaused(async (resume) => {
      await withContext(async () => {
        await pool.query('INSERT INTO notes (body) VALUES ($1)', ['behind']);
        const read = pool.query(
          'SELECT body, pg_is_in_recovery() AS r FROM notes WHERE body = $1',
          ['behind'],
        );
        await new Promise((resolve) => setTimeout(resolve, 150));
        await resume();
        expect((await read).rows).toEqual([{ body: 'behind', r: true }]);
      });
      expect(pool.stats()).toMatchObject({
        checkedReads: 0,
        checkedReadsBehind: 1,
        replicaReads: 1,
        primaryReads: 0,
      });
      expect(pool.stats().tracker?.resolved).toBe(1);
    });
  });

  it('a read-only transaction that needs a write asks for the position with its BEGIN: no poll', async () => {
    const pool = sydPool();
    await withContext(async () => {
      const written = await bump(pool)(5);
      await cluster.waitForReplay('syd');
      const polls = pool.stats().tracker?.polls;
      const seen = await pool.transaction(
        async (tx) => {
          expect(tx.on).toBe('replica');
          const { rows } = await tx.query<{ value: number; i: string }>(
            "SELECT value, current_setting('transaction_isolation') AS i FROM counters WHERE id = 5",
          );
          return rows[0];
        },
        { readOnly: true },
      );
      expect(seen).toEqual({ value: written, i: 'read committed' });
      expect(pool.stats()).toMatchObject({ checkedReads: 1, checkedReadsBehind: 0 });
      expect(pool.stats().tracker?.polls).toBe(polls);
    });
  });

  it('a checked-out client checks a read and a BEGIN READ ONLY in their own round trip', async () => {
    const pool = sydPool();
    await withContext(async () => {
      const written = await bump(pool)(6);
      await cluster.waitForReplay('syd');
      const polls = pool.stats().tracker?.polls;
      const client = await pool.connect();
      try {
        const read = await client.query<{ value: number }>(
          'SELECT value FROM counters WHERE id = 6',
        );
        expect(read.rows).toEqual([{ value: written }]);
        expect(client.server).toBe('replica');
        const again = await bump(pool)(6);
        await cluster.waitForReplay('syd');
        expect((await client.query('BEGIN READ ONLY')).command).toBe('BEGIN');
        const inside = await client.query<{ value: number }>(
          'SELECT value FROM counters WHERE id = 6',
        );
        await client.query('COMMIT');
        expect(inside.rows).toEqual([{ value: again }]);
        expect(pool.stats()).toMatchObject({ checkedReads: 2, checkedReadsBehind: 0 });
        expect(pool.stats().tracker?.polls).toBe(polls);
        // A BEGIN that fails leaves no transaction open behind it.
        await bump(pool)(6);
        await expect(
          client.query('BEGIN READ ONLY ISOLATION LEVEL sideways'),
        ).rejects.toMatchObject({ code: '42601' });
        expect((await client.query('SELECT 1 AS n')).rows).toEqual([{ n: 1 }]);
      } finally {
        client.release();
      }
    });
  });

  it('a table this context just created, on a replica that has not replayed it: the read waits and reads it, through the pool and a checked-out client', async () => {
    const pool = sydPool();
    await withReplayPaused(async (resume) => {
      await withContext(async () => {
        await pool.query('CREATE TABLE created_here (id int)');
        await pool.query('INSERT INTO created_here VALUES (1)');
        // The checked read runs on the paused replica, which has no such table yet: its
        // error comes from before this context's write, like a stale row would.
        const read = pool.query<{ id: number; r: boolean }>(
          'SELECT id, pg_is_in_recovery() AS r FROM created_here',
        );
        const client = await pool.connect();
        const viaClient = client
          .query<{ id: number }>('SELECT id FROM created_here')
          .finally(() => client.release());
        const outcomes = Promise.allSettled([read, viaClient]);
        await new Promise((resolve) => setTimeout(resolve, 150));
        await resume();
        const [pooled, checkedOut] = await outcomes;
        expect(pooled).toMatchObject({
          status: 'fulfilled',
          value: { rows: [{ id: 1, r: true }] },
        });
        expect(checkedOut).toMatchObject({ status: 'fulfilled', value: { rows: [{ id: 1 }] } });
      });
      expect(pool.stats()).toMatchObject({ checkedReadsBehind: 2, primaryReads: 0 });
    });
  });

  it('an SQL error on a replica that has what the context needs is the answer: thrown, not waited on', async () => {
    const pool = sydPool();
    await withContext(async () => {
      await pool.query('INSERT INTO notes (body) VALUES ($1)', ['then a bad read']);
      const error = await pool.query('SELECT no_such_column FROM notes').then(
        () => null,
        (e: unknown) => e,
      );
      expect(error).toMatchObject({ code: '42703' });
    });
  });

  it('a checked BEGIN that finds the replica behind rolls back, waits, and begins again: never stale', async () => {
    const pool = sydPool();
    await withReplayPaused(async (resume) => {
      await withContext(async () => {
        const written = await bump(pool)(7);
        const seen = pool.transaction(
          async (tx) =>
            (await tx.query<{ value: number }>('SELECT value FROM counters WHERE id = 7')).rows[0]
              ?.value,
          { readOnly: true },
        );
        const client = await pool.connect();
        const viaClient = (async () => {
          try {
            await client.query('BEGIN READ ONLY');
            const { rows } = await client.query<{ value: number }>(
              'SELECT value FROM counters WHERE id = 7',
            );
            await client.query('COMMIT');
            return rows[0]?.value;
          } finally {
            client.release();
          }
        })();
        await new Promise((resolve) => setTimeout(resolve, 150));
        await resume();
        expect(await seen).toBe(written);
        expect(await viaClient).toBe(written);
      });
      expect(pool.stats()).toMatchObject({
        checkedReads: 0,
        checkedReadsBehind: 2,
        primaryReads: 0,
      });
    });
  });

  it('under a repeatable-read default a read-only transaction cannot check its BEGIN: it waits first, and is never stale', async () => {
    const pool = sydPool({
      replicaPool: { max: 1, options: '-c default_transaction_isolation=repeatable\\ read' },
    });
    await withReplayPaused(async (resume) => {
      await withContext(async () => {
        const written = await bump(pool)(8);
        const seen = pool.transaction(
          async (tx) =>
            (
              await tx.query<{ value: number; i: string }>(
                "SELECT value, current_setting('transaction_isolation') AS i FROM counters WHERE id = 8",
              )
            ).rows[0],
          { readOnly: true },
        );
        await new Promise((resolve) => setTimeout(resolve, 150));
        await resume();
        expect(await seen).toEqual({ value: written, i: 'repeatable read' });
      });
      // The probe could not say, so nothing counted as checked; the tracker's poll waited.
      expect(pool.stats()).toMatchObject({
        checkedReads: 0,
        checkedReadsBehind: 0,
        primaryReads: 0,
      });
      expect(pool.stats().tracker?.resolved).toBe(1);
    });
  });

  it('a replica that missed the bound is not waited on again: the next read goes to the primary at once', async () => {
    // (Waiting up to the bound, through every driver: test/support/driver-suite.ts.)
    const pool = sydPool({ maxWaitMs: 300, replicaRetryMs: 60_000 });
    await withReplayPaused(async () => {
      await withContext(async () => {
        const written = await bump(pool)(5);
        const { rows } = await pool.query<{ value: number; r: boolean }>(
          'SELECT value, pg_is_in_recovery() AS r FROM counters WHERE id = 5',
        );
        expect(rows[0]).toEqual({ value: written, r: false });
        await pool.query('SELECT 1');
      });
    });
    // Two reads past the bound, one wait: the tracker timed out once.
    expect(pool.stats()).toMatchObject({ waitTimeouts: 2, primaryReads: 2 });
    expect(pool.stats().tracker?.timeouts).toBe(1);
  });

  it('ten thousand concurrent waiters cost the replica one query per poll (counted at the wire)', async () => {
    // Count what reaches the replica: its tracker connection goes through a counting proxy.
    const proxy = new LatencyProxy({
      name: 'count',
      targetPort: Number(new URL(cluster.serverUrl('syd')).port),
      oneWayMs: 0,
    });
    await proxy.listen();
    const url = new URL(cluster.serverUrl('syd'));
    url.port = String(proxy.port);
    const poller = replayLsnPoller({ connectionString: url.toString() });
    const tracker = new ReplayTracker({ name: 'counted', poll: poller, format: formatLsn });
    try {
      await tracker.waitFor(0n, 5000); // connect
      proxy.resetStats();
      const before = tracker.stats().polls;
      await cluster.pauseReplay('syd');
      await cluster.query('iad', "INSERT INTO notes (body) VALUES ('many waiters')");
      const target = await cluster.primaryLsn();
      const waits = Array.from({ length: 10_000 }, () => tracker.waitFor(target, 10_000));
      await new Promise((resolve) => setTimeout(resolve, 100));
      await cluster.resumeReplay('syd');
      await Promise.all(waits);
      const polls = tracker.stats().polls - before;
      expect(polls).toBeGreaterThan(0);
      expect(proxy.stats().roundTrips).toBe(polls);
      expect(tracker.stats().maxWaiting).toBe(10_000);
    } finally {
      await cluster.resumeReplay('syd').catch(() => {});
      await poller.close();
      await proxy.close();
    }
  });
});

describe('RegionalPool configuration', () => {
  it('in the primary region it keeps no replay tracker: nothing ever waits', async () => {
    // (Routing and recording in the primary region, through every driver: test/support/driver-suite.ts.)
    expect(iadPool().tracker).toBeNull();
  });

  // Found by the demo with ten readers per region: a dozen sign-ins reached a new instance in
  // iad at once (pool.max is 10), every connection held a committed transaction waiting to
  // learn the database's name, and that query waited for a free connection of the same pool.
  it.each([
    ['iad', 'transactions'],
    ['iad', 'checked-out clients'],
    ['syd', 'transactions'],
    ['syd', 'checked-out clients'],
  ] as const)(
    'in %s, %s holding every connection of a new pool record their commits: no deadlock',
    async (region, kind) => {
      const endpoints = cluster.endpoints(region);
      // `pool` sizes both pools (in syd the name used to be read through the replica's).
      const pool = new RegionalPool({
        primaryRegion: 'iad',
        region,
        databaseUrl: endpoints.databaseUrl,
        replicaUrl: endpoints.replicaUrl ?? undefined,
        pool: { max: 2 },
        onWarning: (message) => warnings.push(message),
      });
      pools.push(pool);
      const write = (id: number) =>
        withContext(async () => {
          if (kind === 'transactions') {
            await pool.transaction((tx) =>
              tx.query('UPDATE counters SET value = value + 1 WHERE id = $1', [id]),
            );
          } else {
            const client = await pool.connect();
            try {
              await client.query('UPDATE counters SET value = value + 1 WHERE id = $1', [id]);
            } finally {
              client.release();
            }
          }
          return currentContext().entries();
        });
      const settled = await settlesWithin(
        Promise.all([write(10), write(11), write(12)]),
        15_000,
        'three writes on a pool of two connections',
      );
      for (const entries of settled) {
        expect(entries).toHaveLength(1);
        expect(entries[0]?.[0]).toMatch(/^pg:\d+$/);
      }
    },
  );

  it('names the database from the primary when the replica cannot be reached, and says so', async () => {
    const expected = await iadPool().sourceKey();
    const unreachable = new URL(cluster.endpoints('syd').replicaUrl as string);
    unreachable.port = String(await freePort());
    const pool = sydPool({ replicaUrl: unreachable.toString() });
    const before = warnings.length;
    expect(await pool.sourceKey()).toBe(expected);
    expect(warnings.slice(before)).toEqual([
      expect.stringMatching(
        /^Could not read the cluster's system identifier from the replica in syd \(.*ECONNREFUSED.*\); asking the primary\.$/,
      ),
    ]);
  });

  it('without PRIMARY_REGION it is a plain pool on DATABASE_URL', async () => {
    const pool = new RegionalPool({ databaseUrl: cluster.endpoints('iad').databaseUrl });
    pools.push(pool);
    expect(pool.config.mode).toBe('single');
    await withContext(async () => {
      await pool.query('UPDATE counters SET value = value + 1 WHERE id = 9');
      expect(currentContext().entries()).toEqual([]);
    });
    expect(await inRecovery(pool)).toBe(false);
  });

  it('refuses transaction control on the pool itself', async () => {
    await expect(sydPool().query('BEGIN')).rejects.toThrow(/Use pool.transaction/);
  });

  it('misconfiguration is a clear error naming the variable', () => {
    expect(
      () =>
        new RegionalPool({
          primaryRegion: 'iad',
          region: 'IAD',
          databaseUrl: cluster.endpoints('iad').databaseUrl,
        }),
    ).toThrow(ConfigError);
    expect(() => new RegionalPool({ databaseUrl: 'postgres//nope' })).toThrow(
      /databaseUrl: .*not a URL/,
    );
  });
});
