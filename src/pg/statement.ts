import type pg from 'pg';
import { inspectSql, type StatementInfo } from '../core/classify.js';
import type { Target } from '../core/route.js';

export type { Target };

/** A query as node-postgres takes it: text, or a config object (`text`, `values`, `rowMode`, `types`, `name`). */
export type QueryInput = string | (pg.QueryConfig & { rowMode?: 'array' });

export interface QueryOptions {
  /**
   * For writes: record the commit position so this context's later reads wait until the
   * local replica has it. Default `true`; `false` for writes nobody reads back right away
   * (counters, logs).
   */
  await?: boolean;
  /** Run on this server regardless of what the statement looks like. */
  on?: Target;
  /**
   * What the statement is, when the caller knows from its own query object (ORM
   * integrations): `write` goes to the primary without looking at the text; `read` goes to
   * the replica unless the text locks rows or holds a writing CTE.
   */
  kind?: 'read' | 'write';
}

/** A query config as Regional passes it on. */
export type QueryConfig = pg.QueryConfig & { rowMode?: 'array' };

/**
 * A query given as text and values. node-postgres copies config objects property by property
 * on every query (pg 8.23), which costs more than all of Regional's routing: text queries are
 * handed on as text, through {@link send}.
 */
class TextQuery {
  constructor(
    readonly text: string,
    readonly values?: unknown[],
  ) {}
}

/** Runs `config` on a node-postgres pool or client, as text when it came as text. */
export function send<R extends pg.QueryResultRow>(
  target: { query: pg.Pool['query'] },
  config: pg.QueryConfig,
): Promise<pg.QueryResult<R>> {
  if (config instanceof TextQuery) return target.query<R>(config.text, config.values);
  return target.query<R>(config);
}

/** The query as node-postgres takes it; a `TypeError` naming what is wrong otherwise. */
export function normalize(input: QueryInput, values?: unknown[]): QueryConfig {
  if (typeof input === 'string') return new TextQuery(input, values);
  if (input === null || typeof input !== 'object' || typeof input.text !== 'string') {
    throw new TypeError(
      'RegionalPool.query takes SQL text or a config object with `text`; for cursors and streams use a client from pool.connect({ on })',
    );
  }
  return values === undefined ? input : { ...input, values };
}

/**
 * What a statement is: classified from its text (cached per text), unless the caller's own
 * query object says it writes.
 */
export function statementInfo(text: string, kind: QueryOptions['kind']): StatementInfo {
  const inspected = inspectSql(text);
  return kind === 'write' && inspected.kind === 'read'
    ? { ...inspected, kind: 'write' as const }
    : inspected;
}

/**
 * True if a read can ask for the replica's position in its own round trip: one statement
 * (named or not), as a checked read is a pipeline around exactly one.
 */
export function checksInRoundTrip(info: StatementInfo): boolean {
  return info.statements <= 1;
}
