import type { RegionalConfig } from '../core/config.js';
import { ConfigError } from '../core/errors.js';
import { Keyring } from '../core/signing.js';

type Env = Readonly<Record<string, string | undefined>>;

/** Options of `new Procedures(...)` besides the pool; each overrides the variable named beside it. */
export interface ProceduresSettings {
  /** `REGIONAL_SECRET`: signs every call. Required in multi-region mode. */
  secret?: string;
  /** `REGIONAL_SECRET_PREVIOUS` (comma-separated): still accepted, for rotation. */
  previousSecrets?: string[];
  /**
   * `REGIONAL_PRIMARY_URL`: the primary region's instances, e.g.
   * `http://iad.my-app.internal:8080` (a name may resolve to several). Required in replica
   * regions unless `regionUrl` gives it.
   */
  primaryUrl?: string;
  /**
   * `REGIONAL_REGION_URL`: a template with `{region}` for any region's instances, e.g.
   * `http://{region}.my-app.internal:8080`: for calls to a named region, and the primary's
   * URL when `primaryUrl` is not given. On Fly.io (`FLY_APP_NAME` set) it defaults to
   * `http://{region}.<app>.internal:<PORT or 8080>`. As an option it may also be a function
   * of the region.
   */
  regionUrl?: string | ((region: string) => string);
  /**
   * `REGIONAL_RPC_FALLBACK`: when no primary-region instance can be reached, `direct` runs the
   * call over this instance's own connection to the primary (`DATABASE_URL`; each statement
   * then crosses regions), still exactly once. `off` (default) fails with a clear error.
   */
  fallback?: 'direct' | 'off';
  /** `REGIONAL_RPC_TIMEOUT_MS`: how long one attempt waits for an answer (default 15000). */
  timeoutMs?: number;
  /** `REGIONAL_RPC_ATTEMPTS`: attempts per call before giving up or falling back (default 3). */
  attempts?: number;
  /** `REGIONAL_RPC_MAX_BODY_BYTES`: largest request body served (default 1 MiB); larger gets 413. */
  maxBodyBytes?: number;
  /**
   * `REGIONAL_RPC_RETENTION_MS`: how long the record of a call is kept, and so how long a retry
   * of it is recognised (default 24 h, at least 10 minutes). Calls older than half of it are
   * refused, so a retry never outlives its record.
   */
  retentionMs?: number;
  /** `REGIONAL_RPC_DEBUG=1`: errors carry their stack to the caller. Default off. */
  debug?: boolean;
  /** Where the handler answers (default `/_regional`): `<basePath>/rpc/<name>`, `<basePath>/statement`. */
  basePath?: string;
  /** The table of call records (default `regional_procedure_calls`), created if missing. */
  table?: string;
}

export interface RpcConfig {
  keyring: Keyring | null;
  primaryUrl: { url: string; variable: string } | null;
  regionUrl: { url: (region: string) => string; variable: string } | null;
  fallback: 'direct' | 'off';
  timeoutMs: number;
  attempts: number;
  maxBodyBytes: number;
  retentionMs: number;
  debug: boolean;
  basePath: string;
  table: string;
}

const MIN_RETENTION_MS = 10 * 60_000;

function readInteger(
  option: string,
  variable: string,
  given: number | undefined,
  raw: string | undefined,
  fallback: number,
  min: number,
): number {
  const name = given !== undefined ? option : variable;
  const value = given ?? (raw === undefined || raw === '' ? fallback : Number(raw));
  if (!Number.isSafeInteger(value) || value < min) {
    throw new ConfigError(name, `must be a whole number >= ${min}, got ${given ?? `"${raw}"`}`);
  }
  return value;
}

function readKeyring(settings: ProceduresSettings, env: Env): Keyring | null {
  if (settings.secret !== undefined) {
    return new Keyring(settings.secret, settings.previousSecrets ?? [], {
      current: 'secret',
      previous: 'previousSecrets',
    });
  }
  return Keyring.fromEnv(env);
}

function readRegionUrl(settings: ProceduresSettings, env: Env): RpcConfig['regionUrl'] {
  const variable = settings.regionUrl !== undefined ? 'regionUrl' : 'REGIONAL_REGION_URL';
  const given = settings.regionUrl;
  if (typeof given === 'function') return { url: given, variable };
  let template = given ?? env.REGIONAL_REGION_URL;
  if (!template && env.FLY_APP_NAME) {
    template = `http://{region}.${env.FLY_APP_NAME}.internal:${env.PORT || '8080'}`;
  }
  if (!template) return null;
  if (!template.includes('{region}')) {
    throw new ConfigError(
      variable,
      `"${template}" has no {region}; expected e.g. http://{region}.my-app.internal:8080`,
    );
  }
  const checked = template;
  return { url: (region) => checked.replaceAll('{region}', region), variable };
}

/**
 * Reads the settings of `regional/rpc`, options first, then the environment, and checks them
 * against the pool's configuration: in multi-region mode a secret is required, and a replica
 * region needs the primary region's URL.
 */
export function loadRpcConfig(
  settings: ProceduresSettings,
  regional: RegionalConfig,
  env: Env = process.env,
): RpcConfig {
  const keyring = readKeyring(settings, env);
  if (!keyring && regional.mode === 'multi') {
    throw new ConfigError(
      'REGIONAL_SECRET',
      `is not set, but PRIMARY_REGION=${regional.primaryRegion} is: calls between regions must be signed. ` +
        'Give every instance the same random secret (e.g. `openssl rand -hex 32`).',
    );
  }
  const regionUrl = readRegionUrl(settings, env);
  const primaryVariable = settings.primaryUrl !== undefined ? 'primaryUrl' : 'REGIONAL_PRIMARY_URL';
  const givenPrimary = settings.primaryUrl ?? env.REGIONAL_PRIMARY_URL;
  let primaryUrl: RpcConfig['primaryUrl'] = null;
  if (givenPrimary) primaryUrl = { url: givenPrimary, variable: primaryVariable };
  else if (regionUrl && regional.primaryRegion) {
    primaryUrl = {
      url: regionUrl.url(regional.primaryRegion),
      variable: regionUrl.variable,
    };
  }
  if (regional.mode === 'multi' && !regional.isPrimaryRegion && !primaryUrl) {
    throw new ConfigError(
      'REGIONAL_PRIMARY_URL',
      `is not set: procedures called in ${regional.region} run on an instance in ${regional.primaryRegion}; ` +
        `give its URL, e.g. http://${regional.primaryRegion}.my-app.internal:8080 (or REGIONAL_REGION_URL=http://{region}.my-app.internal:8080)`,
    );
  }

  const fallbackVariable = settings.fallback !== undefined ? 'fallback' : 'REGIONAL_RPC_FALLBACK';
  const fallback = settings.fallback ?? (env.REGIONAL_RPC_FALLBACK || 'off');
  if (fallback !== 'direct' && fallback !== 'off') {
    throw new ConfigError(
      fallbackVariable,
      `must be "direct" (run over this instance's connection to the primary) or "off", got "${fallback}"`,
    );
  }

  const basePath = settings.basePath ?? '/_regional';
  if (!/^(\/[A-Za-z0-9._~-]+)+$/.test(basePath)) {
    throw new ConfigError(
      'basePath',
      `"${basePath}" must be a path like /_regional (no trailing slash)`,
    );
  }
  const table = settings.table ?? 'regional_procedure_calls';
  if (!/^([a-z_][a-z0-9_]{0,62}\.)?[a-z_][a-z0-9_]{0,62}$/.test(table)) {
    throw new ConfigError(
      'table',
      `"${table}" must be a lower-case Postgres name, optionally schema-qualified (e.g. regional.procedure_calls)`,
    );
  }

  const debugRaw = env.REGIONAL_RPC_DEBUG;
  return {
    keyring,
    primaryUrl,
    regionUrl,
    fallback,
    timeoutMs: readInteger(
      'timeoutMs',
      'REGIONAL_RPC_TIMEOUT_MS',
      settings.timeoutMs,
      env.REGIONAL_RPC_TIMEOUT_MS,
      15_000,
      1,
    ),
    attempts: readInteger(
      'attempts',
      'REGIONAL_RPC_ATTEMPTS',
      settings.attempts,
      env.REGIONAL_RPC_ATTEMPTS,
      3,
      1,
    ),
    maxBodyBytes: readInteger(
      'maxBodyBytes',
      'REGIONAL_RPC_MAX_BODY_BYTES',
      settings.maxBodyBytes,
      env.REGIONAL_RPC_MAX_BODY_BYTES,
      1024 * 1024,
      1024,
    ),
    retentionMs: readInteger(
      'retentionMs',
      'REGIONAL_RPC_RETENTION_MS',
      settings.retentionMs,
      env.REGIONAL_RPC_RETENTION_MS,
      24 * 3600_000,
      MIN_RETENTION_MS,
    ),
    debug: settings.debug ?? (debugRaw === '1' || debugRaw === 'true'),
    basePath,
    table,
  };
}
