/**
 * Regional's spans with `@opentelemetry/instrumentation-pg` installed: node-postgres's own
 * `pg.query` spans nest under Regional's `regional.query`, itself under the app's span. A file of
 * its own, as the instrumentation must patch `pg` before anything loads it.
 */
import { context, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { PgInstrumentation } from '@opentelemetry/instrumentation-pg';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { LocalCluster } from '../testing/cluster.js';
import { TELEMETRY } from './telemetry.js';

const spans = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] });
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
trace.setGlobalTracerProvider(provider);
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
  context.disable();
  await provider.shutdown();
});

it('instrumentation-pg’s spans nest under regional.query, under the app’s span', async () => {
  const { RegionalPool } = await import('../pg/pool.js');
  const { withContext } = await import('./context.js');
  const endpoints = cluster.endpoints('syd');
  const pool = new RegionalPool({
    primaryRegion: 'iad',
    region: 'syd',
    databaseUrl: endpoints.databaseUrl,
    replicaUrl: endpoints.replicaUrl,
    onWarning: () => {},
  });
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
  const driver = finished.filter((s) => s.instrumentationScope.name.includes('instrumentation-pg'));
  expect(regional?.parentSpanContext?.spanId).toBe(app?.spanContext().spanId);
  expect(regional?.attributes[TELEMETRY.attributes.route]).toBe('replica');
  const query = driver.find((s) => s.name.startsWith('pg.query'));
  const seen = finished.map(
    (s) => `${s.name} ${s.parentSpanContext?.spanId} ${s.spanContext().spanId}`,
  );
  expect(query?.parentSpanContext?.spanId, seen.join('\n')).toBe(regional?.spanContext().spanId);
});
