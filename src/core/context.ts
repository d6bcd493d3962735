import { AsyncLocalStorage } from 'node:async_hooks';
import { underRequestSpan } from './telemetry.js';

/**
 * What one request, job or function has written or seen: per data source (a Postgres cluster,
 * a Redis history), the highest position — commit LSN, replication offset — it caused or
 * observed. Reads in the context wait until the local replica has reached it.
 *
 * Sources are named by their identity (for Postgres, `pg:` and the cluster's system
 * identifier), so positions from another cluster are never compared with this one's.
 */
export class ConsistencyContext {
  private readonly positions = new Map<string, bigint>();
  /** Milliseconds spent in this context waiting for replicas (for `Server-Timing`). */
  waitedMs = 0;
  /** True once a position advanced in this context (a write, or a token that moved it). */
  advanced = false;
  /**
   * Called before a write is sent to the primary; `remote` when the write runs in the primary
   * region by itself (a procedure). The HTTP layer sets it to replay a read request that turns
   * out to write — or, for a remote write, only to refuse it once the response has started
   * (its token could no longer reach the client); throwing here stops the write.
   */
  beforeWrite: ((remote: boolean) => void) | undefined;
  /**
   * Called when a read in this context gives up on the local replica (it stayed behind past
   * the bound, or could not be asked), just before the read goes to the primary instead. The
   * HTTP layer sets it to replay the whole request in the primary region; throwing here stops
   * the read.
   */
  onLag: (() => void) | undefined;
  /**
   * The longest a read in this context waits for a replica, in place of the source's own bound:
   * the HTTP layer sets its `maxWaitMs`, so a request's token gets the wait the HTTP settings
   * promise whether it is waited on before the handler or by the handler's first read.
   */
  maxWaitMs: number | undefined;
  /**
   * Reads served by the primary record the primary's position here even where no replica
   * reads follow in this process: the HTTP layer sets it for a request replayed from a replica
   * region, whose client reads that region's replica next and must see no less.
   */
  recordsReads = false;
  /**
   * Writes made in a detached context (see {@link detached}) are fire-and-forget: their
   * positions are not recorded and they never make a read request replay.
   */
  readonly detached: boolean;

  constructor(
    positions?: Iterable<readonly [string, bigint]>,
    options: { detached?: boolean } = {},
  ) {
    if (positions) for (const [source, position] of positions) this.positions.set(source, position);
    this.detached = options.detached ?? false;
  }

  /**
   * Called by every part just before it sends a write to the primary. A write whose position
   * will be recorded (`awaitReplication`, outside a detached context) first passes
   * `beforeWrite` (which may stop it); a fire-and-forget one does not. `remote`: the write
   * travels to the primary region and runs there (a procedure), so replaying the request for
   * it gains nothing. Returns whether to record the write's position.
   */
  startWrite(awaitReplication = true, options?: { remote?: boolean }): boolean {
    if (this.detached || !awaitReplication) return false;
    this.beforeWrite?.(options?.remote === true);
    return true;
  }

  /** True if no position is recorded: no read in this context needs to wait for anything. */
  get empty(): boolean {
    return this.positions.size === 0;
  }

  /** The position recorded for `source`, if any. */
  position(source: string): bigint | undefined {
    return this.positions.get(source);
  }

  /** Records `position` for `source` if it is later than what is recorded; true if it was. */
  observe(source: string, position: bigint): boolean {
    const current = this.positions.get(source);
    if (current !== undefined && current >= position) return false;
    this.positions.set(source, position);
    this.advanced = true;
    return true;
  }

  /** Every recorded position, e.g. to put in a token. */
  entries(): [string, bigint][] {
    return [...this.positions];
  }
}

interface ContextGlobals {
  storage: AsyncLocalStorage<ConsistencyContext>;
  process: ConsistencyContext;
}

// One store per process even if this module is loaded twice (e.g. from source and from dist):
// every part of Regional must see the same context.
const GLOBAL_KEY = Symbol.for('regional.context');
const registry = globalThis as Record<symbol, ContextGlobals | undefined>;
registry[GLOBAL_KEY] ??= {
  storage: new AsyncLocalStorage<ConsistencyContext>(),
  process: new ConsistencyContext(),
};
const globals = registry[GLOBAL_KEY];

/**
 * The context of the running request or job; outside any, the process-wide context, so that
 * code that writes and then reads (a timer, a job runner) still reads its own writes.
 */
export function currentContext(): ConsistencyContext {
  return globals.storage.getStore() ?? globals.process;
}

/** The context of the running request or job, or `undefined` outside any. */
export function activeContext(): ConsistencyContext | undefined {
  return globals.storage.getStore();
}

export interface RunOptions {
  /**
   * Start from the positions of the context this is called in (default `true`), so that a job
   * started by a request reads that request's writes. Its own writes stay its own.
   */
  inherit?: boolean;
  /** Start from these positions too (e.g. from a client's token). */
  positions?: Iterable<readonly [string, bigint]>;
}

/**
 * Runs `fn` in a new consistency context: a request, a job, or any unit of work whose reads
 * must see its own writes. Resolves with what `fn` returns.
 *
 * @example
 * await withContext(async () => {
 *   await pool.query('INSERT INTO posts (body) VALUES ($1)', [body]);
 *   await pool.query('SELECT * FROM posts'); // waits until the local replica has the insert
 * });
 */
export function withContext<T>(fn: () => T, options: RunOptions = {}): T {
  const context = new ConsistencyContext(
    options.inherit === false ? undefined : activeContext()?.entries(),
  );
  if (options.positions) {
    for (const [source, position] of options.positions) context.observe(source, position);
    context.advanced = false;
  }
  return globals.storage.run(context, fn);
}

/**
 * Runs `fn` detached: its writes are fire-and-forget — sent to the primary, not recorded, and
 * allowed in read requests of replica regions without replaying them — like `{ await: false }`
 * on a single query, but for any code (an ORM call, a helper). Its reads still wait for the
 * positions of the context it was called in. For request counters, "last seen" times, logs.
 *
 * @example
 * void detached(() => db.update(users).set({ lastSeenAt: new Date() }).where(eq(users.id, id)))
 *   .catch((error) => console.warn('last seen not recorded', error));
 */
export function detached<T>(fn: () => T): T {
  const context = new ConsistencyContext(activeContext()?.entries() ?? globals.process.entries(), {
    detached: true,
  });
  return globals.storage.run(context, fn);
}

/** Runs `fn` in the given context (e.g. one the HTTP layer built from a token). */
export function runInContext<T>(context: ConsistencyContext, fn: () => T): T {
  return underRequestSpan(context, () => globals.storage.run(context, fn));
}
