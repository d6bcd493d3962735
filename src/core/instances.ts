import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { type Dispatcher, Pool } from 'undici';
import { redactUrl } from './config.js';
import { ConfigError } from './errors.js';

/**
 * The app instances of one region, as reached from here: what procedures and the HTTP proxy
 * send requests to. One URL (e.g. `REGIONAL_PRIMARY_URL=http://iad.my-app.internal:8080`)
 * may name several instances — a host name that resolves to several addresses, as Fly's
 * `<region>.<app>.internal` does — and an instance that fails is skipped for a while.
 * Connections are kept alive (undici), so a call costs one round trip, not a handshake too.
 *
 * @example
 * const primary = new RegionInstances(process.env.REGIONAL_PRIMARY_URL, { variable: 'REGIONAL_PRIMARY_URL' });
 * const { statusCode, body } = await primary.request({ method: 'POST', path: '/_regional/rpc/x', body: '{}' });
 */
export interface RegionInstancesOptions {
  /** The variable or option the URL came from, named in errors. */
  variable?: string;
  /** Connecting to one instance gives up after this long (default 3000 ms). */
  connectTimeoutMs?: number;
  /** After a connection failure, an instance is tried last for this long (default 5000 ms). */
  failureCooldownMs?: number;
  /** How long resolved addresses are reused before resolving the name again (default 5000 ms). */
  resolveEveryMs?: number;
  /** Keep-alive connections per instance (default 16). */
  connections?: number;
  /**
   * Finds the addresses of a host name (default: the system resolver, every A and AAAA
   * record). Replace it for another discovery mechanism, e.g. a fixed list.
   */
  resolveHost?: (hostname: string) => Promise<string[]>;
}

export interface InstanceRequest {
  method: string;
  /** Path and query, e.g. `/_regional/rpc/createPost`. */
  path: string;
  headers?: Record<string, string | string[] | undefined>;
  body?: Dispatcher.DispatchOptions['body'];
  signal?: AbortSignal;
  /** Give up waiting for the response headers after this long. */
  headersTimeoutMs?: number;
}

/** A connection failure: nothing reached the instance, or its answer was lost. */
export function isConnectionError(error: unknown): boolean {
  const code = (error as { code?: string } | undefined)?.code ?? '';
  return [
    'ECONNREFUSED',
    'ECONNRESET',
    'EPIPE',
    'ETIMEDOUT',
    'EHOSTUNREACH',
    'ENETUNREACH',
    'ENOTFOUND',
    'EAI_AGAIN',
    'UND_ERR_CONNECT_TIMEOUT',
    'UND_ERR_SOCKET',
    'UND_ERR_CLOSED',
    'UND_ERR_HEADERS_TIMEOUT',
    'UND_ERR_BODY_TIMEOUT',
  ].includes(code);
}

export class RegionInstances {
  /** The URL as configured. */
  readonly url: URL;
  private readonly variable: string;
  private readonly options: Required<Omit<RegionInstancesOptions, 'variable'>>;
  private resolved: { origins: string[]; at: number } | null = null;
  private readonly failedUntil = new Map<string, number>();
  private readonly pools = new Map<string, Pool>();

  constructor(url: string | undefined, options: RegionInstancesOptions = {}) {
    this.variable = options.variable ?? 'url';
    if (!url)
      throw new ConfigError(
        this.variable,
        'is not set; give the URL of the instances, e.g. http://iad.my-app.internal:8080',
      );
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new ConfigError(
        this.variable,
        `"${redactUrl(url)}" is not a URL; expected e.g. http://iad.my-app.internal:8080`,
      );
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
      throw new ConfigError(this.variable, `${redactUrl(url)} must start with http:// or https://`);
    }
    this.url = parsed;
    this.options = {
      connectTimeoutMs: options.connectTimeoutMs ?? 3000,
      failureCooldownMs: options.failureCooldownMs ?? 5000,
      resolveEveryMs: options.resolveEveryMs ?? 5000,
      connections: options.connections ?? 16,
      resolveHost:
        options.resolveHost ??
        (async (host) => (await lookup(host, { all: true })).map((a) => a.address)),
    };
  }

  /** Origins (`http://address:port`) of every instance, healthy ones first. */
  async origins(): Promise<string[]> {
    const now = Date.now();
    if (!this.resolved || now - this.resolved.at > this.options.resolveEveryMs) {
      this.resolved = { origins: await this.resolve(), at: now };
    }
    const healthy = this.resolved.origins.filter((o) => (this.failedUntil.get(o) ?? 0) <= now);
    const cooling = this.resolved.origins.filter((o) => (this.failedUntil.get(o) ?? 0) > now);
    return [...healthy, ...cooling];
  }

  /**
   * Sends a request to the first instance that takes it. A connection failure marks that
   * instance and moves on to the next one only if `retry` says the request may be sent again
   * (a body already streamed cannot be). Throws the last error when none takes it.
   */
  async request(
    request: InstanceRequest,
    retry: (error: unknown) => boolean = () => false,
  ): Promise<Dispatcher.ResponseData> {
    const origins = await this.origins();
    let lastError: unknown;
    for (const origin of origins) {
      try {
        return await this.pool(origin).request({
          method: request.method as Dispatcher.HttpMethod,
          path: request.path,
          headers: { ...request.headers, host: this.url.host },
          body: request.body ?? null,
          signal: request.signal,
          headersTimeout: request.headersTimeoutMs,
        });
      } catch (error) {
        lastError = error;
        if (!isConnectionError(error)) throw error;
        this.failedUntil.set(origin, Date.now() + this.options.failureCooldownMs);
        if (!retry(error)) throw error;
      }
    }
    throw lastError ?? new Error(`${this.variable}: ${this.url.host} resolved to no address`);
  }

  /** Closes every kept-alive connection. */
  async close(): Promise<void> {
    const pools = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(pools.map((pool) => pool.close()));
  }

  private pool(origin: string): Pool {
    let pool = this.pools.get(origin);
    if (!pool) {
      pool = new Pool(origin, {
        connections: this.options.connections,
        connectTimeout: this.options.connectTimeoutMs,
        keepAliveTimeout: 30_000,
        pipelining: 1,
      });
      this.pools.set(origin, pool);
    }
    return pool;
  }

  private async resolve(): Promise<string[]> {
    const { hostname, port, protocol } = this.url;
    const bare = hostname.replace(/^\[|\]$/g, '');
    const effectivePort = port || (protocol === 'https:' ? '443' : '80');
    if (isIP(bare)) return [`${protocol}//${hostname}:${effectivePort}`];
    let addresses: string[];
    try {
      addresses = await this.options.resolveHost(bare);
    } catch (error) {
      throw Object.assign(
        new Error(`${this.variable}: cannot resolve ${bare}: ${(error as Error).message}`),
        {
          code: (error as { code?: string }).code ?? 'ENOTFOUND',
        },
      );
    }
    return addresses.map((a) => `${protocol}//${isIP(a) === 6 ? `[${a}]` : a}:${effectivePort}`);
  }
}
