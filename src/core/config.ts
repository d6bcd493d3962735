import { ConfigError } from './errors.js';

/** What a read does when the local replica has not caught up within the bound. */
export type WaitPolicy = 'primary' | 'error';

/**
 * The options every part shares (Postgres, Redis): where this instance runs, and how long a
 * read waits for its local replica. Anything not given is read from the variable named beside it.
 */
export interface RegionSettingsOptions {
  /** `PRIMARY_REGION`: where the writable primary lives. Unset: single-region mode. */
  primaryRegion?: string;
  /** `REGION`, else `FLY_REGION`: where this instance runs. */
  region?: string;
  /** `REGIONAL_MAX_WAIT_MS`: longest a read waits for the local replica. Default 1000. */
  maxWaitMs?: number;
  /** `REGIONAL_WAIT_POLICY`: past the bound, read from the `primary` (default) or throw (`error`). */
  waitPolicy?: WaitPolicy;
  /** `REGIONAL_REPLICA_RETRY_MS`: after a replica failure, reads use the primary this long. Default 2000. */
  replicaRetryMs?: number;
}

/** {@link RegionSettingsOptions}, resolved and validated. */
export interface RegionSettings {
  /** `single`: no `PRIMARY_REGION`; everything goes to the primary and nothing waits. */
  readonly mode: 'single' | 'multi';
  readonly primaryRegion: string | null;
  readonly region: string | null;
  /** True in the primary region, and in single-region mode. */
  readonly isPrimaryRegion: boolean;
  readonly maxWaitMs: number;
  readonly waitPolicy: WaitPolicy;
  readonly replicaRetryMs: number;
}

/**
 * Options that override the environment. Every field is optional; anything not given is read
 * from the variable named beside it.
 */
export interface RegionalOptions extends RegionSettingsOptions {
  /** `DATABASE_URL`: the primary, as reached from this region. */
  databaseUrl?: string;
  /** `DATABASE_REPLICA_URL`: this region's replica. `null` means none. */
  replicaUrl?: string | null;
  /**
   * `REGIONAL_PRESET`: `fly` derives the replica URL the way Fly.io Postgres clusters expect
   * (the primary's host, port 5433) when none is given. Default: `fly` when `FLY_APP_NAME` is
   * set (running on Fly.io), else `none`.
   */
  preset?: 'fly' | 'none';
}

/** The resolved, validated configuration. In single mode everything goes to `DATABASE_URL`. */
export interface RegionalConfig extends RegionSettings {
  readonly databaseUrl: string;
  /** This region's replica; `null` in the primary region, in single mode, or where there is none. */
  readonly replicaUrl: string | null;
  /** Problems worth a warning that do not stop start-up (e.g. a replica region without a replica). */
  readonly warnings: readonly string[];
}

export type Env = Readonly<Record<string, string | undefined>>;

const FLY_REPLICA_PORT = '5433';

/**
 * `name=value` parameters whose value is a secret: `password`, `sslpassword`, `pass`, `pwd`, and
 * anything else naming a pass(word), secret or token. Matched in a URL's query and, for values
 * that are not URLs, anywhere (libpq's `host=… password=…` form); a quoted value is one value.
 */
const SECRET_PARAMETER =
  /([\w.%-]*(?:pass|pwd|secret|token)[\w.%-]*)(\s*=\s*)('(?:[^'\\]|\\.)*'?|[^&;#\s]*)/gi;

const hideSecretParameters = (text: string): string => text.replace(SECRET_PARAMETER, '$1$2***');

/**
 * A URL for messages and output: the password of its userinfo and password-like parameters
 * (`?password=…`, `sslpassword`, `pass`, …) become `***`. A value that is not a URL is never
 * shown as given: everything between `scheme://user:` and the last `@` (where a password would
 * be) is hidden too, the whole userinfo where it has no `:`.
 *
 * @example
 * redactUrl('postgres://app:s3cret@db:5432/app?sslpassword=k3y'); // 'postgres://app:***@db:5432/app?sslpassword=***'
 */
export function redactUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return hideSecretParameters(redactUserinfo(url));
  }
  // Without `//` (`postgres:user:pw@host`) the URL parses with no host and no password field.
  if (!parsed.host) return hideSecretParameters(redactUserinfo(url));
  const search = hideSecretParameters(parsed.search);
  const hash = hideSecretParameters(parsed.hash);
  // Nothing to hide: the URL as given (`new URL` would normalise it, e.g. add a trailing `/`).
  if (!parsed.password && search === parsed.search && hash === parsed.hash) return url;
  if (parsed.password) parsed.password = '***';
  parsed.search = search;
  parsed.hash = hash;
  return parsed.toString();
}

/** Hides what could be a password in the userinfo of text that does not parse as a URL. */
function redactUserinfo(text: string): string {
  const at = text.lastIndexOf('@');
  if (at === -1) return text;
  const slashes = text.indexOf('//');
  const start = slashes !== -1 && slashes < at ? slashes + 2 : text.indexOf(':') + 1;
  const colon = text.indexOf(':', start);
  // No `:` in the userinfo: some clients take a lone userinfo as the password (`redis://s3cret@host`).
  const end = colon !== -1 && colon < at ? colon + 1 : start;
  return `${text.slice(0, end)}***${text.slice(at)}`;
}

/** A kind of URL: the protocols it may use, its name and an example, for error messages. */
export interface UrlKind {
  /** Protocols with their colon, e.g. `redis:`; the first is named in messages. */
  protocols: readonly string[];
  /** e.g. `Postgres`. */
  name: string;
  example: string;
}

const shorten = (text: string): string => (text.length > 80 ? `${text.slice(0, 80)}…` : text);

/**
 * Parses a service URL, naming `variable` in errors (never the password).
 *
 * @example
 * parseServiceUrl('REDIS_URL', process.env.REDIS_URL, { protocols: ['redis:'], name: 'Redis', example: 'redis://host:6379' });
 */
export function parseServiceUrl(variable: string, value: string, kind: UrlKind): URL {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ConfigError(
      variable,
      `"${shorten(redactUrl(value))}" is not a URL; expected ${kind.example}`,
    );
  }
  if (!kind.protocols.includes(url.protocol)) {
    const starts = kind.protocols.map((p) => `${p}//`);
    throw new ConfigError(
      variable,
      `${redactUrl(value)} is not a ${kind.name} URL; it must start with ${starts.slice(0, -1).join(', ')}${starts.length > 1 ? ' or ' : ''}${starts.at(-1)}`,
    );
  }
  if (!url.hostname) throw new ConfigError(variable, `${redactUrl(value)} names no host`);
  return url;
}

const POSTGRES_URL: UrlKind = {
  protocols: ['postgres:', 'postgresql:'],
  name: 'Postgres',
  example: 'postgres://user:password@host:5432/database',
};

const parsePostgresUrl = (variable: string, value: string): URL =>
  parseServiceUrl(variable, value, POSTGRES_URL);

function readNumber(
  variable: string,
  given: number | undefined,
  raw: string | undefined,
  fallback: number,
  min: number,
): number {
  if (given !== undefined) {
    if (!Number.isFinite(given) || given < min)
      throw new ConfigError(variable, `must be a number >= ${min}, got ${given}`);
    return given;
  }
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < min) {
    throw new ConfigError(variable, `must be a number of milliseconds >= ${min}, got "${raw}"`);
  }
  return value;
}

const REGION_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]*$/;

function readRegion(variable: string, value: string | undefined): string | undefined {
  if (value === undefined || value === '') return undefined;
  const trimmed = value.trim();
  if (!REGION_NAME.test(trimmed)) {
    throw new ConfigError(
      variable,
      `"${value}" is not a region name (letters, digits, "-" and "_", like "iad")`,
    );
  }
  return trimmed;
}

/**
 * Reads the settings every part shares — regions, the waiting bound and policy — from the
 * environment, with `options` taking precedence. Errors name the variable at fault.
 *
 * @example
 * // PRIMARY_REGION=iad REGION=syd REGIONAL_MAX_WAIT_MS=500
 * loadRegionSettings(); // { mode: 'multi', region: 'syd', isPrimaryRegion: false, maxWaitMs: 500, … }
 */
export function loadRegionSettings(
  options: RegionSettingsOptions = {},
  env: Env = process.env,
): RegionSettings {
  const primaryRegion =
    options.primaryRegion !== undefined
      ? readRegion('primaryRegion', options.primaryRegion)
      : readRegion('PRIMARY_REGION', env.PRIMARY_REGION);
  const regionVariable =
    options.region !== undefined ? 'region' : env.REGION ? 'REGION' : 'FLY_REGION';
  const region = readRegion(regionVariable, options.region ?? (env.REGION || env.FLY_REGION));

  const maxWaitMs = readNumber(
    options.maxWaitMs !== undefined ? 'maxWaitMs' : 'REGIONAL_MAX_WAIT_MS',
    options.maxWaitMs,
    env.REGIONAL_MAX_WAIT_MS,
    1000,
    0,
  );
  const replicaRetryMs = readNumber(
    options.replicaRetryMs !== undefined ? 'replicaRetryMs' : 'REGIONAL_REPLICA_RETRY_MS',
    options.replicaRetryMs,
    env.REGIONAL_REPLICA_RETRY_MS,
    2000,
    0,
  );
  const policyVariable = options.waitPolicy !== undefined ? 'waitPolicy' : 'REGIONAL_WAIT_POLICY';
  const waitPolicy = options.waitPolicy ?? (env.REGIONAL_WAIT_POLICY || 'primary');
  if (waitPolicy !== 'primary' && waitPolicy !== 'error') {
    throw new ConfigError(
      policyVariable,
      `must be "primary" (read from the primary) or "error", got "${waitPolicy}"`,
    );
  }

  if (!primaryRegion) {
    // Single-region mode: local development and tests. Nothing routes, nothing waits.
    return {
      mode: 'single',
      primaryRegion: null,
      region: region ?? null,
      isPrimaryRegion: true,
      maxWaitMs,
      waitPolicy,
      replicaRetryMs,
    };
  }
  if (!region) {
    throw new ConfigError(
      'REGION',
      `is not set (nor FLY_REGION), but PRIMARY_REGION=${primaryRegion} is: set REGION to the region this instance runs in`,
    );
  }
  if (region !== primaryRegion && region.toLowerCase() === primaryRegion.toLowerCase()) {
    throw new ConfigError(
      regionVariable,
      `"${region}" and PRIMARY_REGION "${primaryRegion}" differ only in case; region names are compared exactly, so spell them the same`,
    );
  }
  return {
    mode: 'multi',
    primaryRegion,
    region,
    isPrimaryRegion: region === primaryRegion,
    maxWaitMs,
    waitPolicy,
    replicaRetryMs,
  };
}

/**
 * Reads Regional's configuration from the environment, with `options` taking precedence, and
 * validates it. Errors name the variable at fault and what would be right.
 *
 * @example
 * // PRIMARY_REGION=iad REGION=syd DATABASE_URL=postgres://… DATABASE_REPLICA_URL=postgres://…
 * const config = loadConfig();
 * config.isPrimaryRegion; // false
 *
 * @example
 * loadConfig({ databaseUrl: 'postgres://localhost/app' }).mode; // 'single'
 */
export function loadConfig(options: RegionalOptions = {}, env: Env = process.env): RegionalConfig {
  const warnings: string[] = [];
  const databaseVariable = options.databaseUrl !== undefined ? 'databaseUrl' : 'DATABASE_URL';
  const databaseUrl = options.databaseUrl ?? env.DATABASE_URL;
  if (!databaseUrl) {
    throw new ConfigError(
      databaseVariable,
      'is not set; give the primary database URL, e.g. postgres://user:password@host:5432/app',
    );
  }
  const primaryUrl = parsePostgresUrl(databaseVariable, databaseUrl);
  const settings = loadRegionSettings(options, env);
  const { primaryRegion, region, isPrimaryRegion } = settings;

  const presetVariable = options.preset !== undefined ? 'preset' : 'REGIONAL_PRESET';
  const preset = options.preset ?? (env.REGIONAL_PRESET || (env.FLY_APP_NAME ? 'fly' : 'none'));
  if (preset !== 'fly' && preset !== 'none') {
    throw new ConfigError(presetVariable, `must be "fly" or "none", got "${preset}"`);
  }

  const replicaVariable = options.replicaUrl !== undefined ? 'replicaUrl' : 'DATABASE_REPLICA_URL';
  const givenReplica =
    options.replicaUrl !== undefined ? options.replicaUrl : env.DATABASE_REPLICA_URL || null;

  if (settings.mode === 'single') {
    return Object.freeze({
      ...settings,
      databaseUrl,
      replicaUrl: null,
      warnings: Object.freeze(warnings),
    });
  }

  let replicaUrl: string | null = null;
  if (givenReplica) {
    if (isPrimaryRegion) {
      throw new ConfigError(
        replicaVariable,
        `is set in the primary region (${primaryRegion}), where every query goes to the primary; unset it there`,
      );
    }
    parsePostgresUrl(replicaVariable, givenReplica);
    if (givenReplica === databaseUrl) {
      throw new ConfigError(
        replicaVariable,
        `is the same as ${databaseVariable}; it must point at this region's replica`,
      );
    }
    replicaUrl = givenReplica;
  } else if (!isPrimaryRegion && preset === 'fly') {
    const derived = new URL(primaryUrl.toString());
    derived.port = FLY_REPLICA_PORT;
    replicaUrl = derived.toString();
  } else if (!isPrimaryRegion) {
    warnings.push(
      `Region ${region} has no replica (DATABASE_REPLICA_URL is not set): every query goes to the primary in ${primaryRegion}. ` +
        'Set DATABASE_REPLICA_URL to the local replica for fast reads.',
    );
  }

  return Object.freeze({
    ...settings,
    databaseUrl,
    replicaUrl,
    warnings: Object.freeze(warnings),
  });
}
