import type postgres from 'postgres';
import { RegionalError } from '../core/errors.js';

/**
 * What Regional uses of a postgres.js 3.4 query object beyond its public API. A query runs when
 * awaited, by calling its `handler` with itself: Regional gives each query a handler of its own,
 * which decides where it runs (the replica, the primary, a reserved connection) and then hands it
 * to that connection's handler; `resolve` and `reject` are wrapped to hold a result until what
 * came with it (the replica's or the primary's position, read in the same round trip) is known.
 * postgres.js 4 works differently inside: {@link assertSupported} refuses it with a clear error.
 */
export interface QueryInternals {
  handler: (query: QueryInternals) => void;
  resolve: (result: unknown) => void;
  reject: (error: unknown) => void;
  strings: readonly string[];
  args: readonly unknown[];
  tagged: boolean;
  executed: boolean;
  options: { simple?: boolean; prepare?: boolean };
}

export type Query = postgres.PendingQuery<postgres.Row[]> & QueryInternals;

/** A handler: runs a query on some connection. */
export type Handler = (query: QueryInternals) => void;

/** Runs `query` through `handler` now (the query is marked executed, as postgres.js does). */
export function runOn(handler: Handler, query: QueryInternals): void {
  query.executed = true;
  handler(query);
}

/** The handler behind `sql`: that of a query it makes (and never runs). */
export function handlerOf(sql: postgres.Sql<Record<string, unknown>>): Handler {
  return (sql`select 1` as unknown as QueryInternals).handler;
}

/** Throws unless `sql` is a postgres.js whose query objects work as Regional expects (3.4). */
export function assertSupported(sql: postgres.Sql<Record<string, unknown>>): void {
  const probe = sql`select 1` as unknown as Partial<QueryInternals> & { canceller?: unknown };
  const ok =
    typeof probe.handler === 'function' &&
    typeof probe.resolve === 'function' &&
    typeof probe.reject === 'function' &&
    Array.isArray(probe.strings) &&
    'canceller' in probe &&
    probe.executed === false;
  if (!ok) {
    throw new RegionalError(
      'REGIONAL_POSTGRES_VERSION',
      'regional/postgres supports postgres.js 3.4 (the npm package "postgres" ^3.4); the one installed works differently inside (postgres 4.x?). Install postgres@^3.4.',
    );
  }
}

/** True for a query object (a tagged template or `unsafe` query, not a helper). */
export function isQuery(value: unknown): value is QueryInternals {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as QueryInternals).handler === 'function' &&
    Array.isArray((value as QueryInternals).strings)
  );
}

/**
 * The SQL text of a query as written, fragments inlined and values as `$n`: what Regional
 * classifies (helpers such as `sql(object)` add columns and values, never keywords).
 */
export function textOf(query: QueryInternals): string {
  if (!query.tagged) return query.strings[0] ?? '';
  let text = query.strings[0] ?? '';
  for (let i = 0; i < query.args.length; i++) {
    const arg = query.args[i];
    text += isQuery(arg) ? ` ${textOf(arg)} ` : `$${i + 1}`;
    text += query.strings[i + 1] ?? '';
  }
  return text;
}

/** postgres.js's codes for a connection that failed or broke (besides socket errors). */
const CONNECTION_CODES = new Set([
  'CONNECTION_CLOSED',
  'CONNECTION_DESTROYED',
  'CONNECTION_ENDED',
  'CONNECT_TIMEOUT',
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENOTFOUND',
  '57P01',
  '57P02',
  '57P03',
]);

/** True for a connection-level failure, as opposed to an SQL error. */
export function isConnectionFailure(error: unknown): boolean {
  const code = (error as { code?: string } | undefined)?.code;
  return code !== undefined && (CONNECTION_CODES.has(code) || code.startsWith('08'));
}

/** True for a failure before the statement could have been sent. */
export function unsent(error: unknown): boolean {
  const code = (error as { code?: string } | undefined)?.code;
  return (
    code === 'ECONNREFUSED' ||
    code === 'CONNECT_TIMEOUT' ||
    code === 'CONNECTION_ENDED' ||
    code === 'ENOTFOUND'
  );
}
