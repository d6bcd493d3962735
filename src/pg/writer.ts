import type pg from 'pg';
import type { StatementInfo } from '../core/classify.js';
import type { RegionalConfig } from '../core/config.js';
import { type ConsistencyContext, currentContext } from '../core/context.js';
import type { SourceKey } from '../core/route.js';
import type { RouteReason, SourceTelemetry } from '../core/telemetry.js';
import { type CommittedWrite, isConnectionFailure, writeWithCommitLsn } from './commit-lsn.js';
import { primaryError, unsent } from './connections.js';
import { missingForwarderError, type WriteForwarder, type WriteMode } from './forwarding.js';
import type { QueryConfig, QueryOptions } from './statement.js';

export interface WriterOptions {
  config: RegionalConfig;
  primaryPool: pg.Pool;
  key: SourceKey;
  writeMode: WriteMode;
  /** `REGIONAL_QUERY_TIMEOUT_MS`, named in time-out errors. */
  queryTimeoutMs: number;
  telemetry: SourceTelemetry;
}

/**
 * How a pool's writes reach the primary: over its own connection (`direct`), or through a
 * primary-region instance (`forward`, installed by `regional/rpc`), with the commit LSN read in
 * the write's own round trip and recorded in the caller's context. Procedures (`regional/rpc`)
 * run on its connections too.
 *
 * @example
 * const result = await writer.write(config, info); // the context now holds its commit LSN
 */
export class Writer {
  /** Writes sent to the primary (statements and committed transactions). */
  writes = 0;
  private forwarder: WriteForwarder | null = null;

  constructor(private readonly options: WriterOptions) {}

  get config(): RegionalConfig {
    return this.options.config;
  }

  get primaryPool(): pg.Pool {
    return this.options.primaryPool;
  }

  get queryTimeoutMs(): number {
    return this.options.queryTimeoutMs;
  }

  get writeMode(): WriteMode {
    return this.options.writeMode;
  }

  /** True where writes are forwarded rather than sent over a connection of this pool. */
  get forwardsWrites(): boolean {
    const { config, writeMode } = this.options;
    return writeMode === 'forward' && config.mode === 'multi' && !config.isPrimaryRegion;
  }

  /** Installs what carries writes in forward mode (`regional/rpc` does this). */
  install(forwarder: WriteForwarder | null): void {
    this.forwarder = forwarder;
  }

  /** Counts a write (a statement, or a committed transaction) sent to the primary. */
  wrote(reason: RouteReason): void {
    this.writes++;
    this.options.telemetry.routed('primary', reason);
  }

  /** Records a commit position in `context`. */
  record(context: ConsistencyContext, lsn: bigint): void | Promise<void> {
    return this.options.key.record(context, lsn);
  }

  /** A write outside any transaction, on the primary, with its commit LSN recorded. */
  async write(
    config: QueryConfig,
    info: StatementInfo,
    options?: QueryOptions,
    reason: RouteReason = writeReason(info),
  ): Promise<pg.QueryResult | pg.QueryResult[]> {
    const context = currentContext();
    const record = context.startWrite(options?.await !== false);
    let committed: CommittedWrite;
    if (this.forwardsWrites) {
      if (!this.forwarder) throw missingForwarderError();
      committed = await this.forwarder.forward(config, info.statements);
    } else {
      committed = await this.writeDirect(config, info.statements);
    }
    this.wrote(reason);
    if (committed.lsn !== null && record) await this.record(context, committed.lsn);
    return committed.result;
  }

  /**
   * Runs a write over this pool's own connection to the primary and returns result and commit
   * LSN, recording nothing: the forwarded-statement path of `regional/rpc` uses it.
   */
  writeDirect(config: QueryConfig, statements: number): Promise<CommittedWrite> {
    return this.onPrimary('write', (client) => writeWithCommitLsn(client, config, statements));
  }

  /**
   * Runs `work` on a connection to the primary. A connection found broken before anything was
   * sent (the server restarted while it sat idle) is replaced once; any other connection failure
   * becomes a `PrimaryUnavailableError` (or `QueryTimeoutError`) saying whether the statement
   * was sent, with the real cause.
   */
  async onPrimary<T>(
    operation: 'read' | 'write',
    work: (client: pg.PoolClient) => Promise<T>,
  ): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const client = await this.connect(operation);
      try {
        const result = await work(client);
        client.release();
        return result;
      } catch (error) {
        const broken = isConnectionFailure(error);
        client.release(broken ? (error as Error) : undefined);
        if (broken && attempt === 1 && unsent(error)) continue;
        throw this.error(error, operation, client);
      }
    }
  }

  /** A connection to the primary; failing to get one is a `PrimaryUnavailableError` (nothing was sent). */
  async connect(operation: 'read' | 'write' = 'write'): Promise<pg.PoolClient> {
    try {
      return await this.options.primaryPool.connect();
    } catch (error) {
      throw primaryError(error, operation, {
        sent: false,
        queryTimeoutMs: this.options.queryTimeoutMs,
      });
    }
  }

  /** `error`, as the Regional error it is when it says the primary or the connection failed. */
  error(error: unknown, operation: 'read' | 'write', client?: pg.ClientBase): unknown {
    return primaryError(error, operation, { client, queryTimeoutMs: this.options.queryTimeoutMs });
  }
}

/** Why a write went to the primary: it writes, or it locks. */
export function writeReason(info: StatementInfo): RouteReason {
  return info.lock ? 'lock' : 'write';
}
