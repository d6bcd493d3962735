import { PrismaPg } from '@prisma/adapter-pg';
import type {
  SqlDriverAdapter,
  SqlMigrationAwareDriverAdapterFactory,
} from '@prisma/driver-adapter-utils';
import pg from 'pg';
import { RegionalError } from '../core/errors.js';
import type { RegionalPool } from '../pg/pool.js';
import type { TransactionClient } from '../pg/transaction.js';
import type { ProcedureCall, ProcedureFn } from '../rpc/procedures.js';
import { extendedAdapters } from './batches.js';
import { currentScope, inScope } from './scope.js';

/** `@prisma/adapter-pg`'s options, less the pool's ownership (the pool is the app's). */
export type PrismaRegionalOptions = Omit<
  NonNullable<ConstructorParameters<typeof PrismaPg>[1]>,
  'disposeExternalPool'
>;

type Listener = (...args: unknown[]) => void;
type Queryable = {
  query(config: pg.QueryConfig): Promise<pg.QueryResult>;
};

/**
 * A Prisma 7 driver adapter over a `RegionalPool`: Prisma's reads run on this region's
 * replica after this context's writes, its writes and transactions on the primary (their
 * commit positions recorded), with the pool's bounds, policies, fallbacks and counters.
 * Prisma's statements carry no read/write intent; each is routed from its SQL, as the pool
 * routes any statement.
 *
 * It hands `@prisma/adapter-pg` (7.x, which converts Prisma's values) a `pg.Pool` whose
 * calls go to the RegionalPool. That needs the `pg` module adapter-pg loads to be the one
 * Regional loads; with two copies installed it throws `REGIONAL_PRISMA_PG_COPY` rather than
 * let adapter-pg connect somewhere else.
 *
 * @example
 * import { PrismaClient } from './generated/prisma/client.js';
 * import { RegionalPool } from 'regional/pg';
 * import { PrismaRegional, regionalExtension } from 'regional/prisma';
 *
 * const pool = new RegionalPool(); // PRIMARY_REGION, REGION, DATABASE_URL, DATABASE_REPLICA_URL
 * export const prisma = new PrismaClient({ adapter: new PrismaRegional(pool) }).$extends(regionalExtension);
 */
export class PrismaRegional implements SqlMigrationAwareDriverAdapterFactory {
  readonly provider = 'postgres';
  readonly adapterName: string;
  readonly #inner: PrismaPg;

  constructor(pool: RegionalPool, options: PrismaRegionalOptions = {}) {
    if (!isRegionalPool(pool)) {
      throw new TypeError(
        'PrismaRegional takes a RegionalPool from regional/pg: new PrismaRegional(new RegionalPool())',
      );
    }
    const like = poolLike(pool, this);
    this.#inner = new PrismaPg(like, options);
    // adapter-pg takes anything that is not `instanceof pg.Pool` (of its own pg) for settings,
    // and would connect to node-postgres's defaults.
    if ((this.#inner as unknown as { externalPool: unknown }).externalPool !== like) {
      throw new RegionalError(
        'REGIONAL_PRISMA_PG_COPY',
        '@prisma/adapter-pg loads another copy of "pg" than regional does, so it cannot use the RegionalPool. ' +
          'Install one version of pg that both accept (`npm ls pg` shows the copies; `npm dedupe` often merges them).',
      );
    }
    this.adapterName = this.#inner.adapterName;
  }

  /** Called by Prisma: the adapter it queries through. */
  connect(): Promise<SqlDriverAdapter> {
    return this.#inner.connect();
  }

  /** Called by Prisma Migrate for a shadow database: on the primary, as adapter-pg does it. */
  connectToShadowDb(): Promise<SqlDriverAdapter> {
    return this.#inner.connectToShadowDb();
  }
}

/**
 * A procedure body (for `procedures.define` of `regional/rpc`) that runs as one Prisma
 * interactive transaction inside the procedure's own, in the primary region: a Prisma
 * transaction from any region in one round trip, however many statements it has. `db` is
 * Prisma's transaction client; `client` must be extended with {@link regionalExtension}.
 *
 * @example
 * import { prismaProcedure } from 'regional/prisma';
 *
 * export const transfer = procedures.define(
 *   'transfer',
 *   prismaProcedure(prisma, async (db, input: { from: number; to: number; amount: number }) => {
 *     await db.account.update({ where: { id: input.from }, data: { balance: { decrement: input.amount } } });
 *     await db.account.update({ where: { id: input.to }, data: { balance: { increment: input.amount } } });
 *   }),
 * );
 * await transfer({ from: 1, to: 2, amount: 10 }); // one round trip to the primary region
 */
export function prismaProcedure<D, I, O>(
  client: InteractiveClient<D>,
  fn: (db: D, input: I, call: ProcedureCall) => Promise<O>,
): ProcedureFn<I, O> {
  return (tx, input, call) =>
    // Awaited in the scope: a Prisma promise runs where it is awaited. Bounded by the
    // procedure's own time-outs, not by Prisma's 5 s default.
    inScope(
      { tx },
      async () =>
        await client.$transaction((db) => fn(db, input, call), {
          maxWait: PROCEDURE_TRANSACTION_MS,
          timeout: PROCEDURE_TRANSACTION_MS,
        }),
    );
}

/** The longest timer Node can arm (about 24.8 days). */
const PROCEDURE_TRANSACTION_MS = 2 ** 31 - 1;

/** A Prisma client, as far as {@link prismaProcedure} uses it: `D` is its transaction client. */
interface InteractiveClient<D> {
  $transaction<R>(
    fn: (db: D) => Promise<R>,
    options?: { maxWait?: number; timeout?: number },
  ): Promise<R>;
}

function notExtended(): RegionalError {
  return new RegionalError(
    'REGIONAL_PRISMA_NOT_EXTENDED',
    'A Prisma client on PrismaRegional must be extended with regionalExtension: ' +
      'new PrismaClient({ adapter: new PrismaRegional(pool) }).$extends(regionalExtension). ' +
      "Prisma runs the queries made in one tick in the first caller's context; the extension runs each in its own.",
  );
}

function isRegionalPool(value: unknown): value is RegionalPool {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as RegionalPool).query === 'function' &&
    typeof (value as RegionalPool).connect === 'function' &&
    (value as RegionalPool).primaryPool instanceof pg.Pool
  );
}

/**
 * A `pg.Pool` (by prototype, for adapter-pg's `instanceof`) whose calls go to `pool`; its
 * transactions as the caller's scope says: read-only, or inside a procedure's transaction.
 */
function poolLike(pool: RegionalPool, owner: object): pg.Pool {
  const like = Object.create(pg.Pool.prototype) as pg.Pool;
  const methods = {
    // adapter-pg reads the pool's settings only to make a shadow database.
    options: pool.primaryPool.options,
    query(config: pg.QueryConfig) {
      if (!extendedAdapters.has(owner)) return Promise.reject(notExtended());
      return pool.query(config);
    },
    async connect() {
      const scope = currentScope();
      if (scope?.tx) return nestedClient(scope.tx);
      const client = await pool.connect();
      return scope?.readOnly ? readOnlyClient(client) : client;
    },
    on(event: string, listener: Listener) {
      pool.on(event, listener);
      return like;
    },
    removeListener(event: string, listener: Listener) {
      pool.removeListener(event, listener);
      return like;
    },
    end() {
      return pool.end();
    },
  };
  for (const [name, value] of Object.entries(methods)) {
    Object.defineProperty(like, name, { value, enumerable: name === 'options' });
  }
  return like;
}

const TRANSACTION_CONTROL = /^\s*(BEGIN|COMMIT|ROLLBACK)\s*;?\s*$/i;

/** The BEGIN adapter-pg sends, as `rewrite` says; every other call goes to `client`. */
function rewritingClient<T extends object>(
  client: T & Queryable,
  rewrite: (command: 'BEGIN' | 'COMMIT' | 'ROLLBACK') => string,
): T {
  const query = (config: pg.QueryConfig) => {
    const control = TRANSACTION_CONTROL.exec(config.text)?.[1]?.toUpperCase() as
      | 'BEGIN'
      | 'COMMIT'
      | 'ROLLBACK'
      | undefined;
    return client.query(control ? { ...config, text: rewrite(control) } : config);
  };
  return new Proxy(client, {
    get(target, key, receiver) {
      if (key === 'query') return query;
      const value = Reflect.get(target, key, receiver);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

/** A checked-out RegionalClient whose transactions begin READ ONLY: they run on the replica. */
function readOnlyClient<T extends object>(client: T & Queryable): T {
  return rewritingClient(client, (command) =>
    command === 'BEGIN' ? 'BEGIN TRANSACTION READ ONLY' : command,
  );
}

let savepoints = 0;

/**
 * A client for a Prisma transaction inside a procedure's transaction: its BEGIN, COMMIT and
 * ROLLBACK become a savepoint, its release, and a rollback to it.
 */
function nestedClient(tx: TransactionClient): pg.PoolClient {
  const name = `regional_prisma_${++savepoints}`;
  const statements = {
    BEGIN: `SAVEPOINT ${name}`,
    COMMIT: `RELEASE SAVEPOINT ${name}`,
    ROLLBACK: `ROLLBACK TO SAVEPOINT ${name}`,
  };
  const client = {
    query: (config: pg.QueryConfig) => tx.query(config),
    // The procedure owns the connection and its errors.
    release() {},
    on() {},
    removeListener() {},
  };
  return rewritingClient(client, (command) => statements[command]) as unknown as pg.PoolClient;
}
