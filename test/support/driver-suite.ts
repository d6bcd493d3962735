/**
 * One behaviour suite for every database driver Regional routes: the contract's promises about a
 * driver, asserted on a real cluster (iad primary, syd replica, 50 ms each way) through a small
 * {@link DriverSetup} that each driver's test file implements in its own API. A new driver (or an
 * ORM on one) passes the same suite by writing a setup: nothing here changes.
 *
 * @example
 * // src/<driver>/driver.test.ts
 * driverBehaviourSuite({ name: 'my driver', open: (options, connections) => ({ ... }) });
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { RegionalOptions } from '../../src/core/config.js';
import { currentContext, withContext } from '../../src/core/context.js';
import type { RegionalError } from '../../src/core/errors.js';
import { clientError } from '../../src/http/errors.js';
import { LocalCluster } from '../../src/testing/cluster.js';
import { LatencyProxy } from '../../src/testing/link/latency-proxy.js';
import { countersTable, countStaleReads } from './consistency.js';

/**
 * The database every setup's operations run against, created on the primary before the suite:
 * - `counters (id int PRIMARY KEY, value int NOT NULL)`, rows 1 to 2000 at 0;
 * - `notes (id serial PRIMARY KEY, body text NOT NULL, created_at timestamp(3) …)`;
 * - the sequence `tickets`;
 * - `bump_counter(id int) RETURNS int`: a function that writes (an `INSERT … ON CONFLICT` that
 *   adds one to the counter), so a replica refuses a `SELECT` of it with SQLSTATE 25006. Returns
 *   the new value.
 */
export const DRIVER_SUITE_SCHEMA = `${countersTable()}
  CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL, created_at timestamp(3) NOT NULL DEFAULT now());
  CREATE SEQUENCE tickets;
  CREATE FUNCTION bump_counter(counter int) RETURNS int LANGUAGE sql AS $$
    INSERT INTO counters (id, value) VALUES (counter, 1)
    ON CONFLICT (id) DO UPDATE SET value = counters.value + 1
    RETURNING value
  $$;`;

/**
 * Regional's settings for one app instance: what `new RegionalPool(…)` and
 * `new RegionalPostgres(…)` take. Pass them on as they are.
 */
export interface InstanceOptions extends RegionalOptions {
  primaryRegion: string;
  region: string;
  /** The primary as reached from the region (across the link from syd). */
  databaseUrl: string;
  /** The region's replica (`null` in the primary region). */
  replicaUrl: string | null;
  maxWaitMs?: number;
  waitPolicy?: 'primary' | 'error';
  replicaRetryMs?: number;
  onWarning: (message: string, error?: unknown) => void;
}

/** A value read in a statement that also returned `pg_is_in_recovery()` (true: on the replica). */
export interface Served<T> {
  value: T;
  inRecovery: boolean;
}

/** The driver's own counters (e.g. `pool.stats()`), since the handle was opened. */
export interface DriverStats {
  /** Reads answered by the replica / by the primary. */
  replicaReads: number;
  primaryReads: number;
  /** Writes sent to the primary. */
  writes: number;
  /** Reads the replica refused as writes (SQLSTATE 25006) and that ran again on the primary. */
  readOnlyRetries: number;
  /** Reads that gave up waiting for the replica at the bound. */
  waitTimeouts: number;
  /** Times the replica failed and reads moved to the primary for a while. */
  replicaFailures: number;
}

/**
 * The driver as one app instance holds it, and the operations the suite needs, each written in
 * the driver's own API (its query builder for an ORM, so that its own routing is what is tested).
 * Every operation is one statement, unless it says otherwise; values are plain numbers.
 */
export interface DriverHandle {
  /** `UPDATE counters SET value = value + 1 WHERE id = $1 RETURNING value`: the value written. */
  bump(id: number): Promise<number>;
  /** `SELECT value FROM counters WHERE id = $1`. */
  read(id: number): Promise<number | undefined>;
  /** `SELECT pg_is_in_recovery()` through the driver's usual read path. */
  inRecovery(): Promise<boolean>;
  /** `INSERT INTO notes (body) VALUES ($1) RETURNING pg_is_in_recovery()`. */
  writeInRecovery(body: string): Promise<boolean>;
  /** `SELECT bump_counter($1), pg_is_in_recovery()` (a read that writes), through the read path. */
  callWritingFunction(id: number): Promise<Served<number>>;
  /** `SELECT nextval('tickets'), pg_is_in_recovery()`. */
  nextval(): Promise<Served<number>>;
  /**
   * In one read-write transaction: {@link bump}(id), then `SELECT value, pg_is_in_recovery()
   * FROM counters WHERE id = $1` (which sees the bump only inside the same transaction).
   */
  readWriteTransaction(id: number): Promise<{ written: number; seen: Served<number | undefined> }>;
  /** In one read-only transaction: `SELECT value, pg_is_in_recovery() FROM counters WHERE id = $1`. */
  readOnlyTransaction(id: number): Promise<Served<number | undefined>>;
  /**
   * In one read-write transaction: {@link bump}(id), then fail: `throw` an `Error('changed my
   * mind')` from the transaction's function, or (`duplicate`) insert a `counters` row whose id
   * exists (a unique violation). Resolves or rejects as the driver does; the suite expects a
   * rejection.
   */
  failingTransaction(id: number, failure: 'throw' | 'duplicate'): Promise<unknown>;
  stats(): DriverStats;
  /**
   * {@link read}, the way the driver (or ORM) reads a replica without Regional: its plain
   * connection to the replica URL (pg: a `pg.Pool`; Drizzle: `withReplicas`; Kysely: its own
   * `PostgresDialect`), no routing, no waiting. Only called on handles in a replica region.
   */
  naiveRead(id: number): Promise<number | undefined>;
  /** Closes everything the handle opened. */
  end(): Promise<void>;
}

export interface DriverSetup {
  /** Shown in the suite's name. */
  name: string;
  /**
   * Opens the driver as an app instance would, with `options`; `connections` is how many
   * connections per server it may open (the suite runs that many sequences at once).
   */
  open(options: InstanceOptions, connections: number): DriverHandle | Promise<DriverHandle>;
}

/** 50 ms each way between iad and syd, as in the acceptance criteria. */
const RTT_MS = 100;
/** Write-then-read sequences of the consistency runs (the acceptance asks for a thousand)… */
const SEQUENCES = 1000;
/** …this many at once. */
const CONCURRENCY = 50;
/**
 * Counter rows 1 to {@link SEQUENCES} belong to the consistency runs; every other test uses a
 * row of its own above them.
 */
const ROW = {
  lsn: 1001,
  noContext: 1002,
  writingFunction: 1003,
  readWrite: 1004,
  readOnly: 1005,
  iad: 1006,
  bound: 1007,
  errorPolicy: 1008,
  stopped: 1009,
  killed: 1010,
  remembered: 1011,
  rolledBack: 1012,
  cameBack: 1013,
} as const;
/** How long a test lets a read wait on a paused replica before resuming replay. */
const PAUSE_MS = 150;

const delta = (before: DriverStats, after: DriverStats): DriverStats => ({
  replicaReads: after.replicaReads - before.replicaReads,
  primaryReads: after.primaryReads - before.primaryReads,
  writes: after.writes - before.writes,
  readOnlyRetries: after.readOnlyRetries - before.readOnlyRetries,
  waitTimeouts: after.waitTimeouts - before.waitTimeouts,
  replicaFailures: after.replicaFailures - before.replicaFailures,
});

/**
 * `promise`, or a failure naming `what` if it has not settled after `ms`: a hang is reported as
 * one, instead of as the test's time-out (or the next test's failure).
 */
function settles<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: still pending after ${ms} ms`)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

/**
 * The first error with one of Regional's codes in `error`'s cause chain: Regional's own, or an
 * ORM's that carries its code (Prisma's).
 */
function regionalErrorIn(error: unknown): { code: string; message: string } | undefined {
  for (let e = error, depth = 0; e && depth < 5; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && code.startsWith('REGIONAL_')) return e as RegionalError;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

/** The driver behaviour suite over `setup`, on a cluster of its own. */
export function driverBehaviourSuite(setup: DriverSetup): void {
  describe(`${setup.name}: the driver contract (iad primary, syd replica, 50 ms each way)`, () => {
    let cluster: LocalCluster;
    /** The instance in syd that tests which leave the replica as they found it share. */
    let shared: DriverHandle;
    /** Handles and proxies a test opened, closed after it. */
    const closers: (() => Promise<unknown>)[] = [];
    const warnings: string[] = [];

    const options = (region: 'iad' | 'syd', extra: Partial<InstanceOptions> = {}) => {
      const endpoints = cluster.endpoints(region);
      return {
        primaryRegion: 'iad',
        region,
        databaseUrl: endpoints.databaseUrl,
        replicaUrl: endpoints.replicaUrl,
        onWarning: (message: string) => warnings.push(message),
        ...extra,
      };
    };

    /** A handle of this test's own (closed after it). */
    async function open(
      region: 'iad' | 'syd',
      extra: Partial<InstanceOptions> = {},
      connections = CONCURRENCY,
    ): Promise<DriverHandle> {
      const handle = await setup.open(options(region, extra), connections);
      closers.push(() => handle.end());
      return handle;
    }

    /** syd's replica through a proxy of the test's own, which it can slow down or cut. */
    async function replicaProxy(): Promise<{ url: string; proxy: LatencyProxy }> {
      const url = new URL(cluster.endpoints('syd').replicaUrl as string);
      const proxy = new LatencyProxy({
        name: 'test->syd replica',
        targetPort: Number(url.port),
        oneWayMs: 0,
      });
      await proxy.listen();
      closers.push(() => proxy.close());
      url.port = String(proxy.port);
      return { url: url.toString(), proxy };
    }

    /**
     * Runs `test` with syd's replay paused; `resume` resumes it (and runs anyway if the test
     * fails first, so later tests find replication running).
     */
    async function withReplayPaused<T>(test: (resume: () => Promise<void>) => Promise<T>) {
      await cluster.pauseReplay('syd');
      let resumed = false;
      const resume = async () => {
        if (resumed) return;
        resumed = true;
        await cluster.resumeReplay('syd');
      };
      try {
        return await test(resume);
      } finally {
        await resume();
      }
    }

    /**
     * `read()` started while the replica is paused behind the write just made, replay resumed
     * {@link PAUSE_MS} later: it sees that write only if the write's position was recorded (or
     * it went to the primary).
     */
    async function afterResume<T>(resume: () => Promise<void>, read: () => Promise<T>) {
      const reading = read();
      reading.catch(() => {}); // awaited below
      await sleep(PAUSE_MS);
      await resume();
      return reading;
    }

    beforeAll(async () => {
      cluster = await LocalCluster.start({
        temporary: true,
        // cdg: a replica that a test pauses, to stand in for syd's come back behind.
        regions: ['iad', 'syd', 'cdg'],
        rttMs: { syd: RTT_MS },
      });
      await cluster.query('iad', DRIVER_SUITE_SCHEMA);
      await cluster.waitForReplay('syd');
      // A bound generous for a loaded machine: tests of the bound open handles of their own.
      shared = await setup.open(options('syd', { maxWaitMs: 5_000 }), CONCURRENCY);
    });

    afterEach(async () => {
      // Whatever a test did, the replica is back up and replaying for the next one…
      await cluster.server('syd').start();
      await cluster.resumeReplay('syd').catch(() => {});
      await cluster.resumeReplay('cdg').catch(() => {});
      // …and what it opened is closed, or the test fails saying what would not close.
      const stuck: string[] = [];
      for (const close of closers.splice(0).reverse()) {
        await settles(close(), 15_000, 'closing').catch((error: Error) =>
          stuck.push(error.message),
        );
      }
      await cluster.waitForReplay('syd');
      expect(stuck).toEqual([]);
    });

    afterAll(async () => {
      await shared?.end();
      await cluster?.stop();
    });

    describe('local reads; writes reach the primary', () => {
      it('reads run on the replica, writes on the primary', async () => {
        await withContext(async () => {
          expect(await shared.inRecovery()).toBe(true);
          expect(await shared.writeInRecovery('routing')).toBe(false);
        });
      });

      it("a SELECT of a function that writes (refused by the replica, 25006) and nextval() run on the primary, counted; the function's write is read back", async () => {
        await withReplayPaused(async (resume) => {
          await withContext(async () => {
            let before = shared.stats();
            const called = await shared.callWritingFunction(ROW.writingFunction);
            expect(called).toEqual({ value: 1, inRecovery: false });
            expect(delta(before, shared.stats())).toMatchObject({ readOnlyRetries: 1, writes: 1 });
            // The function wrote, so the next read waits for it like for any write.
            expect(await afterResume(resume, () => shared.read(ROW.writingFunction))).toBe(1);

            before = shared.stats();
            const first = await shared.nextval();
            const second = await shared.nextval();
            expect(first.inRecovery).toBe(false);
            expect(second).toEqual({ value: first.value + 1, inRecovery: false });
            expect(delta(before, shared.stats()).writes).toBe(2);
          });
        });
      });

      it('an instance in the primary region reads and writes on the primary, and records its commits', async () => {
        const iad = await open('iad');
        await withContext(async () => {
          expect(await iad.inRecovery()).toBe(false);
          const written = await iad.bump(ROW.iad);
          expect(await iad.read(ROW.iad)).toBe(written);
          // A later request elsewhere may need the position (tokens carry it).
          expect(currentContext().entries()).toHaveLength(1);
        });
        expect(iad.stats()).toMatchObject({ replicaReads: 0, writes: 1, waitTimeouts: 0 });
      });
    });

    describe('read your writes', () => {
      it(`a write then a read in the same context, ${SEQUENCES} times, ${CONCURRENCY} at once: zero stale, every read on the replica`, async () => {
        const before = shared.stats();
        const stale = await countStaleReads(
          SEQUENCES,
          (id) => shared.bump(id),
          (id) => shared.read(id),
          { concurrency: CONCURRENCY },
        );
        expect(stale).toBe(0);
        expect(delta(before, shared.stats())).toMatchObject({
          replicaReads: SEQUENCES,
          primaryReads: 0,
          writes: SEQUENCES,
        });
      });

      it("the same run reading the replica the driver's plain way sees stale reads (the check can fail)", async () => {
        // Paused replay, so that it fails for certain, not by the luck of the timing.
        const stale = await withReplayPaused(() =>
          countStaleReads(
            SEQUENCES,
            (id) => shared.bump(id),
            (id) => shared.naiveRead(id),
            { concurrency: CONCURRENCY },
          ),
        );
        expect(stale).toBeGreaterThan(0);
      });

      it('the position a write records is at or after its commit: the replica has it once it has replayed that position', async () => {
        await withContext(async () => {
          const written = await shared.bump(ROW.lsn);
          const entries = currentContext().entries();
          expect(entries).toHaveLength(1);
          const [[, lsn]] = entries as [[string, bigint]];
          await cluster.waitForReplay('syd', lsn);
          const { rows } = await cluster.query<{ value: number }>(
            'syd',
            'SELECT value FROM counters WHERE id = $1',
            [ROW.lsn],
          );
          expect(rows[0]?.value).toBe(written);
        });
      });

      it('outside any context, code that writes and then reads still reads its write', async () => {
        await withReplayPaused(async (resume) => {
          const written = await shared.bump(ROW.noContext);
          expect(await afterResume(resume, () => shared.read(ROW.noContext))).toBe(written);
        });
        for (let i = 0; i < 10; i++) {
          const written = await shared.bump(ROW.noContext);
          expect(await shared.read(ROW.noContext)).toBe(written);
        }
      });
    });

    describe('transactions never mix servers', () => {
      it('a read-write transaction runs all its statements on the primary and records its commit', async () => {
        await withReplayPaused(async (resume) => {
          await withContext(async () => {
            const before = shared.stats();
            const { written, seen } = await shared.readWriteTransaction(ROW.readWrite);
            // The read saw the uncommitted update: same transaction, on the primary.
            expect(seen).toEqual({ value: written, inRecovery: false });
            // Recorded: the next read waits for the paused replica rather than read it stale.
            expect(await afterResume(resume, () => shared.read(ROW.readWrite))).toBe(written);
            expect(delta(before, shared.stats())).toMatchObject({
              replicaReads: 1,
              primaryReads: 0,
            });
          });
        });
      });

      it("a read-only transaction runs on the replica, after the context's writes", async () => {
        await withContext(async () => {
          expect(await shared.readOnlyTransaction(ROW.readOnly)).toEqual({
            value: 0,
            inRecovery: true,
          });
        });
        await withReplayPaused(async (resume) => {
          await withContext(async () => {
            const written = await shared.bump(ROW.readOnly);
            expect(
              await afterResume(resume, () => shared.readOnlyTransaction(ROW.readOnly)),
            ).toEqual({ value: written, inRecovery: true });
          });
        });
      });

      it('a failing transaction (a thrown error, a failing statement) rolls back, and a one-connection handle stays usable', async () => {
        const handle = await open('syd', {}, 1);
        await withContext(async () => {
          const before = await handle.bump(ROW.rolledBack);
          await expect(handle.failingTransaction(ROW.rolledBack, 'throw')).rejects.toThrow(
            'changed my mind',
          );
          await expect(handle.failingTransaction(ROW.rolledBack, 'duplicate')).rejects.toThrow();
          // Neither bump was kept, and the one connection per server was given back clean.
          expect(await handle.read(ROW.rolledBack)).toBe(before);
          expect((await handle.readWriteTransaction(ROW.rolledBack)).written).toBe(before + 1);
          expect(await handle.read(ROW.rolledBack)).toBe(before + 1);
        });
      });
    });

    describe('bounded waiting', () => {
      it('a paused replica: a read after a write waits up to the bound, then reads the primary, counted', async () => {
        const handle = await open('syd', { maxWaitMs: 300, replicaRetryMs: 60_000 });
        await withContext(() => handle.inRecovery()); // connected and named before the pause
        await withReplayPaused(async () => {
          await withContext(async () => {
            const before = handle.stats();
            const written = await handle.bump(ROW.bound);
            expect(await handle.read(ROW.bound)).toBe(written);
            expect(delta(before, handle.stats())).toMatchObject({
              replicaReads: 0,
              primaryReads: 1,
              waitTimeouts: 1,
            });
          });
        });
      });

      it("a paused replica with waitPolicy 'error': the read fails with ReplicationTimeoutError", async () => {
        const handle = await open('syd', { maxWaitMs: 200, waitPolicy: 'error' });
        await withContext(() => handle.inRecovery());
        await withReplayPaused(async () => {
          await withContext(async () => {
            await handle.bump(ROW.errorPolicy);
            const error = await handle.read(ROW.errorPolicy).then(
              () => null,
              (e: unknown) => e,
            );
            // An ORM may wrap the driver's error: Drizzle keeps it as the cause, Prisma makes
            // its own with the same code. Either way the code says it, and the HTTP layer
            // answers it as Regional's (503, retry).
            const regional = regionalErrorIn(error);
            expect(regional?.code).toBe('REGIONAL_REPLICATION_TIMEOUT');
            expect(regional?.message).toMatch(/did not replay position .* within 200 ms/);
            expect(clientError(error)).toMatchObject({
              status: 503,
              code: 'REGIONAL_REPLICATION_TIMEOUT',
            });
          });
        });
        expect(handle.stats().waitTimeouts).toBeGreaterThanOrEqual(1);
      });
    });

    describe("degrade, don't break", () => {
      it('a stopped replica: reads are served by the primary without an error; the replica is used again once back', async () => {
        const handle = await open('syd', { replicaRetryMs: 200 });
        expect(await withContext(() => handle.inRecovery())).toBe(true);
        const before = handle.stats();
        const warned = warnings.length;
        await cluster.server('syd').stop();
        try {
          await withContext(async () => {
            const written = await handle.bump(ROW.stopped);
            expect(await handle.read(ROW.stopped)).toBe(written);
            expect(await handle.inRecovery()).toBe(false);
          });
          expect(delta(before, handle.stats())).toMatchObject({ replicaReads: 0, primaryReads: 2 });
          expect(handle.stats().replicaFailures).toBeGreaterThanOrEqual(1);
          // It says so.
          expect(warnings.slice(warned).join('\n')).toMatch(/replica/i);
        } finally {
          await cluster.server('syd').start();
        }
        await cluster.waitForReplay('syd');
        const deadline = Date.now() + 10_000;
        let onReplica = false;
        while (!onReplica && Date.now() < deadline) {
          onReplica = await withContext(() => handle.inRecovery());
          if (!onReplica) await sleep(100);
        }
        expect(onReplica).toBe(true);
      });

      it('a replica killed under a read that checks it: the read is answered by the primary, and nothing crashes', async () => {
        const uncaught: Error[] = [];
        const record = (error: Error) => uncaught.push(error);
        process.on('uncaughtExceptionMonitor', record);
        try {
          const { url, proxy } = await replicaProxy();
          const handle = await open('syd', { replicaUrl: url });
          await withContext(() => handle.inRecovery()); // a replica connection, open and idle
          await withContext(async () => {
            const written = await handle.bump(ROW.killed);
            // The read needs the write, which the replica is not known to have yet: it asks the
            // replica in its round trip. The replica dies while that round trip is on its way.
            proxy.setDelay(400);
            const read = handle.read(ROW.killed);
            read.catch(() => {}); // awaited below
            await sleep(150);
            await cluster.server('syd').kill();
            expect(await settles(read, 20_000, 'the read under the killed replica')).toBe(written);
          });
          expect(handle.stats().primaryReads).toBeGreaterThanOrEqual(1);
          // Errors of connections that broke meanwhile arrive a little later.
          await sleep(500);
          expect(uncaught).toEqual([]);
        } finally {
          process.off('uncaughtExceptionMonitor', record);
        }
      });

      it('a read served by the primary is remembered: a later read in the context, back on a replica that is behind, sees no less', async () => {
        const { url, proxy } = await replicaProxy();
        const handle = await open('syd', { replicaUrl: url, replicaRetryMs: 100, maxWaitMs: 300 });
        await withContext(() => handle.inRecovery());
        await withReplayPaused(async () => {
          // Another client's write, which the paused replica does not have.
          await cluster.query('iad', 'UPDATE counters SET value = value + 1 WHERE id = $1', [
            ROW.remembered,
          ]);
          await withContext(async () => {
            await proxy.cut('refuse');
            // The replica cannot be reached: the primary answers, with the other client's write.
            const first = await handle.read(ROW.remembered);
            expect(first).toBe(1);
            await proxy.restore();
            await sleep(400); // past the retry window: the replica is usable again, still behind
            for (let i = 0; i < 3; i++)
              expect(await handle.read(ROW.remembered)).toBeGreaterThanOrEqual(first as number);
          });
        });
      });

      it('a replica that comes back as a process that is behind is not read until it has caught up', async () => {
        const { url, proxy } = await replicaProxy();
        const handle = await open('syd', { replicaUrl: url, replicaRetryMs: 100, maxWaitMs: 300 });
        await cluster.pauseReplay('cdg');
        await withContext(async () => {
          const written = await handle.bump(ROW.cameBack);
          expect(await handle.read(ROW.cameBack)).toBe(written);
          // The replica's address now leads to another process that is behind (cdg, paused
          // before the write), as after a restore from an older backup.
          proxy.retarget(Number(new URL(cluster.serverUrl('cdg')).port));
          await sleep(500); // past the retry window: only what was remembered could send reads there
          for (let i = 0; i < 20; i++) expect(await handle.read(ROW.cameBack)).toBe(written);
        });
        // Once the new process has replayed what the primary had, reads use it again.
        await cluster.resumeReplay('cdg');
        const deadline = Date.now() + 10_000;
        let onReplica = false;
        while (!onReplica && Date.now() < deadline) {
          onReplica = await handle.inRecovery();
          if (!onReplica) await sleep(50);
        }
        expect(onReplica).toBe(true);
      });
    });
  });
}
