import postgres from 'postgres';
import { inspectSql, type StatementInfo } from '../core/classify.js';
import {
  loadConfig,
  type RegionalConfig,
  type RegionalOptions,
  redactUrl,
} from '../core/config.js';
import { ConfigError } from '../core/errors.js';
import { formatLsn, parseLsn } from '../core/lsn.js';
import { ReplicaRoute, SourceKey, sourceStats } from '../core/route.js';
import type { ReplicatedSource } from '../core/source.js';
import { type LagSample, SourceTelemetry } from '../core/telemetry.js';
import type { ReplayTracker, ReplayTrackerStats } from '../core/tracker.js';
import { type LagRow, lagSample, REPLICA_LAG_SQL, replayLsnPoller } from '../pg/replay-poller.js';
import { Dispatcher } from './dispatch.js';
import { assertSupported, type QueryInternals, textOf } from './queries.js';
import { begin, reserve } from './transaction.js';

type Types = Record<string, unknown>;
/** How long `end()` lets running queries finish before it closes their connections. */
const END_TIMEOUT_SECONDS = 5;
/** postgres.js options, without what Regional sets itself (the URL). */
export type PostgresOptions = Omit<
  postgres.Options<Record<string, postgres.PostgresType>>,
  'host' | 'port' | 'database' | 'user' | 'username' | 'pass' | 'password'
>;

export interface RegionalPostgresOptions extends RegionalOptions {
  /** postgres.js options for both connection pools (`max`, `ssl`, `types`, `transform`, …). */
  postgres?: PostgresOptions;
  /** postgres.js options for the primary's pool only. */
  primary?: PostgresOptions;
  /** postgres.js options for the replica's pool only. */
  replica?: PostgresOptions;
  /** An already resolved configuration (otherwise read from options and the environment). */
  config?: RegionalConfig;
  /** Receives warnings (a region without a replica, a replica going away). Default: `console.warn`. */
  onWarning?: (message: string, error?: unknown) => void;
}

/** Counters since the database was made (the same as `RegionalPool`'s). */
export interface RegionalPostgresStats {
  replicaReads: number;
  primaryReads: number;
  writes: number;
  readOnlyRetries: number;
  waitTimeouts: number;
  replicaFailures: number;
  replicaRestarts: number;
  checkedReads: number;
  checkedReadsBehind: number;
  tracker: ReplayTrackerStats | null;
}

/**
 * postgres.js with Regional's routing: `db.sql` is the `sql` you know — tagged templates,
 * `sql.unsafe`, `sql.begin`, savepoints, `sql.reserve`, `sql.end` and the helpers — and each
 * query runs where it belongs: reads on this region's replica after this context's writes (the
 * replica's position asked in the read's own round trip when it is not known to have them),
 * writes on the primary with their commit position read right behind them and recorded. The
 * same bounds, policies, fallbacks and counters as `RegionalPool`'s; pass the database (not
 * `sql`) to the HTTP layer's `sources`.
 *
 * Writes through `sql.unsafe` with parameters are prepared statements unless told otherwise
 * (`{ prepare: false }`): postgres.js sends an unprepared parameterised statement in two round
 * trips, and the commit position could only follow in a third.
 *
 * @example
 * import { RegionalPostgres } from 'regional/postgres';
 *
 * const db = new RegionalPostgres(); // PRIMARY_REGION, REGION, DATABASE_URL, DATABASE_REPLICA_URL
 * const { sql } = db;
 * await sql`insert into posts ${sql({ body: 'hello' })}`; // primary
 * const posts = await sql`select * from posts`; // the local replica, which has the insert
 * await sql.begin(async (tx) => {
 *   await tx`update topics set posts = posts + 1 where id = ${1}`;
 * });
 */
export class RegionalPostgres implements ReplicatedSource {
  readonly config: RegionalConfig;
  /** The routed `sql`. */
  readonly sql: postgres.Sql<Types>;
  /** postgres.js on the primary, for what Regional does not cover. */
  readonly primary: postgres.Sql<Types>;
  /** postgres.js on this region's replica (`null` where reads go to the primary). */
  readonly replica: postgres.Sql<Types> | null;
  readonly #key: SourceKey;
  readonly #route: ReplicaRoute | null;
  readonly #dispatcher: Dispatcher;
  readonly #poller: ReturnType<typeof replayLsnPoller> | null;
  readonly #options: PostgresOptions;
  readonly #telemetry: SourceTelemetry;

  constructor(options: RegionalPostgresOptions = {}) {
    const config = options.config ?? loadConfig(options);
    if (process.env.REGIONAL_WRITES === 'forward') {
      // Forwarded writes travel as node-postgres statements to a primary-region RegionalPool.
      throw new ConfigError(
        'REGIONAL_WRITES',
        'is "forward", which regional/pg (RegionalPool) supports; regional/postgres sends writes over its own connections to the primary. Unset it, or set "direct"',
      );
    }
    this.config = config;
    const warn =
      options.onWarning ?? ((message, error) => console.warn(`[regional] ${message}`, error ?? ''));
    for (const warning of config.warnings) warn(warning);

    this.#options = { ...options.postgres };
    this.primary = postgres(config.databaseUrl, { ...options.postgres, ...options.primary });
    assertSupported(this.primary);
    this.#key = new SourceKey(() => this.#nameSource());
    const replicaUrl = config.replicaUrl;
    const telemetry = new SourceTelemetry({
      system: 'postgresql',
      region: config.region ?? 'local',
      lag: () => this.#lag(),
      urls: { primary: config.databaseUrl, replica: replicaUrl },
      replicaUsable: replicaUrl ? () => this.#route?.usable() ?? false : undefined,
    });
    this.#telemetry = telemetry;
    let route: ReplicaRoute | null = null;
    if (replicaUrl) {
      this.replica = postgres(replicaUrl, { ...options.postgres, ...options.replica });
      // The replica's sentinel and position, on a node-postgres connection of its own.
      const poller = replayLsnPoller(
        {
          connectionString: replicaUrl,
          ssl: pgSsl(options.postgres?.ssl ?? options.replica?.ssl),
          connectionTimeoutMillis: 2_000,
        },
        {
          onConnect: (epoch) => route?.health.connected(epoch),
          onLost: (error) => route?.health.lost(error),
        },
      );
      this.#poller = poller;
      route = new ReplicaRoute({
        settings: config,
        poll: poller,
        key: this.#key,
        primaryPosition: () => this.#primaryPosition(),
        name: `the replica in ${config.region}`,
        where: redactUrl(replicaUrl),
        fallback: 'reads go to the primary',
        format: formatLsn,
        warn,
        telemetry,
      });
      poller.warm();
    } else {
      this.replica = null;
      this.#poller = null;
    }
    this.#route = route;
    this.#dispatcher = new Dispatcher({
      config,
      primary: this.primary,
      replica: this.replica,
      route,
      key: this.#key,
      telemetry,
    });
    this.sql = this.#makeSql();
  }

  /**
   * Counters since the database was made.
   *
   * @example
   * const { replicaReads, primaryReads } = db.stats();
   */
  stats(): RegionalPostgresStats {
    const dispatcher = this.#dispatcher;
    return sourceStats(this.#route, {
      primaryReadsWithoutRoute: dispatcher.primaryReadsWithoutRoute,
      writes: dispatcher.writes,
      readOnlyRetries: dispatcher.readOnlyRetries,
    });
  }

  /** The replay tracker of this region's replica (`null` without one). */
  get tracker(): ReplayTracker | null {
    return this.#route?.tracker ?? null;
  }

  /** The primary's WAL flush position now. */
  async #primaryPosition(): Promise<bigint> {
    const [row] = await this.primary<
      { lsn: string }[]
    >`select pg_current_wal_flush_lsn()::text as lsn`;
    return parseLsn((row as { lsn: string }).lsn);
  }

  /** The replica's lag now, for the metrics: `null` without a usable replica. */
  async #lag(): Promise<LagSample | null> {
    if (!this.replica || !this.#route?.usable()) return null;
    const [rows, primary] = await Promise.all([
      this.replica.unsafe<LagRow[]>(REPLICA_LAG_SQL),
      this.#primaryPosition(),
    ]);
    return lagSample(rows[0], primary);
  }

  /**
   * Closes every connection (`sql.end()` does the same), letting running queries finish for at
   * most `timeout` seconds (default 5). postgres.js's own default waits forever, and with 3.4 a
   * connection reset under a query makes it wait forever even with nothing running
   * (porsager/postgres#1130): a shutdown must not hang on that.
   *
   * @example
   * await db.end(); // or db.end({ timeout: 30 })
   */
  async end(options: { timeout?: number } = {}): Promise<void> {
    this.#route?.close();
    this.#telemetry.close();
    const timeout = { timeout: options.timeout ?? END_TIMEOUT_SECONDS };
    await Promise.all([
      this.primary.end(timeout),
      this.replica?.end(timeout),
      this.#poller?.close(),
    ]);
  }

  /** `pg:` and the cluster's system identifier, asked once (see `RegionalPool.sourceKey`). */
  sourceKey(): Promise<string> {
    return this.#key.get();
  }

  /** Resolves once this region's replica has replayed `lsn` (at once where reads go to the primary). */
  waitFor(lsn: bigint, timeoutMs: number): Promise<number> {
    return this.#route ? this.#route.waitFor(lsn, timeoutMs) : Promise.resolve(0);
  }

  /** True if this region's replica is known to have replayed `lsn` (always, without a replica). */
  hasReplayed(lsn: bigint): boolean {
    return !this.#route || this.#route.hasReplayed(lsn);
  }

  /** Reads check a position the replica is not known to have in their own round trip. */
  get checksOnRead(): boolean {
    return this.#route !== null;
  }

  /** The routed `sql`: postgres.js's own, every query handed to the dispatcher. */
  #makeSql(): postgres.Sql<Types> {
    const primary = this.primary;
    const dispatcher = this.#dispatcher;
    const route = (query: QueryInternals, info: StatementInfo) => {
      query.handler = (q) => dispatcher.run(q, info);
      return query;
    };
    // Reads are made by the replica's postgres.js (a cancel reaches the server that runs them).
    const maker = (info: StatementInfo) =>
      info.kind === 'read' && this.replica ? this.replica : primary;
    const tagged = (strings: TemplateStringsArray, ...args: unknown[]) => {
      const info = inspectSql(textOf({ strings, args, tagged: true } as unknown as QueryInternals));
      return route(
        (maker(info) as unknown as (s: TemplateStringsArray, ...a: unknown[]) => QueryInternals)(
          strings,
          ...args,
        ),
        info,
      );
    };
    const sql = (first: unknown, ...rest: unknown[]) =>
      Array.isArray((first as { raw?: unknown })?.raw)
        ? tagged(first as TemplateStringsArray, ...rest)
        : (primary as unknown as (...a: unknown[]) => unknown)(first, ...rest);
    const unsafe = (text: string, args: unknown[] = [], options: { prepare?: boolean } = {}) => {
      const info = inspectSql(text);
      // A write's commit position follows it in the same round trip only if it is prepared.
      const prepare =
        options.prepare ?? (info.kind === 'write' && args.length > 0 ? true : undefined);
      const made = maker(info).unsafe(
        text,
        args as never[],
        prepare === undefined ? options : { ...options, prepare },
      );
      return route(made as unknown as QueryInternals, info);
    };
    Object.assign(sql, {
      unsafe,
      begin: (options: unknown, fn?: unknown) =>
        typeof options === 'function'
          ? begin(dispatcher, '', options as never)
          : begin(dispatcher, String(options), fn as never),
      reserve: () => reserve(dispatcher),
      end: (options?: { timeout?: number }) => this.end(options),
      listen: primary.listen,
      notify: primary.notify,
      subscribe: primary.subscribe,
      largeObject: primary.largeObject,
      file: primary.file,
      array: primary.array,
      json: primary.json,
      typed: primary.typed,
      types: primary.types,
      CLOSE: primary.CLOSE,
      END: primary.END,
      PostgresError: primary.PostgresError,
    });
    const options = sharedOptions(primary, this.replica);
    Object.defineProperties(sql, {
      options: { get: () => options },
      parameters: { get: () => primary.parameters },
    });
    return sql as unknown as postgres.Sql<Types>;
  }

  /**
   * `pg:` and the system identifier: from the replica where usable, else the primary. On a
   * connection of its own: every pooled one may be held by transactions waiting to record their
   * commit under this very name.
   */
  async #nameSource(): Promise<string> {
    const ask = async (url: string) => {
      const once = postgres(url, { ...this.#options, max: 1, onnotice: () => {} });
      try {
        const [row] = await once<
          { id: string }[]
        >`select system_identifier::text as id from pg_control_system()`;
        return `pg:${(row as { id: string }).id}`;
      } finally {
        await once.end({ timeout: 0 });
      }
    };
    const { replicaUrl, databaseUrl } = this.config;
    if (replicaUrl && this.#route?.usable()) {
      try {
        return await ask(replicaUrl);
      } catch {
        // The primary has the same identifier.
      }
    }
    return ask(databaseUrl);
  }
}

/**
 * The primary's parsed options, where setting a parser or serializer sets it on the replica's
 * too: code that tunes `sql.options.parsers` (Drizzle does) must see the same values from
 * every server.
 */
function sharedOptions(
  primary: postgres.Sql<Types>,
  replica: postgres.Sql<Types> | null,
): postgres.Sql<Types>['options'] {
  if (!replica) return primary.options;
  const writeThrough = <T extends object>(own: T, other: T): T =>
    new Proxy(own, {
      set(target, key, value) {
        Reflect.set(other, key, value);
        return Reflect.set(target, key, value);
      },
    });
  const parsers = writeThrough(primary.options.parsers, replica.options.parsers);
  const serializers = writeThrough(primary.options.serializers, replica.options.serializers);
  return new Proxy(primary.options, {
    get(target, key, receiver) {
      if (key === 'parsers') return parsers;
      if (key === 'serializers') return serializers;
      return Reflect.get(target, key, receiver);
    },
  });
}

/** postgres.js's `ssl` option as node-postgres takes it (for the replica's watch connection). */
function pgSsl(ssl: PostgresOptions['ssl']): boolean | object | undefined {
  if (ssl === undefined || ssl === false) return undefined;
  if (ssl === 'require' || ssl === 'allow' || ssl === 'prefer')
    return { rejectUnauthorized: false };
  if (ssl === true || ssl === 'verify-full') return true;
  return ssl as object;
}
