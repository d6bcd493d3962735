import { PrometheusExporter, PrometheusSerializer } from '@opentelemetry/exporter-prometheus';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import { describe, expect, it } from 'vitest';
import { ExpositionError, parsePrometheusText, samples, total } from './prometheus-text.js';

describe('parsePrometheusText', () => {
  it("reads what OpenTelemetry's Prometheus exporter writes: counters, gauges, histograms, units, escapes", async () => {
    const exporter = new PrometheusExporter({ preventServerStart: true });
    const provider = new MeterProvider({ readers: [exporter] });
    const meter = provider.getMeter('regional');
    meter.createCounter('regional.db.queries').add(3, { 'regional.route': 'replica', q: 'a"b\\c' });
    meter.createCounter('regional.db.queries').add(2, { 'regional.route': 'primary', q: 'x' });
    const wait = meter.createHistogram('regional.replication.wait.duration', { unit: 's' });
    wait.record(0.25, { 'regional.region': 'syd' });
    wait.record(0.5, { 'regional.region': 'syd' });
    meter
      .createObservableGauge('regional.replica.lag', { unit: 's', description: 'Lag\nnow' })
      .addCallback((r) => r.observe(1.5, { 'regional.region': 'syd' }));
    const text = new PrometheusSerializer().serialize((await exporter.collect()).resourceMetrics);
    await provider.shutdown();

    const families = parsePrometheusText(text);
    const queries = families.get('regional_db_queries_total');
    expect(queries?.type).toBe('counter');
    expect(total(families, 'regional_db_queries_total')).toBe(5);
    expect(samples(families, 'regional_db_queries_total', { regional_route: 'replica' })).toEqual([
      {
        name: 'regional_db_queries_total',
        labels: { regional_route: 'replica', q: 'a"b\\c', otel_scope_name: 'regional' },
        value: 3,
      },
    ]);
    const histogram = families.get('regional_replication_wait_duration');
    expect(histogram).toMatchObject({ type: 'histogram', unit: 's' });
    expect(total(families, 'regional_replication_wait_duration_count')).toBe(2);
    expect(total(families, 'regional_replication_wait_duration_sum')).toBe(0.75);
    const inf = samples(families, 'regional_replication_wait_duration_bucket', { le: '+Inf' });
    expect(inf.map((s) => [s.labels.regional_region, s.value])).toEqual([['syd', 2]]);
    expect(families.get('regional_replica_lag')).toMatchObject({
      type: 'gauge',
      unit: 's',
      help: 'Lag\nnow',
      samples: [{ value: 1.5, labels: { regional_region: 'syd' } }],
    });
  });

  it('reads special values, timestamps, comments and samples without a TYPE', () => {
    const families = parsePrometheusText(
      '# a comment\nup 1 1700000000000\nx{a="1"} +Inf\ny -Inf\nz NaN\nw 1e-3\n',
    );
    expect(total(families, 'up')).toBe(1);
    expect(families.get('up')?.type).toBe('untyped');
    expect(total(families, 'x')).toBe(Number.POSITIVE_INFINITY);
    expect(total(families, 'y')).toBe(Number.NEGATIVE_INFINITY);
    expect(total(families, 'z')).toBeNaN();
    expect(total(families, 'w')).toBe(0.001);
  });

  it.each([
    ['x{a="1"', /line 1: labels: expected|unterminated/],
    ['x{a=1} 2', /line 1: label "a": value not quoted/],
    ['x{a="1",a="2"} 2', /label "a" given twice/],
    ['x 1 2 3', /expected a value/],
    ['x one', /"one" is not a number/],
    ['x 1 soon', /bad timestamp/],
    ['# TYPE x counter\nx 1\n# TYPE x gauge', /line 3: # TYPE x after its samples/],
    ['# TYPE x meter', /unknown type "meter"/],
    ['x{a="\\t"} 1', /bad escape/],
    ['9x 1', /bad metric name "9x"/],
    ['x', /not a sample|expected a value/],
  ])('refuses %j', (text, message) => {
    expect(() => parsePrometheusText(text)).toThrow(ExpositionError);
    expect(() => parsePrometheusText(text)).toThrow(message);
  });
});
