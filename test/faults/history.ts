/** What the fault suite records and judges: one entry per HTTP request a client made. */

export type OpKind = 'write' | 'call' | 'read';

export interface Op {
  client: string;
  /** The client's region: the edge entry it used. */
  region: string;
  kind: OpKind;
  /** The value a write or call inserts. */
  value?: string;
  /** A call's idempotency key (its procedure call id), the same on every attempt. */
  key?: string;
  /** A call's attempt, from 1. */
  attempt?: number;
  /** When the request was sent and when its answer (or error) was complete: ms since the run began. */
  invoke: number;
  complete: number;
  /** HTTP status, `null` when no answer came (network error, time-out). */
  status: number | null;
  /** `x-regional-region`: the region whose instance ran the handler (absent: the edge answered). */
  servedBy?: string;
  serverTiming?: string;
  /** The answer carried a consistency token (`x-regional-token`): the client's jar got a new one. */
  token?: boolean;
  /** The answer's body, parsed as JSON when it is JSON. */
  body?: unknown;
  /** The raw body when it is not JSON. */
  text?: string;
  /** A successful read's values of this client, and the table's largest id. */
  mine?: string[];
  maxId?: number;
  /** Why no answer came. */
  error?: string;
  /** No answer within the client's time-out: a hang. */
  timedOut?: boolean;
}

/** The primary's content after healing. */
export interface FinalState {
  items: { value: string; client: string }[];
  audit: string[];
}

/** An app instance that exited by itself (from `LocalApps.exits()`). */
export interface Crash {
  region: string;
  code: number | null;
  signal: string | null;
  /** ms since the run began. */
  at: number;
  lastOutput: string;
}

export const ok = (op: Op): boolean => op.status !== null && op.status >= 200 && op.status < 300;

/** A one-line account of an operation, for examples. */
export function describeOp(op: Op): string {
  const what =
    op.kind === 'read'
      ? 'GET /items'
      : `${op.kind === 'write' ? 'POST /items' : 'POST /calls'} ${op.value}${
          op.key ? ` key ${op.key} attempt ${op.attempt}` : ''
        }`;
  const answer =
    op.status === null
      ? `no answer (${op.error ?? 'unknown'})`
      : `${op.status}${op.servedBy ? ` from ${op.servedBy}` : ' from the edge'} ${short(op)}`;
  const token = op.token ? ' +token' : '';
  return `${op.client}@${op.region} ${what} [${ms(op.invoke)}–${ms(op.complete)}] → ${answer}${token}`;
}

const ms = (t: number) => `${(t / 1000).toFixed(2)}s`;

function short(op: Op): string {
  if (op.kind === 'read' && op.mine)
    return `mine=${op.mine.length} values, maxId=${op.maxId}${
      op.serverTiming ? ` (server-timing: ${op.serverTiming})` : ''
    }`;
  const text = op.text ?? JSON.stringify(op.body ?? '');
  return text.length > 300 ? `${text.slice(0, 300)}…` : text;
}
