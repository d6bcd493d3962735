import { ConfigError } from '../core/errors.js';
import { RegionInstances } from '../core/instances.js';
import { Keyring } from '../core/signing.js';
import type { ReplicatedSource } from '../core/source.js';
import { type CookieSettings, cookieSettings, type TokenCookieOptions } from './cookie.js';
import type { HealthOptions } from './endpoints.js';
import { RouteRules, type RouteSpec } from './routes.js';

/**
 * How a request is replayed in the primary region: `fly-replay` answers with a
 * `fly-replay: region=<primary>` header for the platform's proxy to replay it (Fly.io);
 * `proxy` forwards it to a primary-region instance itself and returns that answer.
 */
export type ReplayMode = 'fly-replay' | 'proxy';

/**
 * What a request carrying a token does when the local replica has not replayed it within
 * `maxWaitMs`: `replay` it in the primary region (default), run it here anyway (`primary`: its
 * reads then go to the primary database, by the pool's own bound and policy), or answer 503
 * (`error`).
 */
export type LagPolicy = 'replay' | 'primary' | 'error';

export interface RegionalHttpOptions {
  /**
   * The data sources a client's token is waited on, e.g. `[pool]` (a `RegionalPool`), later a
   * Redis store. Positions of sources not listed are carried on in tokens, never waited on.
   */
  sources?: ReplicatedSource[];
  /** `PRIMARY_REGION`. Unset: single-region mode; nothing is replayed and nothing waits. */
  primaryRegion?: string;
  /** `REGION`, else `FLY_REGION`. */
  region?: string;
  /** `REGIONAL_REPLAY_MODE`: default `fly-replay` on Fly.io (`FLY_APP_NAME` set), else `proxy`. */
  mode?: ReplayMode;
  /** `REGIONAL_PRIMARY_URL`: the primary region's instances (needed in `proxy` mode). */
  primaryUrl?: string;
  /** The primary region's instances, already made (instead of `primaryUrl`). */
  instances?: RegionInstances;
  /**
   * `REGIONAL_SECRET` (and `REGIONAL_SECRET_PREVIOUS`): signs tokens and replay markers. The
   * same on every instance. Required with `PRIMARY_REGION`.
   */
  secret?: string | Keyring;
  /** `REGIONAL_MAX_WAIT_MS`: longest a request waits for its token before the lag policy. Default 1000. */
  maxWaitMs?: number;
  /** `REGIONAL_LAG_POLICY`: see {@link LagPolicy}. Default `replay`. */
  lagPolicy?: LagPolicy;
  /** Issue and honour tokens (default `true`). `false` only to see what happens without them. */
  tokens?: boolean;
  /**
   * Also put a token on responses that wrote nothing (when the client holds any position), so
   * that clients moving between regions keep monotonic reads. Default `false`.
   */
  tokensOnReads?: boolean;
  /** How long a token is honoured. Default 600 s. */
  tokenTtlSeconds?: number;
  cookie?: TokenCookieOptions;
  /** Routes that use a writing method but only read: run where they arrive. */
  readRoutes?: RouteSpec[];
  /** Routes that use a reading method but write: replayed like a POST. */
  writeRoutes?: RouteSpec[];
  /**
   * Paths where every request writes, whatever its method (`*` matches anything), e.g.
   * `['/api/topics/*\/posts']` (written without the backslash). They are replayed like a
   * POST; in `fly-replay` mode the answer also asks Fly.io's proxy to cache the replay
   * (`fly-replay-cache`), so later requests there go straight to the primary region without
   * stopping at this instance first: a write from a replica region then costs one hop less.
   * List only paths that never just read — a GET there is sent to the primary region too.
   */
  primaryOnlyPaths?: string[];
  /**
   * How long Fly.io's proxy may keep such a cached replay, in seconds. Default 60; at least 10
   * (Fly's minimum).
   */
  primaryOnlyCacheSeconds?: number;
  /**
   * `REGIONAL_REPLAY_TIMEOUT_MS`: a proxied replay of a write gives up waiting for the primary
   * region's answer after this long and answers 504 (`REGIONAL_REPLAY_TIMEOUT`): whether the
   * write happened is then unknown. Default 30 000 ms.
   */
  replayTimeoutMs?: number;
  /**
   * `REGIONAL_LAG_REPLAY_TIMEOUT_MS`: a read replayed in the primary region because the local
   * replica stayed behind (lag policy `replay`) gives up after this long and answers 504, so a
   * request with a token ends within `maxWaitMs` plus this even when the primary region does
   * not answer (a partition). Proxy mode; under `fly-replay` the platform's proxy replays.
   * Default 5000 ms.
   */
  lagReplayTimeoutMs?: number;
  /**
   * Proxy mode: request bodies up to this size are read whole before a replay takes a
   * connection to the primary region, so slow uploads cannot hold those connections; larger
   * bodies are streamed, a few at a time (half the connections), the rest answered 503.
   * Default 1 MiB (Fly.io replays no larger body).
   */
  maxReplayBodyBytes?: number;
  /**
   * `REGIONAL_REPLAY_BODY_TIMEOUT_MS`: proxy mode: a body to replay must arrive within this
   * (read whole), or with no pause longer than this (streamed); else 408. Default 30 000 ms.
   */
  replayBodyTimeoutMs?: number;
  /** Receives warnings. Default: `console.warn`. */
  onWarning?: (message: string) => void;
  /** Read instead of `process.env`. */
  env?: Readonly<Record<string, string | undefined>>;
  /**
   * Readiness (`/_regional/health/ready`): which pool to check and the bounds. Default: the
   * first `RegionalPool` among `sources`. `false` turns the check off (the endpoint then always
   * answers ready).
   */
  health?: HealthOptions | false;
}

/** The resolved, validated settings of a {@link RegionalHttp}. */
export interface HttpSettings {
  readonly mode: ReplayMode;
  readonly primaryRegion: string | null;
  readonly region: string | null;
  /** True in the primary region and in single-region mode. */
  readonly isPrimaryRegion: boolean;
  readonly keyring: Keyring | null;
  readonly instances: RegionInstances | null;
  readonly maxWaitMs: number;
  readonly lagPolicy: LagPolicy;
  readonly tokens: boolean;
  readonly tokensOnReads: boolean;
  readonly tokenTtlSeconds: number;
  readonly cookie: CookieSettings;
  readonly routes: RouteRules;
  readonly primaryOnlyCacheSeconds: number;
  readonly replayTimeoutMs: number;
  readonly lagReplayTimeoutMs: number;
  readonly maxReplayBodyBytes: number;
  readonly replayBodyTimeoutMs: number;
  readonly sources: readonly ReplicatedSource[];
  readonly warn: (message: string) => void;
}

const REGION_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]*$/;

function region(variable: string, value: string | undefined): string | null {
  if (value === undefined || value.trim() === '') return null;
  if (!REGION_NAME.test(value.trim()))
    throw new ConfigError(variable, `"${value}" is not a region name (like "iad")`);
  return value.trim();
}

function oneOf<T extends string>(
  variable: string,
  value: string | undefined,
  allowed: readonly T[],
  fallback: T,
): T {
  if (value === undefined || value === '') return fallback;
  if (!(allowed as readonly string[]).includes(value)) {
    throw new ConfigError(
      variable,
      `must be ${allowed.map((a) => `"${a}"`).join(' or ')}, got "${value}"`,
    );
  }
  return value as T;
}

function number(variable: string, value: number | string | undefined, fallback: number): number {
  if (value === undefined || value === '') return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0)
    throw new ConfigError(variable, `must be a number >= 0, got "${value}"`);
  return n;
}

/** Options, else the environment, validated; errors name the option or variable. */
export function loadHttpSettings(options: RegionalHttpOptions = {}): HttpSettings {
  const env = options.env ?? process.env;
  const primaryRegion =
    options.primaryRegion !== undefined
      ? region('primaryRegion', options.primaryRegion)
      : region('PRIMARY_REGION', env.PRIMARY_REGION);
  const here =
    options.region !== undefined
      ? region('region', options.region)
      : region(env.REGION ? 'REGION' : 'FLY_REGION', env.REGION || env.FLY_REGION);
  if (primaryRegion && !here) {
    throw new ConfigError(
      'REGION',
      `is not set (nor FLY_REGION), but PRIMARY_REGION=${primaryRegion} is: set REGION to the region this instance runs in`,
    );
  }
  const isPrimaryRegion = !primaryRegion || here === primaryRegion;
  const mode = oneOf<ReplayMode>(
    options.mode !== undefined ? 'mode' : 'REGIONAL_REPLAY_MODE',
    options.mode ?? env.REGIONAL_REPLAY_MODE,
    ['fly-replay', 'proxy'],
    env.FLY_APP_NAME ? 'fly-replay' : 'proxy',
  );

  const keyring =
    options.secret instanceof Keyring
      ? options.secret
      : options.secret !== undefined
        ? new Keyring(options.secret, [], { current: 'secret', previous: 'secret' })
        : Keyring.fromEnv(env);
  if (primaryRegion && !keyring) {
    throw new ConfigError(
      'REGIONAL_SECRET',
      'is not set, but PRIMARY_REGION is: consistency tokens and replay markers are signed with it. Set the same random secret on every instance (e.g. `openssl rand -hex 32`)',
    );
  }

  let instances: RegionInstances | null = options.instances ?? null;
  if (!instances && primaryRegion && !isPrimaryRegion && mode === 'proxy') {
    const variable = options.primaryUrl !== undefined ? 'primaryUrl' : 'REGIONAL_PRIMARY_URL';
    instances = new RegionInstances(options.primaryUrl ?? env.REGIONAL_PRIMARY_URL, { variable });
  }

  const maxWaitVariable = options.maxWaitMs !== undefined ? 'maxWaitMs' : 'REGIONAL_MAX_WAIT_MS';
  const tokenTtlSeconds = number('tokenTtlSeconds', options.tokenTtlSeconds, 600);
  if (tokenTtlSeconds < 1) throw new ConfigError('tokenTtlSeconds', 'must be at least 1 second');
  const sources = options.sources ?? [];
  for (const [i, source] of sources.entries()) {
    if (typeof source?.sourceKey !== 'function' || typeof source.waitFor !== 'function') {
      throw new ConfigError(
        `sources[${i}]`,
        'is not a replicated source (a RegionalPool, or anything with sourceKey(), waitFor() and hasReplayed())',
      );
    }
  }
  return Object.freeze({
    mode,
    primaryRegion,
    region: here,
    isPrimaryRegion,
    keyring,
    instances,
    maxWaitMs: number(maxWaitVariable, options.maxWaitMs ?? env.REGIONAL_MAX_WAIT_MS, 1000),
    lagPolicy: oneOf<LagPolicy>(
      options.lagPolicy !== undefined ? 'lagPolicy' : 'REGIONAL_LAG_POLICY',
      options.lagPolicy ?? env.REGIONAL_LAG_POLICY,
      ['replay', 'primary', 'error'],
      'replay',
    ),
    tokens: options.tokens ?? true,
    tokensOnReads: options.tokensOnReads ?? false,
    tokenTtlSeconds,
    cookie: cookieSettings(options.cookie),
    routes: new RouteRules(options.readRoutes, options.writeRoutes, options.primaryOnlyPaths),
    primaryOnlyCacheSeconds: primaryOnlyCacheSeconds(options.primaryOnlyCacheSeconds),
    replayTimeoutMs: positive(
      options.replayTimeoutMs !== undefined ? 'replayTimeoutMs' : 'REGIONAL_REPLAY_TIMEOUT_MS',
      options.replayTimeoutMs ?? env.REGIONAL_REPLAY_TIMEOUT_MS,
      30_000,
    ),
    lagReplayTimeoutMs: positive(
      options.lagReplayTimeoutMs !== undefined
        ? 'lagReplayTimeoutMs'
        : 'REGIONAL_LAG_REPLAY_TIMEOUT_MS',
      options.lagReplayTimeoutMs ?? env.REGIONAL_LAG_REPLAY_TIMEOUT_MS,
      5_000,
    ),
    maxReplayBodyBytes: positive('maxReplayBodyBytes', options.maxReplayBodyBytes, 1024 * 1024),
    replayBodyTimeoutMs: positive(
      options.replayBodyTimeoutMs !== undefined
        ? 'replayBodyTimeoutMs'
        : 'REGIONAL_REPLAY_BODY_TIMEOUT_MS',
      options.replayBodyTimeoutMs ?? env.REGIONAL_REPLAY_BODY_TIMEOUT_MS,
      30_000,
    ),
    sources,
    warn: options.onWarning ?? ((message: string) => console.warn(`[regional] ${message}`)),
  });
}

/** A whole number > 0 (a time-out or a size: 0 would refuse everything). */
function positive(variable: string, value: number | string | undefined, fallback: number): number {
  if (value === undefined || value === '') return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0)
    throw new ConfigError(variable, `must be a whole number > 0, got "${value}"`);
  return n;
}

function primaryOnlyCacheSeconds(value: number | undefined): number {
  if (value === undefined) return 60;
  if (!Number.isInteger(value) || value < 10) {
    throw new ConfigError(
      'primaryOnlyCacheSeconds',
      `must be a whole number of seconds, at least 10 (Fly.io's minimum for a cached replay), got ${value}`,
    );
  }
  return value;
}
