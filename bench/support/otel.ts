/**
 * The OpenTelemetry SDK as an app registers it, with exporters that drop everything: what
 * Regional's spans and metrics cost on the client, without the cost of sending them.
 */
import { context, metrics, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import {
  AggregationTemporality,
  MeterProvider,
  PeriodicExportingMetricReader,
} from '@opentelemetry/sdk-metrics';
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  ParentBasedSampler,
  type Sampler,
  SamplingDecision,
  TraceIdRatioBasedSampler,
} from '@opentelemetry/sdk-trace-base';

/** Answers an export as done (`ExportResultCode.SUCCESS` is 0). */
const done = (callback: (result: { code: number }) => void) => callback({ code: 0 });

/** docs/observability.md's sampler: every span but Regional's per-statement `regional.query`. */
const withoutStatementSpans: Sampler = {
  shouldSample: (_context, _traceId, name) => ({
    decision:
      name === 'regional.query' ? SamplingDecision.NOT_RECORD : SamplingDecision.RECORD_AND_SAMPLED,
  }),
  toString: () => 'WithoutStatementSpans',
};

/**
 * A registered SDK (tracing with a batch processor, metrics read every 10 s), exporting nowhere;
 * with `sampleRatio`, tracing samples that share of traces (as production setups do); with
 * `statementSpans: false`, it records no `regional.query` spans; with `traces: false`, metrics
 * only (no tracer provider registered).
 */
export function noopSdk({
  sampleRatio,
  statementSpans = true,
  traces = true,
}: {
  sampleRatio?: number;
  statementSpans?: boolean;
  traces?: boolean;
} = {}) {
  const sampler =
    sampleRatio !== undefined
      ? new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(sampleRatio) })
      : statementSpans
        ? undefined
        : withoutStatementSpans;
  const tracerProvider = new BasicTracerProvider({
    ...(sampler ? { sampler } : {}),
    spanProcessors: [
      new BatchSpanProcessor({
        export: (_spans, callback) => done(callback),
        shutdown: async () => {},
      }),
    ],
  });
  const meterProvider = new MeterProvider({
    readers: [
      new PeriodicExportingMetricReader({
        exportIntervalMillis: 10_000,
        exporter: {
          export: (_metrics, callback) => done(callback),
          forceFlush: async () => {},
          shutdown: async () => {},
          selectAggregationTemporality: () => AggregationTemporality.CUMULATIVE,
        },
      }),
    ],
  });
  const contextManager = new AsyncLocalStorageContextManager();
  let registered = false;
  return {
    /** Registers the SDK globally (idempotent). */
    register(): void {
      if (registered) return;
      registered = true;
      context.setGlobalContextManager(contextManager.enable());
      if (traces) trace.setGlobalTracerProvider(tracerProvider);
      metrics.setGlobalMeterProvider(meterProvider);
    },
    /** Takes it away again: the API is back to its no-op defaults. */
    unregister(): void {
      if (!registered) return;
      registered = false;
      trace.disable();
      metrics.disable();
      context.disable();
    },
    async shutdown(): Promise<void> {
      this.unregister();
      await Promise.all([tracerProvider.shutdown(), meterProvider.shutdown()]);
    },
  };
}
