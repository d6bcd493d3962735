import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import pg from 'pg';
import { redactUrl } from '../core/config.js';
import { currentContext } from '../core/context.js';
import { ConfigError } from '../core/errors.js';
import { RegionInstances, type RegionInstancesOptions } from '../core/instances.js';
import { formatLsn, type Lsn, parseLsn } from '../core/lsn.js';
import { RequestVerifier } from '../core/signing.js';
import { recordProcedureCall, startSpan, TELEMETRY, within } from '../core/telemetry.js';
import { type PoolParts, partsOf } from '../pg/parts.js';
import type { RegionalPool } from '../pg/pool.js';
import type { TransactionClient, TransactionOptions } from '../pg/transaction.js';
import { decodeValue, encodeValue } from './codec.js';
import { loadRpcConfig, type ProceduresSettings, type RpcConfig } from './config.js';
import { InstancesUnreachableError, ProcedureNotFoundError } from './errors.js';
import { CallLedger } from './ledger.js';
import {
  isCallId,
  MIN_PROTOCOL_VERSION,
  PROTOCOL_VERSION,
  type ProcedureEnvelope,
  type VersionRange,
} from './protocol.js';
import {
  CallServer,
  type Executed,
  fromNode,
  fromWeb,
  isProcedureName,
  toNode,
  toWeb,
} from './server.js';
import { runForwardedStatement, statementForwarder } from './statements.js';
import { isTransportFailure, type Target, Transport } from './transport.js';

/** What a procedure learns about the call besides its input. */
export interface ProcedureCall {
  /** The call id: the same on every retry; use it as an idempotency key for side effects outside the database. */
  id: string;
  name: string;
  /** The region it runs in (`null` in single-region mode). */
  region: string | null;
}

/** A procedure's body: runs in one transaction on the primary, next to it. */
export type ProcedureFn<I, O> = (
  tx: TransactionClient,
  input: I,
  call: ProcedureCall,
) => Promise<O>;

export interface DefineOptions {
  /** The transaction's isolation level (default: the database's, normally read committed). */
  isolationLevel?: TransactionOptions['isolationLevel'];
}

export interface CallOptions {
  /**
   * Record the commit LSN in the caller's context, so its next reads wait until the local
   * replica has the procedure's writes (default `true`).
   */
  await?: boolean;
  /**
   * Run in this region instead of the primary region: on one of its instances (found through
   * `REGIONAL_REGION_URL`), whose connection to the primary the transaction uses. For work
   * that belongs next to something regional; anything else belongs in the primary region.
   */
  region?: string;
  /** The call id (default: a new UUID). Give your own to make a retry of yours run at most once too. */
  id?: string;
  /** How long one attempt waits for an answer (default `timeoutMs` of the Procedures). */
  timeoutMs?: number;
}

/** A call's result and where it committed. */
export interface CallOutcome<O> {
  result: O;
  /** The commit LSN, `null` when the procedure wrote nothing. */
  lsn: Lsn | null;
  id: string;
  /** `local`: ran in this process; `remote`: on an instance of `region`; `fallback`: over this process's own connection to the primary after no instance answered. */
  via: 'local' | 'remote' | 'fallback';
  /** The region that ran it (`null` in single-region mode). */
  region: string | null;
  /** True when the call had already run and this is its recorded result. */
  replayed: boolean;
}

/** A defined procedure: call it like a function. */
export interface Procedure<I, O> {
  (input: I, options?: CallOptions): Promise<O>;
  readonly procedureName: string;
  /** The same as calling it. */
  call(input: I, options?: CallOptions): Promise<O>;
  /** Calls it and resolves with the result and where it committed. */
  invoke(input: I, options?: CallOptions): Promise<CallOutcome<O>>;
}

export interface ProceduresOptions extends ProceduresSettings {
  /** The pool whose primary the procedures run on, and whose context records their commits. */
  pool: RegionalPool;
  /** How instances are reached (connection counts, time-outs, a `resolveHost` for discovery). */
  instances?: Omit<RegionInstancesOptions, 'variable'>;
  /**
   * Run forwarded statements sent by replica regions. Default: when the pool is in `forward`
   * write mode (set `REGIONAL_WRITES=forward` on every instance). A holder of the secret can
   * then run any SQL as the app's database user through this instance.
   */
  serveStatements?: boolean;
  /** Receives warnings (fallbacks, clean-up failures). Default: `console.warn`. */
  onWarning?: (message: string, error?: unknown) => void;
  /** The environment to read (default `process.env`). */
  env?: Readonly<Record<string, string | undefined>>;
  /**
   * The protocol versions this instance speaks (default: every version this release speaks):
   * narrow it to rehearse a rolling deploy between an older and a newer release.
   */
  protocol?: VersionRange;
}

/** Counters since the Procedures were made. */
export interface ProceduresStats {
  /** Calls made from this instance, and how they ran. */
  calls: number;
  local: number;
  remote: number;
  fallbacks: number;
  /** Attempts sent again after a time-out or connection failure. */
  retries: number;
  /** Calls run on this instance (from here or from elsewhere), and answered from their record. */
  executed: number;
  replayed: number;
  /** Statements this instance forwarded, and forwarded statements it ran for others. */
  forwarded: number;
  statementsServed: number;
  /** Requests refused, by HTTP status. */
  refused: Record<number, number>;
}

interface RanHere {
  result: unknown;
  /** The result as recorded and sent. */
  encoded: string;
  lsn: Lsn | null;
  replayed: boolean;
}

interface Registered {
  fn: ProcedureFn<unknown, unknown>;
  options: DefineOptions;
}

/** How long {@link Procedures.listen}'s server keeps an idle connection from another instance open. */
export const KEEP_ALIVE_MS = 65_000;

const ISOLATION_LEVELS = new Set(['read committed', 'repeatable read', 'serializable']);

/**
 * Procedures: write logic that runs in the primary region, next to the primary, in one
 * transaction, exactly once, and returns its result and commit LSN. Called from the primary
 * region it runs in-process; from any other region it travels (signed, one round trip) to a
 * primary-region instance. The caller's context records the commit LSN, so its next reads
 * in its own region see the writes.
 *
 * @example
 * import { RegionalPool } from 'regional/pg';
 * import { Procedures } from 'regional/rpc';
 *
 * const pool = new RegionalPool();
 * const procedures = new Procedures({ pool }); // REGIONAL_SECRET, REGIONAL_PRIMARY_URL
 * export const createPost = procedures.define('createPost', async (tx, input: { topicId: number; body: string }) => {
 *   const { rows } = await tx.query('INSERT INTO posts (topic_id, body) VALUES ($1, $2) RETURNING id', [input.topicId, input.body]);
 *   await tx.query('UPDATE topics SET post_count = post_count + 1 WHERE id = $1', [input.topicId]);
 *   return { id: rows[0].id as number, at: new Date() };
 * });
 *
 * // Mount the handler (or: await procedures.listen(8081)):
 * http.createServer((req, res) => procedures.middleware(req, res, () => app(req, res)));
 *
 * const { id } = await createPost({ topicId: 1, body: 'hi' }); // local in the primary region, remote elsewhere
 */
export class Procedures {
  readonly config: RpcConfig;
  readonly pool: RegionalPool;
  private readonly parts: PoolParts;
  private readonly registry = new Map<string, Registered>();
  private readonly ledger: CallLedger;
  private readonly server: CallServer;
  private readonly transport: Transport | null;
  private readonly targets = new Map<string, Target>();
  private readonly servers = new Set<http.Server>();
  private readonly instanceOptions: Omit<RegionInstancesOptions, 'variable'>;
  private readonly warn: (message: string, error?: unknown) => void;
  private lastCleanup = 0;
  private cleaning: Promise<unknown> | null = null;
  private readonly counters: ProceduresStats = {
    calls: 0,
    local: 0,
    remote: 0,
    fallbacks: 0,
    retries: 0,
    executed: 0,
    replayed: 0,
    forwarded: 0,
    statementsServed: 0,
    refused: {},
  };

  constructor(options: ProceduresOptions) {
    if (!options?.pool) throw new ConfigError('pool', 'is required: new Procedures({ pool })');
    this.pool = options.pool;
    this.parts = partsOf(options.pool);
    this.config = loadRpcConfig(options, this.pool.config, options.env);
    this.instanceOptions = options.instances ?? {};
    this.warn =
      options.onWarning ?? ((message, error) => console.warn(`[regional] ${message}`, error ?? ''));
    const protocol = options.protocol ?? { min: MIN_PROTOCOL_VERSION, max: PROTOCOL_VERSION };
    const { keyring } = this.config;
    this.ledger = new CallLedger(
      this.pool.primaryPool,
      this.config.table,
      this.pool.queryTimeoutMs,
    );
    this.transport =
      keyring &&
      new Transport(keyring, protocol, this.config.attempts, () => this.counters.retries++);
    const serveStatements = options.serveStatements ?? this.pool.writeMode === 'forward';
    this.server = new CallServer(
      {
        basePath: this.config.basePath,
        maxBodyBytes: this.config.maxBodyBytes,
        retentionMs: this.config.retentionMs,
        debug: this.config.debug,
        protocol,
        verifier: keyring && new RequestVerifier(keyring),
      },
      {
        region: this.here,
        has: (name) => this.registry.has(name),
        runProcedure: (name, call) => this.serveProcedure(name, call),
        runStatement: serveStatements ? (call) => this.serveStatement(call) : null,
        sourceKey: () => this.pool.sourceKey(),
        refused: (status) => {
          this.counters.refused[status] = (this.counters.refused[status] ?? 0) + 1;
        },
      },
    );
    if (this.pool.forwardsWrites && this.transport) {
      const transport = this.transport;
      this.parts.writer.install(
        statementForwarder({
          writer: this.parts.writer,
          transport,
          target: () => this.target(this.pool.config.primaryRegion as string),
          path: `${this.config.basePath}/statement`,
          timeoutMs: this.config.timeoutMs,
          fallback: this.config.fallback,
          types: () =>
            (this.pool.primaryPool as unknown as { options?: { types?: unknown } }).options
              ?.types ?? pg.types,
          onForward: () => this.counters.forwarded++,
          onFallback: (error) => this.fellBack('a forwarded statement', error),
        }),
      );
    }
  }

  /**
   * Registers a procedure under `name` and returns it, callable like a function. Every
   * instance must define the same procedures: only registered names can be called.
   *
   * @example
   * const rename = procedures.define('renameTopic', async (tx, input: { id: number; title: string }) => {
   *   await tx.query('UPDATE topics SET title = $2 WHERE id = $1', [input.id, input.title]);
   * });
   * await rename({ id: 1, title: 'Hello' });
   */
  define<I, O>(name: string, fn: ProcedureFn<I, O>, options: DefineOptions = {}): Procedure<I, O> {
    if (!isProcedureName(name)) {
      throw new ConfigError(
        'name',
        `"${name}" is not a procedure name: a letter or "_", then letters, digits, "_", "." or "-" (at most 128)`,
      );
    }
    if (this.registry.has(name))
      throw new ConfigError('name', `procedure "${name}" is already defined`);
    if (typeof fn !== 'function')
      throw new ConfigError('fn', `procedure "${name}" needs a function`);
    if (options.isolationLevel !== undefined && !ISOLATION_LEVELS.has(options.isolationLevel)) {
      throw new ConfigError(
        'isolationLevel',
        `must be one of ${[...ISOLATION_LEVELS].join(', ')}; got ${options.isolationLevel}`,
      );
    }
    this.registry.set(name, { fn: fn as ProcedureFn<unknown, unknown>, options });
    const invoke = (input: I, callOptions?: CallOptions) =>
      this.invoke<O>(name, input, callOptions);
    const call = async (input: I, callOptions?: CallOptions) =>
      (await invoke(input, callOptions)).result;
    return Object.assign(call, { procedureName: name, call, invoke });
  }

  /**
   * Calls a procedure by name; resolves with its result.
   *
   * @example
   * await procedures.call('createPost', { topicId: 1, body: 'hi' }, { await: false });
   */
  async call<O = unknown>(name: string, input: unknown, options?: CallOptions): Promise<O> {
    return (await this.invoke<O>(name, input, options)).result;
  }

  /**
   * Calls a procedure by name; resolves with its result, commit LSN and how it ran.
   *
   * @example
   * const { result, lsn, via } = await procedures.invoke('createPost', input);
   */
  invoke<O = unknown>(
    name: string,
    input: unknown,
    options: CallOptions = {},
  ): Promise<CallOutcome<O>> {
    const region = this.here ?? 'local';
    const span = startSpan(TELEMETRY.spans.procedure, {
      [TELEMETRY.attributes.procedure]: name,
      [TELEMETRY.attributes.region]: region,
    });
    const run = async () => {
      const outcome = await this.invokeHere<O>(name, input, options);
      span?.setAttributes({
        'regional.via': outcome.via,
        [TELEMETRY.attributes.replayed]: outcome.replayed,
      });
      return outcome;
    };
    return (span ? within(span, run) : run()).then(
      (outcome) => {
        recordProcedureCall(region, name, 'ok');
        return outcome;
      },
      (error: unknown) => {
        recordProcedureCall(region, name, 'error');
        throw error;
      },
    );
  }

  private async invokeHere<O>(
    name: string,
    input: unknown,
    options: CallOptions,
  ): Promise<CallOutcome<O>> {
    const id = options.id ?? randomUUID();
    if (!isCallId(id))
      throw new ConfigError('id', `"${id}" is not a call id: 8 to 128 of A-Z a-z 0-9 _ -`);
    const timeout = options.timeoutMs;
    if (timeout !== undefined && !(Number.isSafeInteger(timeout) && timeout > 0))
      throw new ConfigError(
        'timeoutMs',
        `must be a whole number of milliseconds > 0, got ${timeout}`,
      );
    const region = this.remoteRegion(options.region);
    const encodedInput = encodeValue(input, `the input of procedure "${name}"`);
    this.counters.calls++;
    // A procedure writes in the primary region by itself: a read request calling one is not
    // replayed for it, but refused once its response has started (the token could not reach
    // the client) — unless it is fire-and-forget (`await: false`, or a detached context).
    const record = currentContext().startWrite(options.await !== false, { remote: true });
    let outcome: Omit<CallOutcome<unknown>, 'id'>;
    if (region === null) {
      this.counters.local++;
      outcome = this.ranHere(await this.runHere(name, id, decodeValue(encodedInput)), 'local');
    } else {
      this.counters.remote++;
      try {
        outcome = await this.runThere(region, name, id, encodedInput, options);
      } catch (error) {
        if (!(error instanceof InstancesUnreachableError)) throw error;
        if (region !== this.pool.config.primaryRegion) throw error;
        if (this.config.fallback !== 'direct') {
          throw new InstancesUnreachableError(
            error.region,
            error.callId,
            `${error.message} To run calls over this instance's own connection to the primary when that happens, set REGIONAL_RPC_FALLBACK=direct.`,
            { cause: error.cause },
          );
        }
        this.fellBack(`procedure "${name}"`, error);
        // Same id: if an attempt did reach the primary region and commit, this answers with its record.
        outcome = this.ranHere(await this.runHere(name, id, decodeValue(encodedInput)), 'fallback');
      }
    }
    if (outcome.lsn !== null && record && this.pool.config.mode === 'multi') {
      await this.parts.writer.record(currentContext(), outcome.lsn);
    }
    return { ...outcome, id } as CallOutcome<O>;
  }

  /**
   * A Fetch API handler: answers procedure calls (and forwarded statements) and resolves with
   * `null` for any other request. Mount it in Hono, Next.js route handlers, Bun, Deno, …
   *
   * @example
   * app.all('/_regional/*', async (c) => (await procedures.handler(c.req.raw)) ?? c.notFound());
   */
  readonly handler = async (request: Request): Promise<Response | null> => {
    if (!this.server.owns(new URL(request.url).pathname)) return null;
    const answer = await this.server.handle(fromWeb(request));
    return answer && toWeb(answer);
  };

  /**
   * Answers a node:http request if it is a call; resolves `false` (and touches nothing) if not.
   *
   * @example
   * http.createServer(async (req, res) => { if (!(await procedures.nodeHandler(req, res))) app(req, res); });
   */
  readonly nodeHandler = async (
    req: http.IncomingMessage,
    res: http.ServerResponse,
  ): Promise<boolean> => {
    if (!this.server.owns(req.url ?? '/')) return false;
    const answer = await this.server.handle(fromNode(req));
    if (!answer) return false;
    toNode(answer, res);
    return true;
  };

  /**
   * Connect/Express-style middleware: answers calls, passes anything else to `next` (without
   * `next`, answers 404).
   *
   * @example
   * expressApp.use(procedures.middleware);
   */
  readonly middleware = (
    req: http.IncomingMessage,
    res: http.ServerResponse,
    next?: (error?: unknown) => void,
  ): void => {
    this.nodeHandler(req, res).then(
      (handled) => {
        if (handled) return;
        if (next) next();
        else res.writeHead(404).end();
      },
      (error) => {
        if (next) next(error);
        else res.writeHead(500).end();
      },
    );
  };

  /**
   * Serves calls on a port of their own, for apps that would rather not mount the handler.
   * Point `REGIONAL_PRIMARY_URL` / `REGIONAL_REGION_URL` at this port.
   *
   * @example
   * await procedures.listen(8081); // every interface; listen(8081, '127.0.0.1') for one
   */
  async listen(port: number, host?: string): Promise<http.Server> {
    const server = http.createServer(this.middleware);
    // Callers keep connections open between calls; Node's default (5 s) would close them
    // between quiet calls and make the next one pay a new connection's round trip.
    server.keepAliveTimeout = KEEP_ALIVE_MS;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.servers.add(server);
    return server;
  }

  /** The port of a server started with {@link listen}. */
  static portOf(server: http.Server): number {
    return (server.address() as AddressInfo).port;
  }

  /**
   * Deletes call records older than the retention (`REGIONAL_RPC_RETENTION_MS`); resolves
   * with how many. Runs by itself on an instance that executes calls, at most every tenth of
   * the retention (and at most every 10 minutes).
   */
  cleanup(): Promise<number> {
    return this.ledger.cleanup(this.config.retentionMs);
  }

  stats(): ProceduresStats {
    return { ...this.counters, refused: { ...this.counters.refused } };
  }

  /** Stops servers started with {@link listen} and closes connections to other instances (not the pool). */
  async close(): Promise<void> {
    for (const server of this.servers) server.closeAllConnections();
    await Promise.all(
      [...this.servers].map((server) => new Promise((resolve) => server.close(resolve))),
    );
    this.servers.clear();
    await Promise.all([...this.targets.values()].map((target) => target.instances.close()));
    this.targets.clear();
    await this.cleaning;
  }

  /** This instance's region (`null` in single-region mode). */
  private get here(): string | null {
    return this.pool.config.mode === 'multi' ? this.pool.config.region : null;
  }

  /** `null` to run here, else the region whose instances run the call. */
  private remoteRegion(requested: string | undefined): string | null {
    const { mode, region, primaryRegion, isPrimaryRegion } = this.pool.config;
    if (mode === 'single') return null;
    if (requested === undefined) return isPrimaryRegion ? null : (primaryRegion as string);
    if (typeof requested !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9_-]*$/.test(requested))
      throw new ConfigError('region', `"${requested}" is not a region name`);
    return requested === region ? null : requested;
  }

  /** The instances of `region`, made on first use. */
  private target(region: string): Target {
    let target = this.targets.get(region);
    if (target) return target;
    const { primaryUrl, regionUrl } = this.config;
    let url: { url: string; variable: string };
    if (region === this.pool.config.primaryRegion && primaryUrl) url = primaryUrl;
    else if (regionUrl) url = { url: regionUrl.url(region), variable: regionUrl.variable };
    else {
      throw new ConfigError(
        'REGIONAL_REGION_URL',
        `is not set: a call to region ${region} needs the URL of its instances, e.g. http://{region}.my-app.internal:8080`,
      );
    }
    target = {
      region,
      label: `${url.variable}=${redactUrl(url.url)}`,
      instances: new RegionInstances(url.url, { ...this.instanceOptions, variable: url.variable }),
    };
    this.targets.set(region, target);
    return target;
  }

  /** Runs a call in this process, on the pool's primary, at most once. */
  private async runHere(name: string, id: string, input: unknown): Promise<RanHere> {
    const registered = this.registry.get(name);
    if (!registered) throw new ProcedureNotFoundError(name, 'on this instance');
    const outcome = await this.ledger.run({
      id,
      name,
      isolationLevel: registered.options.isolationLevel,
      run: (tx) => registered.fn(tx, input, { id, name, region: this.here }),
      encode: (value) => encodeValue(value, `the result of procedure "${name}"`),
    });
    if (outcome.replayed) this.counters.replayed++;
    else this.counters.executed++;
    if (outcome.lsn !== null) this.scheduleCleanup();
    return {
      result: outcome.replayed ? decodeValue(outcome.encoded) : outcome.value,
      encoded: outcome.encoded,
      lsn: outcome.lsn,
      replayed: outcome.replayed,
    };
  }

  private ranHere(ran: RanHere, via: 'local' | 'fallback'): Omit<CallOutcome<unknown>, 'id'> {
    const { result, lsn, replayed } = ran;
    return { result, lsn, replayed, via, region: this.here };
  }

  /** Sends a call to `region`'s instances. */
  private async runThere(
    region: string,
    name: string,
    id: string,
    input: string,
    options: CallOptions,
  ): Promise<Omit<CallOutcome<unknown>, 'id'>> {
    const transport = this.transport as Transport;
    const target = this.target(region);
    const at = Date.now();
    const answer = await transport.send(target, {
      path: `${this.config.basePath}/rpc/${encodeURIComponent(name)}`,
      id,
      what: `procedure "${name}"`,
      procedure: name,
      timeoutMs: options.timeoutMs ?? this.config.timeoutMs,
      encode: (v) => JSON.stringify({ v, id, at, region, input } satisfies ProcedureEnvelope),
      retryable: isTransportFailure,
    });
    let lsn = answer.lsn === null ? null : parseLsn(answer.lsn);
    if (lsn !== null && answer.source !== (await this.pool.sourceKey())) {
      this.warn(
        `Procedure "${name}" ran in ${region} against database ${answer.source}, but this instance's is ${await this.pool.sourceKey()}: ` +
          `${target.label} reaches another app or cluster. Its commit LSN is not recorded.`,
      );
      lsn = null;
    }
    return {
      result: decodeValue(answer.result),
      lsn,
      region,
      replayed: answer.replayed,
      via: 'remote',
    };
  }

  /** A call from another instance. */
  private async serveProcedure(name: string, call: ProcedureEnvelope): Promise<Executed> {
    const outcome = await this.runHere(name, call.id, decodeValue(call.input));
    return {
      encoded: outcome.encoded,
      lsn: outcome.lsn === null ? null : formatLsn(outcome.lsn),
      replayed: outcome.replayed,
    };
  }

  private async serveStatement(
    call: Parameters<typeof runForwardedStatement>[1],
  ): Promise<Executed> {
    const executed = await runForwardedStatement(this.parts.writer, call);
    this.counters.statementsServed++;
    return executed;
  }

  private fellBack(what: string, error: InstancesUnreachableError): void {
    this.counters.fallbacks++;
    this.warn(
      `No instance in ${error.region} answered ${what}; running it over this instance's own connection to the primary (REGIONAL_RPC_FALLBACK=direct).`,
      error.cause,
    );
  }

  /** Starts a clean-up of old records in the background when one is due. */
  private scheduleCleanup(): void {
    const every = Math.min(this.config.retentionMs / 10, 10 * 60_000);
    const now = Date.now();
    if (this.cleaning || now - this.lastCleanup < every) return;
    this.lastCleanup = now;
    this.cleaning = this.cleanup()
      .catch((error) => this.warn('Cleaning up old procedure call records failed', error))
      .finally(() => {
        this.cleaning = null;
      });
  }
}
