import { examples, INVARIANTS, type Invariant, type Judgement } from './checker.js';
import { type Op, ok } from './history.js';

/** One scenario's figures, as printed and as written to `bench/results/faults.json`. */
export interface ScenarioResult {
  runs: number;
  ops: number;
  acknowledgedWrites: number;
  violations: Record<Invariant, number>;
  maxLatencyMs: number;
  boundMs: number;
  writeBoundMs: number;
  slackMs: number;
  /** HTTP status → answers; `none` for no answer. */
  statuses: Record<string, number>;
  clients: number;
  durationMs: number;
  /** What happened when (ms since the run began). */
  timeline: string[];
  examples: { invariant: Invariant; message: string }[];
  naive?: boolean;
  concurrency?: string;
}

export function summarise(
  history: readonly Op[],
  judgement: Judgement,
  fields: Pick<
    ScenarioResult,
    'boundMs' | 'writeBoundMs' | 'slackMs' | 'clients' | 'durationMs' | 'timeline'
  >,
): ScenarioResult {
  const statuses: Record<string, number> = {};
  for (const op of history) {
    const key = op.status === null ? 'none' : String(op.status);
    statuses[key] = (statuses[key] ?? 0) + 1;
  }
  const acked = new Set(
    history.filter((op) => op.kind !== 'read' && ok(op)).map((op) => op.value as string),
  );
  return {
    runs: 1,
    ops: history.length,
    acknowledgedWrites: acked.size,
    violations: judgement.violations,
    maxLatencyMs: Math.round(Math.max(0, ...history.map((op) => op.complete - op.invoke))),
    statuses,
    examples: examples(judgement.all),
    ...fields,
  };
}

/** Several runs of one scenario: sums, worst latency, the first runs' examples. */
export function merge(a: ScenarioResult, b: ScenarioResult): ScenarioResult {
  const statuses = { ...a.statuses };
  for (const [k, n] of Object.entries(b.statuses)) statuses[k] = (statuses[k] ?? 0) + n;
  const violations = { ...a.violations };
  for (const i of INVARIANTS) violations[i] += b.violations[i];
  return {
    ...a,
    runs: a.runs + b.runs,
    ops: a.ops + b.ops,
    acknowledgedWrites: a.acknowledgedWrites + b.acknowledgedWrites,
    violations,
    maxLatencyMs: Math.max(a.maxLatencyMs, b.maxLatencyMs),
    statuses,
    durationMs: a.durationMs + b.durationMs,
    timeline: [...a.timeline, ...b.timeline.map((t) => `(run ${a.runs + 1}) ${t}`)],
    examples: [...a.examples, ...b.examples].slice(0, 5),
  };
}

/** One line per scenario, then its examples indented. */
export function formatResult(name: string, r: ScenarioResult): string {
  const counts = INVARIANTS.map((i) => `${i} ${r.violations[i]}`).join(', ');
  const statuses = Object.entries(r.statuses)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, n]) => `${k}:${n}`)
    .join(' ');
  const bound =
    r.writeBoundMs === r.boundMs
      ? `${r.boundMs}+${r.slackMs}`
      : `reads ${r.boundMs}+${r.slackMs}, writes ${r.writeBoundMs}+${r.slackMs}`;
  const line =
    `${name.padEnd(17)} ops ${String(r.ops).padStart(5)}  acked ${String(r.acknowledgedWrites).padStart(4)}  | ${counts} | ` +
    `max ${r.maxLatencyMs} ms (bound ${bound}) | ${statuses}` +
    (r.concurrency ? ` | ${r.concurrency}` : '');
  return [line, ...r.examples.map((e) => `    ${e.invariant}: ${e.message}`)].join('\n');
}
