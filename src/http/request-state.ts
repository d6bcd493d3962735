import type { ConsistencyContext } from '../core/context.js';
import type { RegionalError } from '../core/errors.js';
import { isReadOnlyError, LagReplayError, WriteInReadError } from './errors.js';
import { hasBody } from './headers.js';
import type { ReplayAnswer } from './replay.js';

/** What the core needs to know of a request, whatever the framework. */
export interface RequestView {
  /** Upper-case method. */
  method: string;
  /** Path and query string, as the client sent them (before any framework rewrote them). */
  path: string;
  /** A request header by lower-case name (the first value if repeated). */
  header(name: string): string | undefined;
  /** True if the request came over https (directly or per `x-forwarded-proto`). */
  https: boolean;
  /** The route's own marking, where a framework has one (Fastify's route `config.regional`). */
  mark?: 'read' | 'write';
}

/** Why a request is replayed in the primary region. */
export type ReplayReason = 'write' | 'writeInRead' | 'lag';

/** The parts of {@link RegionalHttp} a request's state reports to. */
export interface StateOwner {
  readonly settings: { mode: string; region: string | null; primaryRegion: string | null };
  countWriteInReadFailure(): void;
}

/**
 * One request's passage through Regional: what to do with it (run here, replay it in the
 * primary region, or refuse it), its consistency context, and what its handler did.
 * Adapters create it with `RegionalHttp.begin` and tell it when the response has started.
 */
export class RequestState {
  /** `answer`: Regional answers itself (a refusal, or one of its own endpoints); the handler does not run. */
  action: 'run' | 'replay' | 'answer' = 'run';
  replayReason: ReplayReason | null = null;
  /** For a refusal: the status and message to answer with. */
  rejection: { status: number; code: string; message: string } | null = null;
  /** For one of Regional's own endpoints (health, ping): the answer, ready. */
  prepared: ReplayAnswer | null = null;
  /** A genuine replay marker: this request was replayed here and is never replayed again. */
  trusted = false;
  /** Set by the adapter once the response's status and headers have gone out. */
  responseStarted = false;
  /**
   * Why this request, already running, is being replayed instead: the write that was stopped
   * ({@link WriteInReadError}), or the read that found the replica too far behind ({@link LagReplayError}).
   */
  blocked: RegionalError | null = null;
  /** Called by the adapter-independent guard when a write is stopped (e.g. to take over the response). */
  onBlocked: (() => void) | undefined;
  /** Milliseconds a proxied replay took until the primary region answered. */
  replayMs: number | null = null;
  /**
   * For a replayed request (trusted marker): the region it came from and, where the platform
   * says when it started replaying it (`fly-replay-src` `t`), how long ago that was.
   */
  replayedFrom: { region: string; ms: number | null } | null = null;

  constructor(
    private readonly owner: StateOwner,
    readonly view: RequestView,
    readonly context: ConsistencyContext,
  ) {}

  replay(reason: ReplayReason): this {
    this.action = 'replay';
    this.replayReason = reason;
    return this;
  }

  reject(status: number, code: string, message: string): this {
    this.action = 'answer';
    this.rejection = { status, code, message };
    return this;
  }

  /** Answers with `answer` instead of running the handler (Regional's own endpoints). */
  respond(answer: ReplayAnswer): this {
    this.action = 'answer';
    this.prepared = answer;
    return this;
  }

  /**
   * Installed as the context's `beforeWrite` in read requests of replica regions: the pool
   * calls it before any write goes to the primary. Stops the write; the request is then
   * replayed in the primary region if nothing has been sent yet, else it fails (counted). A
   * remote write (a procedure, which runs in the primary region anyway) goes ahead while the
   * response has not started, and fails like the others once it has.
   */
  readonly guard = (remote: boolean): void => {
    if (this.blocked) throw this.blocked;
    // A procedure runs in the primary region by itself: only its token must still reach the client.
    if (remote && !this.responseStarted) return;
    const refusal = this.cannotReplayLate();
    if (refusal) {
      this.owner.countWriteInReadFailure();
      throw new WriteInReadError(false, refusal);
    }
    this.block();
    this.onBlocked?.();
    throw this.blocked as unknown as WriteInReadError;
  };

  /**
   * Installed as the context's `onLag` in read requests of replica regions (lag policy
   * `replay`): a read waited `maxWaitMs` for the client's token and the replica is still
   * behind (or could not be asked). The request is replayed in the primary region if nothing
   * has been sent yet; otherwise the read goes on to the primary.
   */
  readonly lagged = (): void => {
    if (this.blocked) throw this.blocked;
    if (this.cannotReplayLate()) return;
    const { region, primaryRegion } = this.owner.settings;
    this.replayReason = 'lag';
    this.blocked = new LagReplayError(
      `The replica in ${region} has not caught up with this client's last write; ${this.describe()} is replayed in the primary region (${primaryRegion}) and what its handler answered here is discarded.`,
    );
    this.onBlocked?.();
    throw this.blocked;
  };

  /**
   * After the handler threw (or answered): true if the request must be replayed instead — a
   * write was stopped, or the replica refused one (SQLSTATE 25006) from a client that is not
   * Regional's pool, and nothing has been sent yet.
   */
  replayInstead(error?: unknown): boolean {
    if (this.blocked) return true;
    if (error === undefined || !isReadOnlyError(error)) return false;
    const { region, primaryRegion } = this.owner.settings;
    if (this.trusted || !primaryRegion || region === primaryRegion) return false;
    if (this.cannotReplayLate()) {
      this.owner.countWriteInReadFailure();
      return false;
    }
    this.block();
    return true;
  }

  private block(): void {
    const { region, primaryRegion } = this.owner.settings;
    this.replayReason = 'writeInRead';
    this.blocked = new WriteInReadError(
      true,
      `${this.describe()} tried to write in ${region}; it is replayed in the primary region (${primaryRegion}) and what its handler answered here is discarded. ` +
        `Mark the route as writing (writeRoutes: ['${this.view.method} ${this.pathOnly()}']) to replay it before it runs.`,
    );
  }

  /** Why a write can no longer be replayed, or `null` if it can. */
  private cannotReplayLate(): string | null {
    const { region, primaryRegion, mode } = this.owner.settings;
    if (this.responseStarted) {
      return (
        `${this.describe()} tried to write in ${region} after its response had started, so it cannot be replayed in ${primaryRegion}; nothing was written. ` +
        `Mark the route as writing (writeRoutes: ['${this.view.method} ${this.pathOnly()}']) so that it is replayed before it runs.`
      );
    }
    if (mode === 'proxy' && hasBody(this.view.header)) {
      return (
        `${this.describe()} tried to write in ${region}, but it has a body that has been read, so in proxy mode it cannot be replayed in ${primaryRegion}; nothing was written. ` +
        `Remove the route from readRoutes so that it is replayed before it runs.`
      );
    }
    return null;
  }

  private pathOnly(): string {
    const query = this.view.path.indexOf('?');
    return query < 0 ? this.view.path : this.view.path.slice(0, query);
  }

  private describe(): string {
    return `${this.view.method} ${this.pathOnly()}`;
  }
}
