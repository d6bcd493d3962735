/**
 * OpenTelemetry for Regional: spans and metrics through `@opentelemetry/api`, an optional peer.
 * Without it installed nothing here does anything; with it installed but no SDK registered, a
 * query pays for one non-recording span and nothing else. Every name is listed once, in
 * {@link TELEMETRY}, and documented in docs/observability.md.
 *
 * Routed queries are counted in plain arrays and reported by observable counters when the SDK
 * collects, so the read path never calls the metrics API.
 */
import type * as Api from '@opentelemetry/api';

/** Why a statement went where it went: a closed set, the `regional.reason` attribute. */
export type RouteReason =
  /** A read, where reads go: the local replica (or the primary where there is none). */
  | 'read'
  /** A write, on the primary. */
  | 'write'
  /** A read the replica refused as a write (SQLSTATE 25006), retried on the primary. */
  | 'read_only_retry'
  /** The replica had not caught up within the bound (`maxWaitMs`): the primary read instead. */
  | 'lag'
  /** The replica is down or restarting: the primary read instead. */
  | 'replica_down'
  /** A read that locks rows or takes an advisory lock: the primary. */
  | 'lock'
  /** A read-write transaction, on the primary. */
  | 'transaction'
  /** The caller chose the server (`{ on: 'primary' }`, a pinned client). */
  | 'forced';

/** Where a statement ran: the `regional.route` attribute. */
export type RouteTaken = 'primary' | 'replica';

/** Every {@link RouteReason}, in the order the counters keep them. */
export const ROUTE_REASONS: readonly RouteReason[] = [
  'read',
  'write',
  'read_only_retry',
  'lag',
  'replica_down',
  'lock',
  'transaction',
  'forced',
];
const REASON_INDEX = new Map(ROUTE_REASONS.map((reason, i) => [reason, i]));

/** Every span, metric and attribute name Regional reports (docs/observability.md lists them). */
export const TELEMETRY = {
  scope: 'regional',
  spans: { query: 'regional.query', request: 'regional.request', procedure: 'regional.procedure' },
  metrics: {
    queries: 'regional.db.queries',
    replicationWait: 'regional.replication.wait.duration',
    replicaLag: 'regional.replica.lag',
    replicaLagBytes: 'regional.replica.lag_bytes',
    replicaUsable: 'regional.replica.usable',
    requests: 'regional.http.requests',
    replays: 'regional.http.replays',
    tokenWaits: 'regional.http.token_waits',
    tokenWaitTimeouts: 'regional.http.token_wait_timeouts',
    tokenWait: 'regional.http.token_wait.duration',
    procedureCalls: 'regional.procedure.calls',
  },
  attributes: {
    region: 'regional.region',
    route: 'regional.route',
    reason: 'regional.reason',
    waitMs: 'regional.wait_ms',
    checked: 'regional.checked',
    outcome: 'regional.outcome',
    replayed: 'regional.replayed',
    replayReason: 'regional.replay_reason',
    replayedFrom: 'regional.replayed_from',
    tokenWaitMs: 'regional.token_wait_ms',
    tokenTimeout: 'regional.token_timeout',
    lagPolicy: 'regional.lag_policy',
    procedure: 'regional.procedure',
    dbSystem: 'db.system.name',
    dbOperation: 'db.operation.name',
    serverAddress: 'server.address',
    serverPort: 'server.port',
  },
} as const;

const A = TELEMETRY.attributes;

let api: typeof Api | null = null;
try {
  api = await import('@opentelemetry/api');
} catch (error) {
  // An optional peer: absent means off. Anything else (a broken install) must be seen.
  if ((error as { code?: string }).code !== 'ERR_MODULE_NOT_FOUND') throw error;
}

let tracerDelegate: Api.TracerProvider | null = null;
let cachedTracer: Api.Tracer | null = null;

/**
 * Regional's tracer from the SDK registered now. Not the API's `ProxyTracer`, which keeps the
 * first SDK's tracer forever: after `trace.disable()` (an SDK shut down) spans must stop.
 */
function tracer(): Api.Tracer | null {
  if (!api) return null;
  // The API's proxy, whose delegate is the registered SDK (a new proxy after `disable()`).
  const proxy = api.trace.getTracerProvider() as Api.ProxyTracerProvider;
  const delegate = proxy.getDelegate?.() ?? proxy;
  if (delegate !== tracerDelegate) {
    tracerDelegate = delegate;
    cachedTracer = delegate.getTracer(TELEMETRY.scope);
  }
  return cachedTracer;
}
/** Regional's spans still open and recording: only then do decisions look for the active span. */
let recording = 0;

/** What a replica's lag looks like now, for the gauges (`null`: could not be asked). */
export interface LagSample {
  seconds: number;
  bytes: number;
}

export interface SourceTelemetryOptions {
  /** `postgresql`, `redis`: the `db.system.name` attribute. */
  system: string;
  region: string;
  /** The replica's lag now; asked only when metrics are collected. */
  lag?: () => Promise<LagSample | null>;
  /** True while reads may use the replica. */
  replicaUsable?: () => boolean;
  /** The servers' URLs as configured: `server.address` and `server.port` of each route. */
  urls?: { primary: string; replica?: string | null };
}

/** `server.address` and `server.port` of a connection URL (none if it cannot be parsed). */
function serverAttributes(url: string | null | undefined): Api.Attributes {
  if (!url) return {};
  try {
    const { hostname, port } = new URL(url);
    return { [A.serverAddress]: hostname, ...(port ? { [A.serverPort]: Number(port) } : {}) };
  } catch {
    return {};
  }
}

/**
 * One source's (a pool's) queries: counted by route and reason for the metrics, and described
 * on the current `regional.query` span where one is recording.
 *
 * @example
 * const telemetry = new SourceTelemetry({ system: 'postgresql', region: 'syd' });
 * return telemetry.traced('SELECT', () => read()); // and inside: telemetry.routed('replica', 'read')
 */
export class SourceTelemetry {
  /** Counts by route (0 primary, 1 replica) and reason index. */
  readonly counts: Float64Array = new Float64Array(ROUTE_REASONS.length * 2);
  readonly #attributes: Api.Attributes;
  /** What a span says of each route and reason (indexed like {@link counts}), made once. */
  readonly #routes: Api.Attributes[];
  /** A span's first attributes by statement text: apps repeat their statements. */
  readonly #started = new Map<string, Api.Attributes>();
  #closed = false;

  constructor(readonly options: SourceTelemetryOptions) {
    this.#attributes = { [A.region]: options.region, [A.dbSystem]: options.system };
    const servers = {
      primary: serverAttributes(options.urls?.primary),
      replica: serverAttributes(options.urls?.replica),
    };
    this.#routes = (['primary', 'replica'] as const).flatMap((route) =>
      ROUTE_REASONS.map((reason) => ({ [A.route]: route, [A.reason]: reason, ...servers[route] })),
    );
    sources.add(this);
    metrics();
  }

  /**
   * Runs `run` (the statement `sql`, with its routing) in a `regional.query` span when an SDK
   * records; otherwise just runs it.
   */
  traced<T>(sql: string, run: () => Promise<T>): Promise<T> {
    const current = tracer();
    if (!current) return run();
    let attributes = this.#started.get(sql);
    if (!attributes) {
      if (this.#started.size >= 1000) this.#started.clear();
      attributes = { ...this.#attributes, [A.dbOperation]: operationName(sql) };
      this.#started.set(sql, attributes);
    }
    const span = current.startSpan(TELEMETRY.spans.query, {
      kind: 2 satisfies Api.SpanKind.CLIENT,
      attributes,
    });
    if (!span.isRecording()) return run();
    recording++;
    querySpans.add(span);
    return within(span, run);
  }

  /** Counts a statement that ran on `route` for `reason`, and says so on the current span. */
  routed(route: RouteTaken, reason: RouteReason): void {
    const index =
      (route === 'replica' ? ROUTE_REASONS.length : 0) + (REASON_INDEX.get(reason) ?? 0);
    this.counts[index] = (this.counts[index] ?? 0) + 1;
    if (recording > 0) querySpan()?.setAttributes(this.#routes[index] as Api.Attributes);
  }

  /** The read asked the replica's position in its own round trip. */
  checked(): void {
    if (recording > 0) querySpan()?.setAttribute(A.checked, true);
  }

  /** A read waited `ms` for the replica; `outcome` is where it then went (or `error`). */
  waited(ms: number, outcome: RouteTaken | 'error'): void {
    if (recording > 0) querySpan()?.setAttribute(A.waitMs, ms);
    metrics()?.replicationWait.record(ms / 1000, { ...this.#attributes, [A.outcome]: outcome });
  }

  close(): void {
    this.#closed = true;
    sources.delete(this);
  }

  /** Reports the counters (an observable counter's callback). */
  observeQueries(result: Api.ObservableResult): void {
    for (let i = 0; i < this.counts.length; i++) {
      const count = this.counts[i] as number;
      if (count === 0) continue;
      result.observe(count, {
        ...this.#attributes,
        [A.route]: i >= ROUTE_REASONS.length ? 'replica' : 'primary',
        [A.reason]: ROUTE_REASONS[i % ROUTE_REASONS.length] as string,
      });
    }
  }

  async observeReplica(
    lag: Api.ObservableResult,
    bytes: Api.ObservableResult,
    usable: Api.ObservableResult,
  ): Promise<void> {
    const attributes = { [A.region]: this.options.region, [A.dbSystem]: this.options.system };
    if (this.options.replicaUsable)
      usable.observe(this.options.replicaUsable() ? 1 : 0, attributes);
    // A replica that cannot be asked reports no lag (and `usable` 0): the route has warned.
    const sample = this.#closed
      ? null
      : await untraced(() => this.options.lag?.())?.catch(() => null);
    if (!sample) return;
    lag.observe(sample.seconds, attributes);
    bytes.observe(sample.bytes, attributes);
  }
}

const sources = new Set<SourceTelemetry>();

/** An HTTP layer's counters, reported when metrics are collected. */
export interface HttpCounters {
  region: string;
  requests(): number;
  replays(): Record<string, number>;
  tokenWaits(): number;
  tokenWaitTimeouts(): number;
}
/** Held weakly: a middleware nobody uses any more stops being reported. */
const httpLayers = new Set<WeakRef<HttpCounters>>();

/** Adds an HTTP layer's counters to the metrics (for as long as `counters` lives). */
export function observeHttp(counters: HttpCounters): void {
  httpLayers.add(new WeakRef(counters));
  metrics();
}

/** Request spans by their request's consistency context. */
const contextSpans = new WeakMap<object, Api.Span>();

/** Starts a request's `regional.request` span (when an SDK records), tied to its `context`. */
export function startRequestSpan(context: object, attributes: Api.Attributes): void {
  const span = startSpan(TELEMETRY.spans.request, attributes);
  if (span) contextSpans.set(context, span);
}

/** Adds `attributes` to the request span of `context`, if it has one. */
export function describeRequest(context: object, attributes: Api.Attributes): void {
  if (recording > 0) contextSpans.get(context)?.setAttributes(attributes);
}

/** Ends the request span of `context` (once), with `attributes()` added. */
export function endRequestSpan(context: object, attributes: () => Api.Attributes): void {
  if (recording === 0) return;
  const span = contextSpans.get(context);
  if (!span) return;
  contextSpans.delete(context);
  span.setAttributes(attributes());
  endSpan(span);
}

/** Runs `run` with the request span of `context` active, if it has one (a handler's spans nest under it). */
export function underRequestSpan<T>(context: object, run: () => T): T {
  if (recording === 0) return run();
  const span = contextSpans.get(context);
  return span ? withSpan(span, run) : run();
}

/** Records a request's wait for its token, in seconds, by outcome (`replica` reached, `timeout`). */
export function recordTokenWait(region: string, ms: number, outcome: 'reached' | 'timeout'): void {
  metrics()?.tokenWait.record(ms / 1000, { [A.region]: region, [A.outcome]: outcome });
}

/** Counts a procedure call by name and outcome (`ok`, `error`). */
export function recordProcedureCall(region: string, name: string, outcome: 'ok' | 'error'): void {
  metrics()?.procedureCalls.add(1, {
    [A.region]: region,
    [A.procedure]: name,
    [A.outcome]: outcome,
  });
}

/**
 * Starts a span named `name` (child of the active one) when an SDK records; `null` otherwise.
 * Run work under it with {@link within}; end it with {@link endSpan}.
 */
export function startSpan(name: string, attributes: Api.Attributes): Api.Span | null {
  const current = tracer();
  if (!current) return null;
  const span = current.startSpan(name, { attributes });
  if (!span.isRecording()) return null;
  recording++;
  return span;
}

/** Runs `run` with `span` active; ends the span when it settles (and records an error). */
export function within<T>(span: Api.Span, run: () => Promise<T>): Promise<T> {
  const otel = api as typeof Api;
  let promise: Promise<T>;
  try {
    promise = otel.context.with(otel.trace.setSpan(otel.context.active(), span), run);
  } catch (error) {
    promise = Promise.reject(error);
  }
  return promise.then(
    (result) => {
      endSpan(span);
      return result;
    },
    (error: unknown) => {
      endSpan(span, error);
      throw error;
    },
  );
}

/** Runs `run` with `span` active, synchronously (an HTTP handler's start). */
export function withSpan<T>(span: Api.Span | null, run: () => T): T {
  if (!span || !api) return run();
  return api.context.with(api.trace.setSpan(api.context.active(), span), run);
}

/** Ends a span from {@link startSpan} (or one {@link within} ran), marking it failed with `error`. */
export function endSpan(span: Api.Span, error?: unknown): void {
  recording--;
  if (error !== undefined) {
    span.recordException(error instanceof Error ? error : String(error));
    span.setStatus({ code: 2 satisfies Api.SpanStatusCode.ERROR, message: errorMessage(error) });
  }
  span.end();
}

// The key `suppressTracing()` of `@opentelemetry/core` sets. The API makes keys with
// `Symbol.for`, so this is the same key without depending on the SDK's package.
const SUPPRESS_TRACING = api?.createContextKey('OpenTelemetry SDK Context Key SUPPRESS_TRACING');

/**
 * Runs `run` with tracing suppressed, as `suppressTracing()` does: the SDK and every
 * instrumentation (`pg.query` spans too) record nothing under it. For Regional's own background
 * queries (replay polls, lag samples, the source key), which would otherwise start a trace of
 * their own, or land in whichever request happened to start them.
 */
export function untraced<T>(run: () => T): T {
  if (!api || !SUPPRESS_TRACING) return run();
  return api.context.with(api.context.active().setValue(SUPPRESS_TRACING, true), run);
}

/** The statement's first keyword, upper-cased: `SELECT`, `INSERT`, `BEGIN`. */
function operationName(sql: string): string {
  const match = /^\s*([A-Za-z]+)/.exec(sql);
  return match ? (match[1] as string).toUpperCase() : 'QUERY';
}

function errorMessage(error: unknown): string {
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  return typeof code === 'string' ? code : typeof message === 'string' ? message : 'error';
}

/** Regional's query spans: decisions describe the active span only if it is one of them. */
const querySpans = new WeakSet<Api.Span>();

function querySpan(): Api.Span | undefined {
  const span = api?.trace.getActiveSpan();
  return span && querySpans.has(span) ? span : undefined;
}

interface Instruments {
  replicationWait: Api.Histogram;
  tokenWait: Api.Histogram;
  procedureCalls: Api.Counter;
}

let meterProvider: Api.MeterProvider | null = null;
let instruments: Instruments | null = null;

/**
 * The instruments on the global meter provider, made again if the app registered another one
 * since: unlike tracers, the metrics API has no proxy, so instruments made before the SDK
 * was registered would record nothing.
 */
function metrics(): Instruments | null {
  if (!api) return null;
  const provider = api.metrics.getMeterProvider();
  if (provider === meterProvider) return instruments;
  meterProvider = provider;
  const meter = provider.getMeter(TELEMETRY.scope);
  const names = TELEMETRY.metrics;
  // Waits for replication last milliseconds, not the SDK's default 0–10 000 (made for ms).
  const seconds = {
    unit: 's',
    advice: {
      explicitBucketBoundaries: [
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
      ],
    },
  };
  const made: Instruments = {
    replicationWait: meter.createHistogram(names.replicationWait, {
      ...seconds,
      description: 'Time a read waited for the local replica to replay what its context needs',
    }),
    tokenWait: meter.createHistogram(names.tokenWait, {
      ...seconds,
      description:
        "Time a request waited, before its handler, for the replica to reach its client's token",
    }),
    procedureCalls: meter.createCounter(names.procedureCalls, {
      description: 'Procedure calls run in the primary region, by procedure and outcome',
    }),
  };
  const queries = meter.createObservableCounter(names.queries, {
    description: 'Statements routed, by route (replica or primary) and reason',
  });
  queries.addCallback((result) => {
    for (const source of sources) source.observeQueries(result);
  });
  const lag = meter.createObservableGauge(names.replicaLag, {
    unit: 's',
    description:
      'Time since the last transaction the local replica replayed (0 when it has replayed all it received)',
  });
  const lagBytes = meter.createObservableGauge(names.replicaLagBytes, {
    unit: 'By',
    description: 'WAL bytes the local replica is behind the primary',
  });
  const usable = meter.createObservableGauge(names.replicaUsable, {
    description: 'Whether reads may use the local replica (1) or go to the primary (0)',
  });
  meter.addBatchObservableCallback(
    async (result) => {
      await Promise.all(
        [...sources].map((source) =>
          source.observeReplica(
            { observe: (value, attributes) => result.observe(lag, value, attributes) },
            { observe: (value, attributes) => result.observe(lagBytes, value, attributes) },
            { observe: (value, attributes) => result.observe(usable, value, attributes) },
          ),
        ),
      );
    },
    [lag, lagBytes, usable],
  );
  const requests = meter.createObservableCounter(names.requests, {
    description: 'HTTP requests seen by the Regional middleware',
  });
  const replays = meter.createObservableCounter(names.replays, {
    description: 'Requests replayed in the primary region, by reason',
  });
  const tokenWaits = meter.createObservableCounter(names.tokenWaits, {
    description: "Requests that waited for the replica to reach their client's token",
  });
  const tokenWaitTimeouts = meter.createObservableCounter(names.tokenWaitTimeouts, {
    description: 'Token waits that missed the bound (or found the replica unavailable)',
  });
  meter.addBatchObservableCallback(
    (result) => {
      for (const ref of httpLayers) {
        const layer = ref.deref();
        if (!layer) {
          httpLayers.delete(ref);
          continue;
        }
        const attributes = { [A.region]: layer.region };
        result.observe(requests, layer.requests(), attributes);
        for (const [reason, count] of Object.entries(layer.replays()))
          result.observe(replays, count, { ...attributes, [A.replayReason]: reason });
        result.observe(tokenWaits, layer.tokenWaits(), attributes);
        result.observe(tokenWaitTimeouts, layer.tokenWaitTimeouts(), attributes);
      }
    },
    [requests, replays, tokenWaits, tokenWaitTimeouts],
  );
  instruments = made;
  return made;
}
