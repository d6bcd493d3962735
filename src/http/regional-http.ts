import { ConsistencyContext } from '../core/context.js';
import { ReplicationTimeoutError, ReplicaUnavailableError } from '../core/errors.js';
import type { ReplicatedSource } from '../core/source.js';
import {
  describeRequest,
  endRequestSpan,
  type HttpCounters,
  observeHttp,
  recordTokenWait,
  startRequestSpan,
  TELEMETRY,
} from '../core/telemetry.js';
import { readCookie, tokenCookie } from './cookie.js';
import { RegionalEndpoints } from './endpoints.js';
import { clientError } from './errors.js';
import { REGION_HEADER, REPLAYED_FROM_HEADER, TOKEN_HEADER, timing } from './headers.js';
import { FLY_REPLAY_SRC, flyReplayField, ReplayMarkers } from './marker.js';
import {
  FLY_REPLAY_FAILED,
  flyReplayAnswer,
  jsonError,
  proxyReplay,
  type ReplayAnswer,
  type ReplaySource,
  StreamedReplays,
} from './replay.js';
import { RequestState, type RequestView, type StateOwner } from './request-state.js';
import { type HttpSettings, loadHttpSettings, type RegionalHttpOptions } from './settings.js';
import { emptyStats, type HttpStats } from './stats.js';
import { decodeToken, encodeToken, type Positions, type TokenFailure } from './token.js';

/** Where a replayed request came from, and (fly-replay) how long the replay took to arrive. */
function replayOrigin(view: RequestView): { region: string; ms: number | null } {
  const src = view.header(FLY_REPLAY_SRC);
  const proxied = view.header(REPLAYED_FROM_HEADER);
  if (proxied !== undefined || src === undefined) return { region: proxied ?? 'unknown', ms: null };
  const micros = Number(flyReplayField(src, 't'));
  const ms = Date.now() - micros / 1000;
  // The platform's clock, not ours: show it only when it is plausible.
  return {
    region: flyReplayField(src, 'region') ?? 'unknown',
    ms: Number.isFinite(ms) && ms >= 0 && ms < 60_000 ? ms : null,
  };
}

const IGNORED_KEY: Record<TokenFailure, keyof HttpStats['tokensIgnored']> = {
  malformed: 'malformed',
  forged: 'forged',
  'unknown-key': 'unknownKey',
  expired: 'expired',
};

const ATTR = TELEMETRY.attributes;
/** The `regional.replay_reason` values, one per {@link ReplayReason}. */
const REPLAY_REASONS = { write: 'write', writeInRead: 'write_in_read', lag: 'lag' } as const;

/**
 * Regional's request handling, whatever the framework: adapters (`regional/http/node`,
 * `regional/hono`, `regional/express`, `regional/fastify`) call it around each request.
 *
 * In a replica region it replays writing requests in the primary region (`fly-replay` or
 * `proxy` mode), makes sure the local replicas have what the client's token says it wrote or
 * saw before the handler reads them — waiting before the handler runs, or, for a pool, letting
 * its first read check in its own round trip — and replays a read whose handler turns out to
 * write, or whose replica stays behind past `maxWaitMs`.
 * Everywhere it runs the handler in its own consistency context, puts a signed token on
 * responses after a write (cookie and header), and marks every response with the region that
 * served it and `Server-Timing` entries for waiting and replaying.
 *
 * @example
 * import { RegionalHttp } from 'regional/http';
 * const regional = new RegionalHttp({ sources: [pool] }); // PRIMARY_REGION, REGION, REGIONAL_SECRET, …
 * const state = await regional.begin(view);
 */
export class RegionalHttp {
  readonly settings: HttpSettings;
  private readonly markers: ReplayMarkers | null;
  private readonly endpoints: RegionalEndpoints;
  private readonly counters = emptyStats();
  /** What a request's state reports to. */
  private readonly owner: StateOwner;
  // Half the connections to the primary region (16 by default) may carry streamed bodies.
  private readonly streamed = new StreamedReplays(8);
  private sourceKeys: Map<string, ReplicatedSource> | null = null;
  private sourceKeysPending: Promise<Map<string, ReplicatedSource>> | null = null;
  /** What the metrics read (held here: the metrics hold it weakly). */
  private readonly observed: HttpCounters;

  constructor(options: RegionalHttpOptions = {}) {
    this.settings = loadHttpSettings(options);
    const counters = this.counters;
    this.observed = {
      region: this.settings.region ?? 'local',
      requests: () => counters.requests,
      replays: () => ({
        [REPLAY_REASONS.write]: counters.replays.write,
        [REPLAY_REASONS.writeInRead]: counters.replays.writeInRead,
        [REPLAY_REASONS.lag]: counters.replays.lag,
      }),
      tokenWaits: () => counters.tokenWaits,
      tokenWaitTimeouts: () => counters.tokenWaitTimeouts,
    };
    observeHttp(this.observed);
    this.owner = {
      settings: this.settings,
      countWriteInReadFailure: () => {
        this.counters.writeInReadFailures++;
      },
    };
    this.markers = this.settings.keyring ? new ReplayMarkers(this.settings.keyring) : null;
    this.endpoints = new RegionalEndpoints(
      this.settings.region,
      this.settings.keyring,
      this.settings.sources,
      options.health,
      this.settings.instances,
      this.settings.mode === 'proxy',
    );
    if (
      !this.settings.isPrimaryRegion &&
      this.settings.tokens &&
      this.settings.sources.length === 0
    ) {
      this.settings.warn(
        `No sources are configured (sources: [pool]): requests in ${this.settings.region} cannot wait for their tokens before the handler runs.`,
      );
    }
  }

  /** Accepts an instance or the options to make one, as adapters do. */
  static from(options: RegionalHttp | RegionalHttpOptions = {}): RegionalHttp {
    return options instanceof RegionalHttp ? options : new RegionalHttp(options);
  }

  stats(): HttpStats {
    return structuredClone(this.counters);
  }

  /**
   * Decides what to do with a request before its handler runs: `run` it here (in
   * `state.context`, after waiting for its token), `replay` it in the primary region, or
   * `reject` it (lag policy `error`).
   */
  async begin(view: RequestView): Promise<RequestState> {
    this.counters.requests++;
    const settings = this.settings;
    // Regional's own endpoints (health, ping) answer before any token, wait or replay.
    const own = this.endpoints.match(view);
    if (own) return new RequestState(this.owner, view, new ConsistencyContext()).respond(await own);
    const positions = this.readTokens(view);
    const state = new RequestState(this.owner, view, new ConsistencyContext(positions));
    startRequestSpan(state.context, {
      [ATTR.region]: this.observed.region,
      [ATTR.lagPolicy]: settings.lagPolicy,
      'http.request.method': view.method,
    });
    const markers = this.markers;
    if (!settings.primaryRegion || !markers) return state;

    const marker = markers.check(view.method, view.path, view.header);
    if (marker.kind === 'untrusted') this.counters.untrustedMarkers++;
    else if (marker.kind === 'trusted') {
      state.trusted = true;
      state.replayedFrom = replayOrigin(view);
      // Its client reads a replica region's replica next: what it reads here goes in its token.
      state.context.recordsReads = true;
      this.counters.replayedServed++;
    }
    if (settings.isPrimaryRegion) return state;

    const failed = view.header(FLY_REPLAY_FAILED);
    if (failed !== undefined && settings.mode === 'fly-replay') {
      // The platform brought back a replay it could not deliver (it asked for none again).
      this.counters.replayFailures++;
      settings.warn(
        `A replay of ${view.method} ${view.path.split('?')[0]} to ${settings.primaryRegion} did not reach it in time (${FLY_REPLAY_FAILED}: ${failed.slice(0, 200)}).`,
      );
      return state.reject(
        503,
        'REGIONAL_PRIMARY_REGION_UNAVAILABLE',
        `The primary region (${settings.primaryRegion}) could not be reached in time. Retry shortly.`,
      );
    }
    if (!state.trusted && settings.routes.isWrite(view.method, view.path, view.mark))
      return state.replay('write');
    // With `primary`, reads wait per query (the pool's bound), so nothing waits here.
    if (positions.length > 0 && settings.lagPolicy !== 'primary') {
      const caughtUp = await this.waitForPositions(state.context);
      if (!caughtUp) describeRequest(state.context, { [ATTR.tokenTimeout]: true });
      if (!caughtUp && !state.trusted) {
        if (settings.lagPolicy === 'replay') return state.replay('lag');
        return state.reject(
          503,
          'REGIONAL_REPLICATION_TIMEOUT',
          `The replica in ${settings.region} has not caught up with this client's last write within ${settings.maxWaitMs} ms. Try again, raise REGIONAL_MAX_WAIT_MS, or set REGIONAL_LAG_POLICY=replay.`,
        );
      }
    }
    if (!state.trusted) {
      state.context.beforeWrite = state.guard;
      if (settings.lagPolicy === 'replay') {
        state.context.onLag = state.lagged;
        state.context.maxWaitMs = settings.maxWaitMs;
      }
    }
    return state;
  }

  /**
   * The headers every response gets: the serving region, `Server-Timing`, and — after a write,
   * or on every response with `tokensOnReads` — the token, as a header and a cookie.
   * Call it once, just before the response's headers go out.
   */
  responseHeaders(state: RequestState): [string, string][] {
    const settings = this.settings;
    const headers = this.ownHeaders(state);
    const keyring = settings.keyring;
    if (!keyring || !settings.tokens || !settings.primaryRegion) return headers;
    const context = state.context;
    if (context.advanced || (settings.tokensOnReads && context.entries().length > 0)) {
      const token = encodeToken(keyring, context.entries(), settings.tokenTtlSeconds);
      headers.push([TOKEN_HEADER, token]);
      headers.push([
        'set-cookie',
        tokenCookie(settings.cookie, token, settings.tokenTtlSeconds, state.view.https),
      ]);
      this.counters.tokensIssued++;
    }
    return headers;
  }

  /**
   * The answer that replays `state`'s request in the primary region: the `fly-replay` answer,
   * or (proxy mode) the primary region's own answer.
   */
  async replay(state: RequestState, source: ReplaySource): Promise<ReplayAnswer> {
    const markers = this.markers as ReplayMarkers;
    const reason = state.replayReason ?? 'write';
    this.counters.replays[reason]++;
    if (this.settings.mode === 'fly-replay') {
      return flyReplayAnswer(this.settings, markers, state, this.ownHeaders(state));
    }
    const answer = await proxyReplay(
      this.settings,
      markers,
      state,
      source,
      () => this.ownHeaders(state),
      this.streamed,
    );
    if (answer.failed) this.counters.replayFailures++;
    return answer;
  }

  /** The answer Regional gives itself: one of its own endpoints, or a refusal (lag policy `error`). */
  answer(state: RequestState): ReplayAnswer {
    if (state.prepared) return state.prepared;
    const { status, code, message } = state.rejection ?? {
      status: 500,
      code: 'REGIONAL_INTERNAL',
      message: 'no rejection recorded',
    };
    return jsonError(status, code, message, this.ownHeaders(state));
  }

  /**
   * The answer for an error that ended a request's handler, if it is one of Regional's that a
   * client can act on (503 or 504: unavailable or too slow for now, worth retrying): its code
   * and a message without internals, and the details in the log. `null` for any other error,
   * which stays the app's to handle.
   */
  errorAnswer(state: RequestState, error: unknown): ReplayAnswer | null {
    const answer = clientError(error);
    if (!answer) return null;
    this.counters.errorsAnswered++;
    this.settings.warn(
      `${state.view.method} ${state.view.path.split('?')[0]} answered ${answer.status} ${answer.code}: ${(error as Error).message}`,
    );
    return jsonError(answer.status, answer.code, answer.message, this.ownHeaders(state));
  }

  /** Closes kept-alive connections to the primary region, and the readiness check's own. */
  async close(): Promise<void> {
    await Promise.all([this.settings.instances?.close(), this.endpoints.close()]);
  }

  /** Region and timing headers, on every answer (a token is added only where a handler ran). */
  private ownHeaders(state: RequestState): [string, string][] {
    endRequestSpan(state.context, () => ({
      [ATTR.outcome]: state.action,
      [ATTR.replayed]: state.action === 'replay',
      ...(state.replayReason ? { [ATTR.replayReason]: REPLAY_REASONS[state.replayReason] } : {}),
      ...(state.replayedFrom ? { [ATTR.replayedFrom]: state.replayedFrom.region } : {}),
    }));
    const { region, mode, primaryRegion } = this.settings;
    const headers: [string, string][] = [];
    if (region) headers.push([REGION_HEADER, region]);
    const timings = [timing('regional-wait', state.context.waitedMs, region ?? undefined)];
    const from = state.replayedFrom;
    if (from) timings.push(timing('regional-replay', from.ms, `from ${from.region}`));
    if (state.replayReason && mode === 'fly-replay')
      timings.push(timing('regional-replay', null, `fly-replay to ${primaryRegion}`));
    for (const entry of timings) headers.push(['server-timing', entry]);
    return headers;
  }

  /** Every valid token the request carries (cookie and header), merged: highest per source. */
  private readTokens(view: RequestView): Positions {
    const { keyring, tokens, cookie } = this.settings;
    if (!keyring || !tokens) return [];
    const fromCookie = readCookie(view.header('cookie'), cookie.name);
    const fromHeader = view.header(TOKEN_HEADER);
    if (fromCookie === undefined && fromHeader === undefined) return [];
    const merged = new Map<string, bigint>();
    for (const token of [fromCookie, fromHeader]) {
      if (token === undefined || token === '') continue;
      const result = decodeToken(keyring, token);
      if ('failure' in result) {
        this.counters.tokensIgnored[IGNORED_KEY[result.failure]]++;
        continue;
      }
      for (const [source, position] of result.positions) {
        const known = merged.get(source);
        if (known === undefined || position > known) merged.set(source, position);
      }
    }
    return [...merged];
  }

  /**
   * Waits until every configured source the context names has replayed its position, within
   * `maxWaitMs`. False if one did not (or could not be asked). With the `replay` lag policy, a
   * source that checks on read is left to the handler's first read of it: the request context's
   * `onLag` replays the request if that read finds the replica too far behind.
   */
  private async waitForPositions(context: ConsistencyContext): Promise<boolean> {
    const keys = this.sourceKeys ?? (await this.resolveSourceKeys());
    const deferToReads = this.settings.lagPolicy === 'replay';
    let waits: Promise<number>[] | null = null;
    let deferred = false;
    for (const [key, position] of context.entries()) {
      const source = keys.get(key);
      if (!source || source.hasReplayed(position)) continue;
      if (deferToReads && source.checksOnRead) {
        deferred = true;
        continue;
      }
      waits ??= [];
      waits.push(source.waitFor(position, this.settings.maxWaitMs));
    }
    // Counted only where the handler runs, so its first read is the check.
    if (!waits) {
      if (deferred) this.counters.tokenChecksOnRead++;
      return true;
    }
    this.counters.tokenWaits++;
    const started = performance.now();
    let outcome: 'reached' | 'timeout' = 'reached';
    try {
      await Promise.all(waits);
      if (deferred) this.counters.tokenChecksOnRead++;
      return true;
    } catch (error) {
      if (error instanceof ReplicationTimeoutError || error instanceof ReplicaUnavailableError) {
        this.counters.tokenWaitTimeouts++;
        outcome = 'timeout';
        return false;
      }
      throw error;
    } finally {
      const waited = performance.now() - started;
      context.waitedMs += waited;
      recordTokenWait(this.observed.region, waited, outcome);
      describeRequest(context, { [ATTR.tokenWaitMs]: waited });
    }
  }

  /** The sources by key, asked once; a source that cannot say is left out until the next try. */
  private resolveSourceKeys(): Promise<Map<string, ReplicatedSource>> {
    this.sourceKeysPending ??= Promise.allSettled(
      this.settings.sources.map(async (source) => [await source.sourceKey(), source] as const),
    ).then((results) => {
      const keys = new Map<string, ReplicatedSource>();
      let failed = false;
      for (const result of results) {
        if (result.status === 'fulfilled') keys.set(result.value[0], result.value[1]);
        else {
          failed = true;
          this.settings.warn(
            `A source could not name itself (${(result.reason as Error)?.message ?? result.reason}); tokens for it are not waited on before the handler (its reads still wait).`,
          );
        }
      }
      if (failed) this.sourceKeysPending = null;
      else this.sourceKeys = keys;
      return keys;
    });
    return this.sourceKeysPending;
  }
}
