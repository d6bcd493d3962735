/**
 * Regional's traces and metrics, read with the real OpenTelemetry SDK (in-memory exporters) on
 * a real cluster: iad primary, syd replica, 50 ms each way. The names asserted here are the ones
 * docs/observability.md lists.
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { context, metrics, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { type DataPoint, MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  type Sampler,
  SamplingDecision,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { Hono } from 'hono';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { regional } from '../hono/index.js';
import { TOKEN_HEADER } from '../http/headers.js';
import { RegionalPool } from '../pg/pool.js';
import { LocalCluster } from '../testing/cluster.js';
import { withContext } from './context.js';
import { TELEMETRY } from './telemetry.js';

const A = TELEMETRY.attributes;
const SECRET = randomBytes(32).toString('hex');

/** Collects on demand. */
class TestReader extends MetricReader {
  protected async onForceFlush(): Promise<void> {}
  protected async onShutdown(): Promise<void> {}
}

const spans = new InMemorySpanExporter();
const tracerProvider = new BasicTracerProvider({
  spanProcessors: [new SimpleSpanProcessor(spans)],
});
const reader = new TestReader();
const meterProvider = new MeterProvider({ readers: [reader] });
const contextManager = new AsyncLocalStorageContextManager().enable();

/** The data points of metric `name`, with their attributes. */
async function points(name: string): Promise<DataPoint<unknown>[]> {
  const { resourceMetrics, errors } = await reader.collect();
  expect(errors).toEqual([]);
  const found = resourceMetrics.scopeMetrics
    .filter((scope) => scope.scope.name === TELEMETRY.scope)
    .flatMap((scope) => scope.metrics)
    .filter((metric) => metric.descriptor.name === name);
  return found.flatMap((metric) => metric.dataPoints as DataPoint<unknown>[]);
}

/** The routed-queries counter's value in syd for `route` and `reason` (undefined: none yet). */
async function routedQueries(route: string, reason: string): Promise<number | undefined> {
  const found = (await points(TELEMETRY.metrics.queries)).find(
    (p) =>
      p.attributes[A.region] === 'syd' &&
      p.attributes[A.route] === route &&
      p.attributes[A.reason] === reason,
  );
  return found?.value as number | undefined;
}

function querySpans(): ReadableSpan[] {
  return spans.getFinishedSpans().filter((span) => span.name === TELEMETRY.spans.query);
}

describe('OpenTelemetry: traces and metrics (iad primary, syd replica, 50 ms each way)', () => {
  let cluster: LocalCluster;
  let pool: RegionalPool;
  const closers: (() => Promise<unknown>)[] = [];

  const options = (region: 'iad' | 'syd', extra: Record<string, unknown> = {}) => {
    const endpoints = cluster.endpoints(region);
    return {
      primaryRegion: 'iad',
      region,
      databaseUrl: endpoints.databaseUrl,
      replicaUrl: endpoints.replicaUrl,
      onWarning: () => {},
      ...extra,
    };
  };

  beforeAll(async () => {
    context.setGlobalContextManager(contextManager);
    trace.setGlobalTracerProvider(tracerProvider);
    metrics.setGlobalMeterProvider(meterProvider);
    cluster = await LocalCluster.start({
      temporary: true,
      regions: ['iad', 'syd'],
      rttMs: { syd: 100 },
    });
    await cluster.query(
      'iad',
      `CREATE TABLE items (id serial PRIMARY KEY, body text NOT NULL); INSERT INTO items (body) VALUES ('first');
       CREATE FUNCTION add_item(b text) RETURNS int LANGUAGE sql AS $$ INSERT INTO items (body) VALUES (b) RETURNING id $$;`,
    );
    await cluster.waitForReplay('syd');
    pool = new RegionalPool(options('syd', { maxWaitMs: 5_000 }));
  });

  beforeEach(() => spans.reset());

  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
    await cluster.server('syd').start();
    await cluster.resumeReplay('syd').catch(() => {});
    await cluster.waitForReplay('syd');
  });

  afterAll(async () => {
    await pool?.end();
    await cluster?.stop();
    trace.disable();
    metrics.disable();
    context.disable();
    await Promise.all([tracerProvider.shutdown(), meterProvider.shutdown()]);
  });

  async function own(region: 'iad' | 'syd', extra: Record<string, unknown> = {}) {
    const opened = new RegionalPool(options(region, extra));
    closers.push(() => opened.end());
    return opened;
  }

  it('a read in a replica region: a regional.query span under the app’s span, route replica, reason read', async () => {
    const app = trace.getTracer('app');
    await app.startActiveSpan('GET /items', async (parent) => {
      await withContext(() => pool.query('SELECT body FROM items WHERE id = 1'));
      parent.end();
    });
    const [span] = querySpans();
    const parent = spans.getFinishedSpans().find((s) => s.name === 'GET /items');
    expect(span?.attributes).toMatchObject({
      [A.route]: 'replica',
      [A.reason]: 'read',
      [A.region]: 'syd',
      [A.dbSystem]: 'postgresql',
      [A.dbOperation]: 'SELECT',
    });
    expect(span?.parentSpanContext?.spanId).toBe(parent?.spanContext().spanId);
    expect(span?.spanContext().traceId).toBe(parent?.spanContext().traceId);
  });

  it('a write: route primary, reason write; a read that locks: reason lock; a chosen server: forced', async () => {
    await withContext(async () => {
      await pool.query('INSERT INTO items (body) VALUES ($1)', ['written']);
      await pool.query('SELECT id FROM items WHERE id = 1 FOR UPDATE');
      await pool.query('SELECT 1', [], { on: 'primary' });
    });
    expect(querySpans().map((s) => [s.attributes[A.route], s.attributes[A.reason]])).toEqual([
      ['primary', 'write'],
      ['primary', 'lock'],
      ['primary', 'forced'],
    ]);
  });

  it('a SELECT that writes, refused by the replica (25006): reason read_only_retry, through the pool and a checked-out client', async () => {
    await withContext(() => pool.query("SELECT add_item('from the pool')"));
    const client = await pool.connect();
    try {
      await withContext(() => client.query("SELECT add_item('from a client')"));
    } finally {
      client.release();
    }
    expect(await routedQueries('primary', 'read_only_retry')).toBe(2);
    const [span] = querySpans();
    expect(span?.attributes).toMatchObject({ [A.route]: 'primary', [A.reason]: 'read_only_retry' });
  });

  it('a read after a write that had to wait: on the replica, its wait on the span and in the histogram', async () => {
    const before = await histogramCount(TELEMETRY.metrics.replicationWait, 'replica');
    await withContext(async () => {
      await cluster.pauseReplay('syd');
      await pool.query('INSERT INTO items (body) VALUES ($1)', ['waited for']);
      const reading = pool.query('SELECT count(*) FROM items');
      await sleep(300);
      await cluster.resumeReplay('syd');
      await reading;
    });
    const read = querySpans().find((s) => s.attributes[A.dbOperation] === 'SELECT');
    expect(read?.attributes).toMatchObject({
      [A.route]: 'replica',
      [A.reason]: 'read',
      [A.checked]: true,
    });
    expect(read?.attributes[A.waitMs]).toBeGreaterThan(0);
    expect(await histogramCount(TELEMETRY.metrics.replicationWait, 'replica')).toBe(before + 1);
    // Buckets for seconds, not the SDK's default (0 to 10 000, made for milliseconds).
    const [wait] = await points(TELEMETRY.metrics.replicationWait);
    expect(wait).toBeDefined();
    const { boundaries } = (wait as DataPoint<{ buckets: { boundaries: number[] } }>).value.buckets;
    expect(boundaries[0]).toBe(0.001);
    expect(boundaries.at(-1)).toBe(10);
  });

  it('a paused replica past the bound: the read goes to the primary with reason lag', async () => {
    const bounded = await own('syd', { maxWaitMs: 200 });
    await cluster.pauseReplay('syd');
    await withContext(async () => {
      await bounded.query('INSERT INTO items (body) VALUES ($1)', ['past the bound']);
      await bounded.query('SELECT count(*) FROM items');
    });
    const read = querySpans().find((s) => s.attributes[A.dbOperation] === 'SELECT');
    expect(read?.attributes).toMatchObject({
      [A.route]: 'primary',
      [A.reason]: 'lag',
      [A.waitMs]: 200,
    });
    expect(
      await histogramCount(TELEMETRY.metrics.replicationWait, 'primary'),
    ).toBeGreaterThanOrEqual(1);
  });

  it('a stopped replica: reads go to the primary with reason replica_down; the usable gauge says 0', async () => {
    const stopped = await own('syd', { replicaRetryMs: 60_000 });
    await withContext(() => stopped.query('SELECT 1'));
    await cluster.server('syd').stop();
    await withContext(() => stopped.query('SELECT 2'));
    await withContext(() => stopped.query('SELECT 3'));
    const reasons = querySpans().map((s) => [s.attributes[A.route], s.attributes[A.reason]]);
    expect(reasons[0]).toEqual(['replica', 'read']);
    expect(reasons.slice(1)).toContainEqual(['primary', 'replica_down']);
    expect(reasons.at(-1)).toEqual(['primary', 'replica_down']);
    const usable = await points(TELEMETRY.metrics.replicaUsable);
    expect(usable.map((p) => p.value)).toContain(0);
  });

  it('metrics: routed queries by route and reason, and the replica lag gauges per region', async () => {
    await withContext(() => pool.query('SELECT 1'));
    expect(await routedQueries('replica', 'read')).toBeGreaterThanOrEqual(1);
    const lag = await points(TELEMETRY.metrics.replicaLag);
    const bytes = await points(TELEMETRY.metrics.replicaLagBytes);
    expect(lag.find((p) => p.attributes[A.region] === 'syd')?.value).toBeGreaterThanOrEqual(0);
    expect(bytes.find((p) => p.attributes[A.region] === 'syd')?.value).toBeGreaterThanOrEqual(0);

    // Paused behind a write, the replica reports bytes behind.
    await cluster.pauseReplay('syd');
    await cluster.query(
      'iad',
      "INSERT INTO items (body) SELECT 'lag ' || g FROM generate_series(1, 200) g",
    );
    const behind = await points(TELEMETRY.metrics.replicaLagBytes);
    expect(behind.find((p) => p.attributes[A.region] === 'syd')?.value).toBeGreaterThan(0);
  });

  describe('HTTP', () => {
    function app(region: 'iad' | 'syd', source: RegionalPool, extra: Record<string, unknown> = {}) {
      const hono = new Hono();
      hono.use(
        regional({
          sources: [source],
          primaryRegion: 'iad',
          region,
          secret: SECRET,
          mode: 'fly-replay',
          ...extra,
        }),
      );
      hono.get('/items', async (c) =>
        c.json((await source.query('SELECT count(*)::int AS n FROM items')).rows[0]),
      );
      hono.post('/items', async (c) => {
        await source.query('INSERT INTO items (body) VALUES ($1)', ['posted']);
        return c.json({ ok: true });
      });
      return hono;
    }

    it('a POST in a replica region is replayed: regional.request says replayed, reason write; the replays counter counts it', async () => {
      const response = await app('syd', pool).request('/items', { method: 'POST' });
      expect(response.headers.get('fly-replay')).toMatch(/region=iad/);
      const request = spans.getFinishedSpans().find((s) => s.name === TELEMETRY.spans.request);
      expect(request?.attributes).toMatchObject({
        [A.region]: 'syd',
        [A.replayed]: true,
        [A.replayReason]: 'write',
        [A.outcome]: 'replay',
        [A.lagPolicy]: 'replay',
      });
      const replays = await points(TELEMETRY.metrics.replays);
      const write = replays.find(
        (p) => p.attributes[A.region] === 'syd' && p.attributes[A.replayReason] === 'write',
      );
      expect(write?.value).toBeGreaterThanOrEqual(1);
    });

    it('a GET with a token the replica has not reached waits for it: the wait on regional.request, the query under it', async () => {
      const primary = await own('iad');
      await cluster.pauseReplay('syd');
      // Written in iad while syd's replay is paused: its token names a position syd lacks.
      const written = await app('iad', primary).request('/items', { method: 'POST' });
      const token = written.headers.get(TOKEN_HEADER) as string;
      expect(token).toBeTruthy();
      const waitsBefore = await histogramCount(TELEMETRY.metrics.tokenWait, 'reached');
      spans.reset();
      const reading = app('syd', pool, { lagPolicy: 'error', maxWaitMs: 5_000 }).request('/items', {
        headers: { [TOKEN_HEADER]: token },
      });
      await sleep(300);
      await cluster.resumeReplay('syd');
      const response = await reading;
      expect(response.status).toBe(200);
      const request = spans.getFinishedSpans().find((s) => s.name === TELEMETRY.spans.request);
      expect(request?.attributes).toMatchObject({
        [A.replayed]: false,
        [A.outcome]: 'run',
        [A.lagPolicy]: 'error',
      });
      expect(request?.attributes[A.tokenWaitMs]).toBeGreaterThan(0);
      const [query] = querySpans();
      expect(query?.parentSpanContext?.spanId).toBe(request?.spanContext().spanId);
      expect(await histogramCount(TELEMETRY.metrics.tokenWait, 'reached')).toBe(waitsBefore + 1);
      const tokenWaits = await points(TELEMETRY.metrics.tokenWaits);
      expect(
        tokenWaits.find((p) => p.attributes[A.region] === 'syd')?.value,
      ).toBeGreaterThanOrEqual(1);
    });
  });

  it('an SDK taken away (trace.disable(), as at shutdown) stops Regional’s spans; registered again, they are back', async () => {
    trace.disable();
    try {
      await withContext(() => pool.query('SELECT 1'));
      expect(querySpans()).toEqual([]);
    } finally {
      trace.setGlobalTracerProvider(tracerProvider);
    }
    await withContext(() => pool.query('SELECT 1'));
    expect(querySpans()).toHaveLength(1);
  });

  it('a sampler that drops regional.query (as docs/observability.md shows) keeps the app’s spans and routes as before', async () => {
    const withoutStatementSpans: Sampler = {
      shouldSample: (_context, _traceId, name) => ({
        decision:
          name === TELEMETRY.spans.query
            ? SamplingDecision.NOT_RECORD
            : SamplingDecision.RECORD_AND_SAMPLED,
      }),
      toString: () => 'WithoutStatementSpans',
    };
    const sampled = new InMemorySpanExporter();
    const provider = new BasicTracerProvider({
      sampler: withoutStatementSpans,
      spanProcessors: [new SimpleSpanProcessor(sampled)],
    });
    trace.disable();
    trace.setGlobalTracerProvider(provider);
    const before = pool.stats().replicaReads;
    let names: string[];
    try {
      await trace.getTracer('app').startActiveSpan('GET /sampled', async (parent) => {
        await withContext(() => pool.query('SELECT 1'));
        parent.end();
      });
      await provider.forceFlush();
      names = sampled.getFinishedSpans().map((s) => s.name);
    } finally {
      trace.disable();
      trace.setGlobalTracerProvider(tracerProvider);
      await provider.shutdown(); // (which empties the exporter)
    }
    expect(names).toEqual(['GET /sampled']);
    expect(pool.stats().replicaReads).toBe(before + 1);
  });

  /** How many values the histogram `name` holds with outcome `outcome` (all regions). */
  async function histogramCount(name: string, outcome: string): Promise<number> {
    let count = 0;
    for (const point of await points(name)) {
      if (point.attributes[A.outcome] === outcome)
        count += (point.value as { count: number }).count;
    }
    return count;
  }
});
