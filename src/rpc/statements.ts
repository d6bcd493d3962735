import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { RegionalError } from '../core/errors.js';
import { formatLsn, parseLsn } from '../core/lsn.js';
import { inspectSql } from '../pg/classify.js';
import type { CommittedWrite } from '../pg/commit-lsn.js';
import type { WriteForwarder } from '../pg/forwarding.js';
import type { RegionalPool } from '../pg/pool.js';
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

type Config = pg.QueryConfig & { rowMode?: 'array' };

/** What a forwarded statement's result looks like on the wire: node-postgres's fields, as plain data. */
function plainResult(result: pg.QueryResult): pg.QueryResult {
  return {
    command: result.command,
    rowCount: result.rowCount,
    oid: result.oid,
    rows: result.rows,
    fields: result.fields.map((f) => ({ ...f })),
  };
}

export interface ForwarderDeps {
  pool: RegionalPool;
  transport: Transport;
  target: () => Target;
  path: string;
  timeoutMs: number;
  fallback: 'direct' | 'off';
  onForward(): void;
  onFallback(error: InstancesUnreachableError): void;
}

/** The pool's forwarder in a replica region: sends each write to the primary region. */
export function statementForwarder(deps: ForwarderDeps): WriteForwarder {
  return {
    async forward(config: Config, statements: number): Promise<CommittedWrite> {
      if ((config as { types?: unknown }).types) {
        throw new RegionalError(
          'REGIONAL_FORWARD_TYPES',
          'A query with its own `types` cannot be forwarded (type parsers are functions); the primary-region instance parses results with its own types.',
        );
      }
      const id = randomUUID();
      const at = Date.now();
      const target = deps.target();
      const values = encodeValue(config.values, 'the parameters of a forwarded statement');
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
              rowMode: config.rowMode ?? null,
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
        return deps.pool.writeDirect(config, statements);
      }
      const result = decodeValue(envelope.result) as pg.QueryResult | pg.QueryResult[];
      return { result, lsn: envelope.lsn === null ? null : parseLsn(envelope.lsn) };
    },
  };
}

/** The primary-region side: runs a forwarded write with its commit LSN. */
export async function runForwardedStatement(
  pool: RegionalPool,
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
  const committed = await pool.writeDirect(
    { text: call.text, values, ...(call.rowMode ? { rowMode: call.rowMode } : {}) },
    call.statements,
  );
  const result = Array.isArray(committed.result)
    ? committed.result.map(plainResult)
    : plainResult(committed.result);
  return {
    encoded: encodeValue(result, 'the result of a forwarded statement'),
    lsn: committed.lsn === null ? null : formatLsn(committed.lsn),
    replayed: false,
  };
}
