import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import pgUtils from 'pg/lib/utils.js';
import { inspectSql } from '../core/classify.js';
import { RegionalError } from '../core/errors.js';
import { formatLsn, parseLsn } from '../core/lsn.js';
import type { CommittedWrite } from '../pg/commit-lsn.js';
import type { WriteForwarder } from '../pg/forwarding.js';
import type { Writer } from '../pg/writer.js';
import { decodeValue, encodeValue } from './codec.js';
import { InstancesUnreachableError } from './errors.js';
import type { StatementEnvelope } from './protocol.js';
import type { Executed } from './server.js';
import { isTransportFailure, isUndelivered, type Target, type Transport } from './transport.js';

/**
 * Statement forwarding: in a replica region with `writes: 'forward'`, a single write statement
 * travels over the signed channel to a primary-region instance, which runs it next to the
 * primary with its commit LSN captured in the same round trip (`writeWithCommitLsn`) and
 * answers with result and LSN.
 *
 * A forwarded statement runs at most once, like a direct write: it is sent again only after
 * a failure that shows it never reached an instance (connection refused, no address, connect
 * timeout). After any other failure its outcome is unknown and the caller gets an error
 * saying so — as with a direct connection that breaks during a COMMIT. For exactly-once
 * with retries, use a procedure.
 */

type Config = pg.QueryConfig & { rowMode?: 'array'; binary?: boolean };

/**
 * A result as it travels: rows as the text Postgres sent, parsed by the caller with its own
 * type parsers — the query's `types` (as Drizzle gives), else the pool's — exactly as over a
 * direct connection.
 */
interface WireResult {
  command: string;
  rowCount: number | null;
  oid: number;
  fields: pg.FieldDef[];
  rows: (string | null)[][];
}

/** Type parsers that leave every value as Postgres sent it. */
const RAW_TYPES = { getTypeParser: () => (value: string) => value };

function toWire(result: pg.QueryResult): WireResult {
  return {
    command: result.command,
    rowCount: result.rowCount,
    oid: result.oid,
    // node-postgres's fields are class instances: sent as plain data.
    fields: result.fields.map((f) => ({ ...f })),
    rows: result.rows as unknown as (string | null)[][],
  };
}

type TypeParsers = {
  getTypeParser(oid: number, format?: 'text' | 'binary'): (v: string) => unknown;
};

function fromWire(
  wire: WireResult,
  rowMode: 'array' | undefined,
  types: TypeParsers,
): pg.QueryResult {
  const parsers = wire.fields.map((f) => types.getTypeParser(f.dataTypeID, 'text'));
  const parse = (value: string | null, i: number) =>
    value === null ? null : (parsers[i] as (v: string) => unknown)(value);
  const rows = wire.rows.map((raw) => {
    if (rowMode === 'array') return raw.map(parse);
    const row: Record<string, unknown> = {};
    wire.fields.forEach((field, i) => {
      row[field.name] = parse(raw[i] ?? null, i);
    });
    return row;
  });
  return { ...wire, rows } as pg.QueryResult;
}

export interface ForwarderDeps {
  /** The pool's writer, for the direct fallback. */
  writer: Writer;
  transport: Transport;
  target: () => Target;
  path: string;
  timeoutMs: number;
  fallback: 'direct' | 'off';
  /** The type parsers of the pool's connections, for queries without their own. */
  types(): unknown;
  onForward(): void;
  onFallback(error: InstancesUnreachableError): void;
}

/** The pool's forwarder in a replica region: sends each write to the primary region. */
export function statementForwarder(deps: ForwarderDeps): WriteForwarder {
  return {
    async forward(config: Config, statements: number): Promise<CommittedWrite> {
      if (config.binary) {
        throw new RegionalError(
          'REGIONAL_FORWARD_BINARY',
          'A query with `binary: true` cannot be forwarded; forwarded results travel as text.',
        );
      }
      const id = randomUUID();
      const at = Date.now();
      const target = deps.target();
      // Serialised here, as node-postgres would before sending them: Dates, arrays, JSON and
      // objects with toPostgres() become what a direct connection would have sent.
      const prepared = config.values?.map((value) => pgUtils.prepareValue(value));
      const values = encodeValue(prepared, 'the parameters of a forwarded statement');
      deps.onForward();
      let envelope: Awaited<ReturnType<Transport['send']>>;
      try {
        envelope = await deps.transport.send(target, {
          path: deps.path,
          id,
          what: 'a forwarded statement',
          procedure: 'statement',
          timeoutMs: deps.timeoutMs,
          encode: (v) =>
            JSON.stringify({
              v,
              id,
              at,
              region: target.region,
              text: config.text,
              values,
              statements,
            } satisfies StatementEnvelope),
          retryable: isUndelivered,
          unretryable: (error) =>
            isTransportFailure(error)
              ? new RegionalError(
                  'REGIONAL_WRITE_OUTCOME_UNKNOWN',
                  `A forwarded write to ${target.region} (${target.label}) failed after it may have been delivered (${(error as Error).message}); ` +
                    'it ran at most once but whether it ran is unknown. Writes that must be retried safely belong in a procedure.',
                  { cause: error },
                )
              : (error as Error),
        });
      } catch (error) {
        if (!(error instanceof InstancesUnreachableError) || deps.fallback !== 'direct')
          throw error;
        // Nothing reached an instance: run it over this pool's own connection instead.
        deps.onFallback(error);
        return deps.writer.writeDirect(config, statements);
      }
      const wire = decodeValue(envelope.result) as WireResult | WireResult[];
      const types = (config.types ?? deps.types()) as TypeParsers;
      const result = Array.isArray(wire)
        ? wire.map((w) => fromWire(w, config.rowMode, types))
        : fromWire(wire, config.rowMode, types);
      return { result, lsn: envelope.lsn === null ? null : parseLsn(envelope.lsn) };
    },
  };
}

/** The primary-region side: runs a forwarded write with its commit LSN. */
export async function runForwardedStatement(
  writer: Writer,
  call: StatementEnvelope,
): Promise<Executed> {
  if (inspectSql(call.text).control) {
    throw new RegionalError(
      'REGIONAL_FORWARD_CONTROL',
      'Transaction control (BEGIN, COMMIT, SAVEPOINT, …) cannot be forwarded: a forwarded statement runs in a transaction of its own.',
    );
  }
  const values = decodeValue(call.values);
  if (values !== undefined && !Array.isArray(values)) {
    throw new RegionalError(
      'REGIONAL_MALFORMED',
      'The parameters of a forwarded statement are not an array.',
    );
  }
  // Raw text in arrays: the caller parses them with its own types, into its own row shape.
  const committed = await writer.writeDirect(
    { text: call.text, values, rowMode: 'array', types: RAW_TYPES },
    call.statements,
  );
  const result = Array.isArray(committed.result)
    ? committed.result.map(toWire)
    : toWire(committed.result);
  return {
    encoded: encodeValue(result, 'the result of a forwarded statement'),
    lsn: committed.lsn === null ? null : formatLsn(committed.lsn),
    replayed: false,
  };
}
