/**
 * Regional's spans with `@opentelemetry/instrumentation-pg` installed: node-postgres's own
 * `pg.query` spans nest under Regional's `regional.query`, itself under the app's span, and
 * Regional's own background queries start no traces. A file of its own, as the instrumentation
 * must patch `pg` before anything loads it.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { context, metrics, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { PgInstrumentation } from '@opentelemetry/instrumentation-pg';
import { MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { LocalCluster } from '../testing/cluster.js';
import { TELEMETRY, untraced } from './telemetry.js';

/** Collects on demand. */
class TestReader extends MetricReader {
  protected async onForceFlush(): Promise<void> {}
  protected async onShutdown(): Promise<void> {}
}

const spans = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] });
const reader = new TestReader();
const meterProvider = new MeterProvider({ readers: [reader] });
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
trace.setGlobalTracerProvider(provider);
metrics.setGlobalMeterProvider(meterProvider);
const instrumentation = new PgInstrumentation(); // patches pg when it is first loaded, below

let cluster: LocalCluster;

beforeAll(async () => {
  const { LocalCluster } = await import('../testing/cluster.js');
  cluster = await LocalCluster.start({
    temporary: true,
    regions: ['iad', 'syd'],
    rttMs: { syd: 10 },
  });
});

afterAll(async () => {
  instrumentation.disable();
  await cluster?.stop();
  trace.disable();
  metrics.disable();
  context.disable();
  await provider.shutdown();
  await meterProvider.shutdown();
});

/** The test's own queries to the cluster: neither the app's nor Regional's, so not traced. */
const harness = <T>(run: () => Promise<T>): Promise<T> => untraced(run);

const driverSpans = () =>
  spans
    .getFinishedSpans()
    .filter((s) => s.instrumentationScope.name.includes('instrumentation-pg'));
const text = (span: ReadableSpan) => String(span.attributes['db.query.text'] ?? '');
/** Each finished span as `name parent id`, for a failure's message. */
const seen = () =>
  spans
    .getFinishedSpans()
    .map((s) => `${s.name} ${s.parentSpanContext?.spanId} ${s.spanContext().spanId} ${text(s)}`)
    .join('\n');

async function regionalPool() {
  const { RegionalPool } = await import('../pg/pool.js');
  const endpoints = cluster.endpoints('syd');
  return new RegionalPool({
    primaryRegion: 'iad',
    region: 'syd',
    databaseUrl: endpoints.databaseUrl,
    replicaUrl: endpoints.replicaUrl,
    onWarning: () => {},
  });
}

it('instrumentation-pg’s spans nest under regional.query, under the app’s span', async () => {
  const { withContext } = await import('./context.js');
  const pool = await regionalPool();
  try {
    await pool.query('SELECT 1'); // connections, the source's key: spans of their own
    spans.reset();
    await trace.getTracer('app').startActiveSpan('GET /', async (span) => {
      await withContext(() => pool.query('SELECT 2 AS two'));
      span.end();
    });
  } finally {
    await pool.end();
  }
  const finished = spans.getFinishedSpans();
  const app = finished.find((s) => s.name === 'GET /');
  const regional = finished.find((s) => s.name === TELEMETRY.spans.query);
  expect(regional?.parentSpanContext?.spanId).toBe(app?.spanContext().spanId);
  expect(regional?.attributes[TELEMETRY.attributes.route]).toBe('replica');
  const query = driverSpans().find((s) => text(s) === 'SELECT 2 AS two');
  expect(query?.parentSpanContext?.spanId, seen()).toBe(regional?.spanContext().spanId);
});

it('Regional’s own queries (replay polls, lag samples, the source key) start no traces', async () => {
  const { withContext } = await import('./context.js');
  spans.reset();
  const pool = await regionalPool();
  try {
    await harness(() => cluster.query('iad', 'CREATE TABLE IF NOT EXISTS traced (id int)'));
    await trace.getTracer('app').startActiveSpan('POST /', async (span) => {
      await withContext(async () => {
        // The read needs the write, which the paused replica lacks: the replay tracker polls.
        await harness(() => cluster.pauseReplay('syd'));
        await pool.query('INSERT INTO traced VALUES (1)');
        const read = pool.query('SELECT count(*) FROM traced');
        read.catch(() => {}); // awaited below
        await sleep(300);
        await harness(() => cluster.resumeReplay('syd'));
        await read;
      });
      span.end();
    });
    await reader.collect(); // the lag gauges ask the replica and the primary
  } finally {
    await harness(() => cluster.resumeReplay('syd'));
    await pool.end();
  }
  const regionalIds = new Set(
    spans
      .getFinishedSpans()
      .filter((s) => s.name === TELEMETRY.spans.query)
      .map((s) => s.spanContext().spanId),
  );
  expect(pool.stats().tracker?.polls, 'the replay tracker polled').toBeGreaterThan(0);
  const queries = driverSpans().filter((s) => s.name.startsWith('pg.query'));
  expect(queries.length).toBeGreaterThan(0);
  // Every query node-postgres traced is one of the app's, under its regional.query span.
  for (const query of queries)
    expect(regionalIds.has(query.parentSpanContext?.spanId ?? ''), seen()).toBe(true);
});
