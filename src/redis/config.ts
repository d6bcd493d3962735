import {
  type Env,
  loadRegionSettings,
  parseServiceUrl,
  type RegionSettings,
  type RegionSettingsOptions,
  type UrlKind,
} from '../core/config.js';
import { ConfigError } from '../core/errors.js';

/** Options that override the environment; anything not given is read from the variable beside it. */
export interface RedisOptions extends RegionSettingsOptions {
  /** `REDIS_URL`: the primary Redis, as reached from this region (the shared store writes there). */
  url?: string;
  /** `REDIS_REPLICA_URL`: this region's replica of it (not in the primary region). `null`: none. */
  replicaUrl?: string | null;
  /**
   * `REDIS_CACHE_URL`: this region's cache instance, not replicated. In single-region mode it
   * defaults to `REDIS_URL`. `null`: none.
   */
  cacheUrl?: string | null;
}

/** The resolved, validated Redis configuration. */
export interface RedisConfig extends RegionSettings {
  /** The primary Redis; `null` when `REDIS_URL` is not set (the shared store cannot run). */
  readonly url: string | null;
  /** This region's replica; `null` in the primary region, in single mode, or where there is none. */
  readonly replicaUrl: string | null;
  /** This region's cache instance; `null` where there is none (the cache then always misses). */
  readonly cacheUrl: string | null;
  /** Problems worth a warning that do not stop start-up. */
  readonly warnings: readonly string[];
}

const REDIS_URL: UrlKind = {
  protocols: ['redis:', 'rediss:'],
  name: 'Redis',
  example: 'redis://:password@host:6379 (or rediss:// for TLS)',
};

function parseRedisUrl(variable: string, value: string): string {
  parseServiceUrl(variable, value, REDIS_URL);
  return value;
}

function given(
  options: RedisOptions,
  key: 'url' | 'replicaUrl' | 'cacheUrl',
  variable: string,
  env: Env,
): { variable: string; value: string | null } {
  if (options[key] !== undefined) return { variable: key, value: options[key] || null };
  return { variable, value: env[variable] || null };
}

/**
 * Reads the Redis configuration from the environment (`REDIS_URL`, `REDIS_REPLICA_URL`,
 * `REDIS_CACHE_URL`, and the shared `PRIMARY_REGION`, `REGION`, `REGIONAL_MAX_WAIT_MS`,
 * `REGIONAL_WAIT_POLICY`, `REGIONAL_REPLICA_RETRY_MS`), with `options` taking precedence.
 * Errors name the variable at fault and what would be right.
 *
 * @example
 * // PRIMARY_REGION=iad REGION=syd REDIS_URL=redis://… REDIS_REPLICA_URL=redis://… REDIS_CACHE_URL=redis://…
 * const config = loadRedisConfig();
 * config.replicaUrl; // the syd replica
 */
export function loadRedisConfig(options: RedisOptions = {}, env: Env = process.env): RedisConfig {
  const settings = loadRegionSettings(options, env);
  const warnings: string[] = [];
  const primary = given(options, 'url', 'REDIS_URL', env);
  const replica = given(options, 'replicaUrl', 'REDIS_REPLICA_URL', env);
  const cache = given(options, 'cacheUrl', 'REDIS_CACHE_URL', env);
  const url = primary.value && parseRedisUrl(primary.variable, primary.value);
  if (replica.value) parseRedisUrl(replica.variable, replica.value);
  if (cache.value) parseRedisUrl(cache.variable, cache.value);

  if (settings.mode === 'single') {
    return Object.freeze({
      ...settings,
      url,
      replicaUrl: null,
      cacheUrl: cache.value ?? url,
      warnings: Object.freeze(warnings),
    });
  }

  const { region, primaryRegion, isPrimaryRegion } = settings;
  let replicaUrl: string | null = null;
  if (replica.value) {
    if (isPrimaryRegion) {
      throw new ConfigError(
        replica.variable,
        `is set in the primary region (${primaryRegion}), where the shared store reads the primary itself; unset it there`,
      );
    }
    if (replica.value === url) {
      throw new ConfigError(
        replica.variable,
        `is the same as ${primary.variable}; it must point at this region's replica`,
      );
    }
    replicaUrl = replica.value;
  } else if (!isPrimaryRegion && url) {
    warnings.push(
      `Region ${region} has no Redis replica (REDIS_REPLICA_URL is not set): every shared-store read goes to the primary in ${primaryRegion}. ` +
        'Set REDIS_REPLICA_URL to the local replica for fast reads.',
    );
  }
  if (cache.value && cache.value === url && !isPrimaryRegion) {
    throw new ConfigError(
      cache.variable,
      `is the same as ${primary.variable}, the primary in ${primaryRegion}; the cache must be this region's own Redis instance`,
    );
  }
  if (!cache.value) {
    warnings.push(
      `Region ${region} has no cache instance (REDIS_CACHE_URL is not set): the regional cache misses every time. ` +
        'Set REDIS_CACHE_URL to a Redis instance in this region.',
    );
  }
  return Object.freeze({
    ...settings,
    url,
    replicaUrl,
    cacheUrl: cache.value,
    warnings: Object.freeze(warnings),
  });
}
