/**
 * The fault suite's checker: pure functions over a history of client operations, the final
 * state read from the primary after healing, and the app instances' crashes. Each invariant
 * is one of the contract's promises (/work/shared/DESIGN.md) seen from the client.
 */
import { type Crash, describeOp, type FinalState, type Op, ok } from './history.js';

export const INVARIANTS = [
  'lostWrite',
  'duplicate',
  'readYourWrites',
  'monotonicReads',
  'boundedWait',
  'errorQuality',
  'appCrash',
  'unavailable',
] as const;
export type Invariant = (typeof INVARIANTS)[number];

export interface Violation {
  invariant: Invariant;
  message: string;
  /** Violations with the same kind share it: examples show each kind before repeating one. */
  kind?: string;
}

export interface CheckOptions {
  /** The longest a read's answer may take in this scenario (what the configuration promises)… */
  boundMs: number;
  /** …and a write's or call's (default `boundMs`): a cut write path waits for time-outs… */
  writeBoundMs?: number;
  /** …plus this much for the machine's own noise. */
  slackMs: number;
  crashes?: readonly Crash[];
  /** Strings no answer may show (the database password, the shared secret). */
  secrets?: readonly string[];
  /** Nothing is broken in this scenario: every request must succeed (`unavailable` otherwise). */
  expectAvailable?: boolean;
}

export interface Judgement {
  violations: Record<Invariant, number>;
  /** Every violation found, in invariant order. */
  all: Violation[];
}

/** Judges one run. */
export function check(history: readonly Op[], final: FinalState, options: CheckOptions): Judgement {
  const all = [
    ...lostWrites(history, final),
    ...duplicates(history, final),
    ...readYourWrites(history),
    ...monotonicReads(history),
    ...boundedWait(
      history,
      options.boundMs + options.slackMs,
      (options.writeBoundMs ?? options.boundMs) + options.slackMs,
    ),
    ...errorQuality(history, options.secrets ?? []),
    ...(options.expectAvailable ? unavailable(history) : []),
    ...(options.crashes ?? []).map(
      (c): Violation => ({
        invariant: 'appCrash',
        message: `the ${c.region} instance exited by itself at ${(c.at / 1000).toFixed(2)}s (${
          c.signal ?? `code ${c.code}`
        }); its output: ${crashLines(c.lastOutput)}`,
        kind: c.region,
      }),
    ),
  ];
  const violations = Object.fromEntries(INVARIANTS.map((i) => [i, 0])) as Record<Invariant, number>;
  for (const v of all) violations[v.invariant]++;
  return { violations, all };
}

/** The lines of a crash's output that say what happened (else its last ones). */
function crashLines(output: string): string {
  const lines = output.split('\n').filter((l) => l.trim() !== '');
  const telling = lines.filter((l) => /\b\w*Error\b|Unhandled|uncaught/i.test(l));
  return (telling.length > 0 ? telling.slice(0, 3) : lines.slice(-5)).join(' | ');
}

/**
 * Up to `max` examples, taken in turn from each invariant that has some; within one, each
 * kind of violation before a second of the same kind.
 */
export function examples(all: readonly Violation[], max = 5): Violation[] {
  const queues = INVARIANTS.map((i) => {
    const mine = all.filter((v) => v.invariant === i);
    const seen = new Set<string>();
    const firsts = mine.filter((v) => {
      const kind = v.kind ?? v.message;
      if (seen.has(kind)) return false;
      seen.add(kind);
      return true;
    });
    return [...firsts, ...mine.filter((v) => !firsts.includes(v))];
  });
  const out: Violation[] = [];
  for (let round = 0; out.length < max && queues.some((q) => q.length > round); round++) {
    for (const queue of queues) {
      const next = queue[round];
      if (next && out.length < max) out.push(next);
    }
  }
  return out;
}

const acknowledged = (op: Op) => op.kind !== 'read' && ok(op) && op.value !== undefined;

/** An acknowledged write or call whose value is not on the primary after healing. */
export function lostWrites(history: readonly Op[], final: FinalState): Violation[] {
  const present = new Set(final.items.map((i) => i.value));
  const reported = new Set<string>();
  return history.flatMap((op) => {
    const value = op.value as string;
    if (!acknowledged(op) || present.has(value) || reported.has(value)) return [];
    reported.add(value);
    return [
      {
        invariant: 'lostWrite',
        message: `acknowledged, then not on the primary: ${describeOp(op)}`,
        kind: op.kind,
      },
    ];
  });
}

/** A value inserted more than once, or a call's item without its audit row (or the reverse). */
export function duplicates(history: readonly Op[], final: FinalState): Violation[] {
  const count = (values: readonly string[]) => {
    const counts = new Map<string, number>();
    for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
    return counts;
  };
  const items = count(final.items.map((i) => i.value));
  const audit = count(final.audit);
  const calls = new Set(history.flatMap((op) => (op.kind === 'call' ? [op.value as string] : [])));
  const out: Violation[] = [];
  for (const value of new Set([...items.keys(), ...audit.keys()])) {
    const n = items.get(value) ?? 0;
    const a = audit.get(value) ?? 0;
    // Every audit row belongs to a call: a value with one is a call's, asked for or not.
    const isCall = calls.has(value) || a > 0;
    if (n <= 1 && a <= 1 && (!isCall || n === a)) continue;
    const attempts = history.filter((op) => op.value === value && op.kind !== 'read');
    out.push({
      invariant: 'duplicate',
      message: `${value}: ${n} item row(s), ${a} audit row(s)${isCall ? ' (a call: 1 and 1 expected)' : ''}; requests: ${
        attempts.map(describeOp).join(' ; ') || 'none'
      }`,
    });
  }
  return out;
}

/**
 * A successful read by client c, sent after an acknowledged write of c had completed (in any
 * region, in any earlier request), that does not show that write.
 */
export function readYourWrites(history: readonly Op[]): Violation[] {
  const out: Violation[] = [];
  for (const [, ops] of byClient(history)) {
    const writes = ops.filter(acknowledged);
    for (const read of ops) {
      if (read.kind !== 'read' || !ok(read) || !read.mine) continue;
      const seen = new Set(read.mine);
      const missing = writes.filter(
        (w) => w.complete < read.invoke && !seen.has(w.value as string),
      );
      if (missing.length === 0) continue;
      out.push({
        invariant: 'readYourWrites',
        kind: read.region,
        message: `${describeOp(read)} misses ${missing.length} acknowledged write(s) of its client, e.g. ${describeOp(missing[missing.length - 1] as Op)}`,
      });
    }
  }
  return out;
}

/**
 * A client's successful read showing older data than one of its earlier reads: a smaller
 * largest id, or one of the values it had already seen missing.
 */
export function monotonicReads(history: readonly Op[]): Violation[] {
  const out: Violation[] = [];
  for (const [, ops] of byClient(history)) {
    let maxId = 0;
    let maxFrom: Op | null = null;
    const seen = new Map<string, Op>();
    for (const read of [...ops].sort((a, b) => a.invoke - b.invoke)) {
      if (read.kind !== 'read' || !ok(read) || !read.mine) continue;
      const current = new Set(read.mine);
      const lost = [...seen.keys()].filter((v) => !current.has(v));
      const id = read.maxId ?? 0;
      if (id < maxId || lost.length > 0) {
        const why =
          id < maxId
            ? `maxId ${id} < ${maxId} seen by ${describeOp(maxFrom as Op)}`
            : `${lost.length} value(s) seen before are gone, e.g. ${lost[0]} seen by ${describeOp(seen.get(lost[0] as string) as Op)}`;
        out.push({
          invariant: 'monotonicReads',
          message: `${describeOp(read)}: ${why}`,
          kind: `${read.region} ${id < maxId ? 'maxId' : 'value'}`,
        });
      }
      if (id > maxId) {
        maxId = id;
        maxFrom = read;
      }
      for (const v of read.mine) if (!seen.has(v)) seen.set(v, read);
    }
  }
  return out;
}

/** An answer (success or error) that took longer than the bound of its kind, or never came. */
export function boundedWait(
  history: readonly Op[],
  readLimitMs: number,
  writeLimitMs = readLimitMs,
): Violation[] {
  return history.flatMap((op) => {
    const took = op.complete - op.invoke;
    const limitMs = op.kind === 'read' ? readLimitMs : writeLimitMs;
    if (!op.timedOut && took <= limitMs) return [];
    const why = op.timedOut
      ? 'no answer at all (a hang)'
      : `${Math.round(took)} ms > ${limitMs} ms`;
    return [
      {
        invariant: 'boundedWait',
        message: `${why}: ${describeOp(op)}`,
        kind: `${op.kind} ${op.region} ${op.status}`,
      },
    ];
  });
}

const STACK = /(?:\n|\\n)\s+at \S/;
const INTERNAL_URL =
  /\b(postgres(ql)?|redis):\/\/|https?:\/\/(127\.0\.0\.1|localhost|\[::1\])(:\d+)?/i;

/**
 * An error answer of the app that is not JSON with `error.code`, or any answer showing a stack
 * trace, an internal URL or a secret. Answers of the edge itself (no `x-regional-region`: the
 * stand-in for the platform's proxy) are judged only for what they show, not for their form.
 */
export function errorQuality(history: readonly Op[], secrets: readonly string[]): Violation[] {
  return history.flatMap((op) => {
    if (op.status === null) return [];
    const text = op.text ?? JSON.stringify(op.body) ?? '';
    const leaks = [
      STACK.test(text) || /"stack"\s*:/.test(text) ? 'a stack trace' : null,
      INTERNAL_URL.test(text) ? `an internal URL (${INTERNAL_URL.exec(text)?.[0]}…)` : null,
      secrets.some((s) => s.length >= 8 && text.includes(s)) ? 'a secret' : null,
    ].filter((x) => x !== null);
    const fromApp = op.servedBy !== undefined;
    const code = (op.body as { error?: { code?: unknown } } | undefined)?.error?.code;
    const badForm = fromApp && !ok(op) && typeof code !== 'string';
    if (leaks.length === 0 && !badForm) return [];
    const why = [
      ...(badForm ? ['not JSON with error.code'] : []),
      ...leaks.map((l) => `shows ${l}`),
    ];
    return [
      {
        invariant: 'errorQuality',
        message: `${why.join(', ')}: ${describeOp(op)}`,
        kind: `${op.status} ${op.servedBy ?? 'edge'} ${op.kind} ${why.join(', ')}`,
      },
    ];
  });
}

/**
 * In a scenario without a fault, a request that did not succeed: clear errors are not enough
 * when nothing is broken (a route that always fails would otherwise pass every other check).
 */
export function unavailable(history: readonly Op[]): Violation[] {
  return history.flatMap((op) =>
    ok(op)
      ? []
      : [
          {
            invariant: 'unavailable' as const,
            message: `failed with nothing broken: ${describeOp(op)}`,
            kind: `${op.kind} ${op.region} ${op.status}`,
          },
        ],
  );
}

function byClient(history: readonly Op[]): Map<string, Op[]> {
  const map = new Map<string, Op[]>();
  for (const op of history) {
    const list = map.get(op.client) ?? [];
    list.push(op);
    map.set(op.client, list);
  }
  return map;
}
