/**
 * The wire protocol between instances. A call is `POST <basePath>/rpc/<name>` (a procedure)
 * or `POST <basePath>/statement` (a forwarded write) with a JSON envelope; values inside are
 * devalue text (see codec.ts). Every request is signed (`x-regional-signature`), and the
 * envelope — which the signature covers — names the protocol version it is written in.
 *
 * Versions: an instance speaks every version from {@link MIN_PROTOCOL_VERSION} to
 * {@link PROTOCOL_VERSION}. A caller writes its newest; an instance that does not speak it
 * answers 400 with its own range in {@link VERSIONS_HEADER}, and the caller writes again in
 * the newest version both speak (the one extra round trip happens only while a deploy mixes
 * versions, and the answer is remembered per target). Where the ranges do not meet, both
 * sides name both ranges in the error. Fields an instance does not know are ignored, so a
 * version can add fields without breaking the one before.
 */

/** The newest protocol version this build speaks. */
export const PROTOCOL_VERSION = 1;
/** The oldest protocol version this build still speaks. */
export const MIN_PROTOCOL_VERSION = 1;

/** Response header naming the versions the answering instance speaks, as `min-max`. */
export const VERSIONS_HEADER = 'x-regional-rpc-versions';
export const CONTENT_TYPE = 'application/json';

/** A range of protocol versions. */
export interface VersionRange {
  min: number;
  max: number;
}

export const formatRange = (range: VersionRange) =>
  range.min === range.max ? `${range.max}` : `${range.min}–${range.max}`;

/** Parses a `min-max` header value; `null` if absent or malformed. */
export function parseRange(value: string | null | undefined): VersionRange | null {
  const match = /^(\d{1,4})-(\d{1,4})$/.exec(value?.trim() ?? '');
  if (!match) return null;
  const min = Number(match[1]);
  const max = Number(match[2]);
  return min <= max ? { min, max } : null;
}

/** The newest version both ranges contain, or `null`. */
export function commonVersion(a: VersionRange, b: VersionRange): number | null {
  const version = Math.min(a.max, b.max);
  return version >= Math.max(a.min, b.min) ? version : null;
}

/** What every request envelope holds. */
export interface CallEnvelope {
  /** The protocol version the envelope is written in. */
  v: number;
  /** The call id: a retry carries the same one, so it runs at most once. */
  id: string;
  /** When the call was first made (ms since the epoch): calls older than the retention are refused. */
  at: number;
  /** The region the caller meant to reach: an instance elsewhere refuses the call (421). */
  region: string | null;
}

/** A procedure call: `POST <basePath>/rpc/<name>`. */
export interface ProcedureEnvelope extends CallEnvelope {
  /** The input, as devalue text. */
  input: string;
}

/** A forwarded write: `POST <basePath>/statement`. */
export interface StatementEnvelope extends CallEnvelope {
  text: string;
  /** The parameters as node-postgres prepared them (text, Buffers, null), as devalue text. */
  values: string;
  /** How many statements `text` holds. */
  statements: number;
}

/** A successful answer. */
export interface ResultEnvelope {
  v: number;
  /** The result, as devalue text. */
  result: string;
  /** The commit LSN (`X/Y`), or `null` when nothing was written. */
  lsn: string | null;
  /** The database the LSN belongs to (`pg:<system identifier>`). */
  source: string | null;
  /** True when the call had run before and this is its recorded result. */
  replayed: boolean;
}

/** An error as it travels: what the caller rebuilds its error from. */
export interface WireError {
  name: string;
  message: string;
  /** Postgres SQLSTATE, or a Regional error code. */
  code?: string;
  detail?: string;
  constraint?: string;
  /** Only with the `debug` option. */
  stack?: string;
  /** Why a signature was refused (`stale`, `replayed`, `bad-mac`, …). */
  reason?: string;
}

export interface ErrorEnvelope {
  v: number;
  error: WireError;
}

const CALL_ID = /^[A-Za-z0-9_-]{8,128}$/;

/** True for a call id this protocol accepts (8–128 of `A-Z a-z 0-9 _ -`; a UUID is one). */
export const isCallId = (id: unknown): id is string => typeof id === 'string' && CALL_ID.test(id);

/** A malformed request: answered with 400. */
export class MalformedCallError extends Error {
  override name = 'MalformedCallError';
}

function field<T>(
  object: Record<string, unknown>,
  name: string,
  check: (v: unknown) => boolean,
): T {
  const value = object[name];
  if (!check(value)) throw new MalformedCallError(`the envelope's "${name}" is missing or wrong`);
  return value as T;
}

const isString = (v: unknown) => typeof v === 'string';
const isTime = (v: unknown) => Number.isSafeInteger(v) && (v as number) > 0;
const isRegion = (v: unknown) => v === null || (typeof v === 'string' && v.length <= 64);

/** Reads the version of a request body, before anything else of it. */
export function envelopeVersion(body: string): {
  version: number;
  envelope: Record<string, unknown>;
} {
  let envelope: unknown;
  try {
    envelope = JSON.parse(body);
  } catch {
    throw new MalformedCallError('the body is not JSON');
  }
  if (!envelope || typeof envelope !== 'object' || Array.isArray(envelope))
    throw new MalformedCallError('the body is not a JSON object');
  const version = (envelope as { v?: unknown }).v;
  if (!Number.isSafeInteger(version) || (version as number) < 1)
    throw new MalformedCallError('the envelope names no protocol version ("v")');
  return { version: version as number, envelope: envelope as Record<string, unknown> };
}

function readCall(envelope: Record<string, unknown>, version: number): CallEnvelope {
  return {
    v: version,
    id: field(envelope, 'id', isCallId),
    at: field(envelope, 'at', isTime),
    region: field(envelope, 'region', isRegion),
  };
}

/** Reads a procedure envelope of version 1. */
export function readProcedureEnvelope(
  envelope: Record<string, unknown>,
  version: number,
): ProcedureEnvelope {
  return { ...readCall(envelope, version), input: field(envelope, 'input', isString) };
}

/** Reads a statement envelope of version 1. */
export function readStatementEnvelope(
  envelope: Record<string, unknown>,
  version: number,
): StatementEnvelope {
  return {
    ...readCall(envelope, version),
    text: field(envelope, 'text', isString),
    values: field(envelope, 'values', isString),
    statements: field(envelope, 'statements', (v) => Number.isSafeInteger(v) && (v as number) >= 1),
  };
}
