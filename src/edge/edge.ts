import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { Agent, type Dispatcher } from 'undici';
import { HOP_BY_HOP, hasBody } from '../http/headers.js';
import { globMatcher } from '../http/routes.js';

/** Where a region's app instance listens, as reached from within its own region. */
export interface EdgeApp {
  port: number;
  host?: string;
}

/**
 * How the edge reaches an app in another region. A `LocalCluster` is one: its paths cross the
 * latency link between the regions.
 */
export interface EdgeLinks {
  /** A path from region `from` to a TCP port in region `to`: the port to connect to. */
  route(route: { from: string; to: string; port: number; name: string }): Promise<number>;
  /** Closes a path `route` made; the edge closes its own when it closes. */
  unroute(port: number): Promise<unknown>;
}

export interface LocalEdgeOptions {
  /** Each region's app instance. */
  apps: Readonly<Record<string, EdgeApp>>;
  /**
   * How the edge in one region reaches an app in another: `links: cluster` (a `LocalCluster`)
   * sends it through the latency link. Default: directly.
   */
  links?: EdgeLinks;
  /** Entry ports by region (default: free ports). */
  ports?: Readonly<Record<string, number>>;
  /**
   * Entry regions whose clients a given region's app serves first, e.g. `{ syd: 'iad' }` for
   * an app that runs in iad only: clients in syd cross the link to it. Default: every region
   * in `apps` serves its own entry.
   */
  entries?: Readonly<Record<string, string>>;
  /** Largest request body kept so the request can be replayed (default 1 MiB, as on Fly.io). */
  maxReplayBodyBytes?: number;
  /** `fly-replay` answers followed for one request before giving up (default 3). */
  maxReplays?: number;
  /**
   * How long the edge waits for an app's answer to start before answering 504 itself, as a
   * platform's proxy does (default 60 000 ms).
   */
  timeoutMs?: number;
}

/** Counters since the edge started. */
export interface LocalEdgeStats {
  requests: number;
  /** Requests re-sent to another region because the app answered `fly-replay`. */
  replays: number;
  /** Requests answered by the edge itself with an error (app unreachable, replay refused). */
  failures: number;
  /** Requests sent straight to another region by a cached replay (`fly-replay-cache`). */
  replayCacheHits: number;
}

/** A replay the edge remembers (`fly-replay-cache`): requests matching go straight to `region`. */
interface CachedReplay {
  /** The `host/path` glob as the app gave it. */
  pattern: string;
  matches: (target: string) => boolean;
  region: string;
  expiresAt: number;
}

/** Fly.io's minimum lifetime of a cached replay. */
const MIN_REPLAY_CACHE_SECONDS = 10;

const ONE_MIB = 1024 * 1024;

/** The fields of a `fly-replay` answer header the edge honours. */
export interface FlyReplay {
  region?: string;
  state?: string;
  /** How long to try the replay, in ms (`timeout=2s`, `timeout=800ms`). */
  timeoutMs?: number;
  /** Bring the request back to the instance that asked for the replay if it fails. */
  fallback?: 'force_self' | 'prefer_self';
}

/** Parses a `fly-replay` answer header (the fields the edge honours; others are ignored). */
export function parseFlyReplay(value: string): FlyReplay {
  const out: FlyReplay = {};
  for (const field of value.split(';')) {
    const eq = field.indexOf('=');
    if (eq < 0) continue;
    const name = field.slice(0, eq).trim();
    const raw = field.slice(eq + 1).trim();
    const text = raw.startsWith('"') && raw.endsWith('"') ? raw.slice(1, -1) : raw;
    if (name === 'region') out.region = text.split(',')[0]?.trim();
    if (name === 'state') out.state = text;
    if (name === 'fallback' && (text === 'force_self' || text === 'prefer_self'))
      out.fallback = text;
    if (name === 'timeout') {
      const match = /^(\d+(?:\.\d+)?)(ms|s)$/.exec(text);
      if (match) out.timeoutMs = Number(match[1]) * (match[2] === 's' ? 1000 : 1);
    }
  }
  return out;
}

/**
 * A small stand-in for a platform's proxy (Fly.io's), for local runs and tests: one entry
 * port per region, sending each client to that region's app instance, and honouring
 * `fly-replay: region=<r>` answers by re-sending the request — same method, path, headers and
 * body, plus `fly-replay-src` with the `state` the app gave — to region `r`'s instance,
 * through the latency link between the two regions. Bodies over 1 MiB cannot be replayed
 * (as on Fly.io). Like Fly's proxy it keeps replays the app asks it to cache
 * (`fly-replay-cache: <host>/<path glob>` with `fly-replay-cache-ttl-secs` of at least 10) and
 * sends later matching requests entering the same region straight to that region, until the
 * time is up or the region there answers `fly-replay-cache: invalidate`. A client's own
 * `fly-replay-src` header is passed on as is: the app must not trust it unless it verifies it.
 * A replay's `timeout` and `fallback=force_self|prefer_self` are honoured: a replay that fails
 * goes back to the instance that asked for it, with `fly-replay-failed`. (Fly's proxy counts a
 * replay failed when it could not open a connection to the target; the local links accept
 * connections even while cut, so here a replay also fails when the target has not answered
 * within the `timeout` — what a partition that drops connection attempts looks like on Fly.)
 *
 * @example
 * const edge = await LocalEdge.start({ apps: { iad: { port: 3001 }, syd: { port: 3002 } }, links: cluster });
 * await fetch(`${edge.url('syd')}/posts`, { method: 'POST', body });
 * await edge.close();
 */
export class LocalEdge {
  private readonly servers = new Map<string, http.Server>();
  private readonly targets = new Map<string, Promise<number>>();
  /** Paths this edge made through `links`, closed with it. */
  private readonly routed: Promise<number>[] = [];
  private readonly agent = new Agent({ keepAliveTimeout: 30_000, connections: 64 });
  private readonly counters: LocalEdgeStats = {
    requests: 0,
    replays: 0,
    failures: 0,
    replayCacheHits: 0,
  };
  /** Cached replays per entry region. */
  private readonly replayCache = new Map<string, CachedReplay[]>();
  private readonly maxBody: number;
  private readonly maxReplays: number;
  private readonly timeoutMs: number;

  private constructor(private readonly options: LocalEdgeOptions) {
    this.maxBody = options.maxReplayBodyBytes ?? ONE_MIB;
    this.maxReplays = options.maxReplays ?? 3;
    this.timeoutMs = options.timeoutMs ?? 60_000;
  }

  static async start(options: LocalEdgeOptions): Promise<LocalEdge> {
    const regions = Object.keys(options.apps);
    if (regions.length === 0)
      throw new TypeError('apps: give at least one region, e.g. { iad: { port: 3000 } }');
    for (const [region, app] of Object.entries(options.apps)) {
      if (!Number.isInteger(app.port) || app.port <= 0 || app.port > 65535)
        throw new TypeError(`apps.${region}.port: ${app.port} is not a TCP port`);
    }
    for (const [entry, home] of Object.entries(options.entries ?? {})) {
      if (!options.apps[home])
        throw new TypeError(`entries.${entry}: "${home}" has no app (apps: ${regions.join(', ')})`);
    }
    const edge = new LocalEdge(options);
    try {
      const entries = [...new Set([...regions, ...Object.keys(options.entries ?? {})])];
      for (const region of entries) await edge.listen(region, options.ports?.[region] ?? 0);
    } catch (error) {
      await edge.close();
      throw error;
    }
    return edge;
  }

  /** The entry URL of `region`: what a client in that region connects to. */
  url(region: string): string {
    const server = this.servers.get(region);
    if (!server)
      throw new Error(
        `The edge has no region "${region}" (regions: ${[...this.servers.keys()].join(', ')})`,
      );
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  /** Entry URLs of every region. */
  get entries(): Record<string, string> {
    return Object.fromEntries([...this.servers.keys()].map((region) => [region, this.url(region)]));
  }

  stats(): LocalEdgeStats {
    return { ...this.counters };
  }

  async close(): Promise<void> {
    await Promise.all(
      [...this.servers.values()].map(
        (server) =>
          new Promise<void>((resolve) => {
            server.close(() => resolve());
            server.closeAllConnections();
          }),
      ),
    );
    this.servers.clear();
    // Like closeAllConnections above: answers still streaming are cut, not waited for.
    await this.agent.destroy();
    const links = this.options.links;
    const routed = await Promise.allSettled(this.routed.splice(0));
    this.targets.clear();
    // A path that could not be made was reported to the request that asked for it.
    await Promise.all(
      routed.flatMap((r) => (r.status === 'fulfilled' && links ? [links.unroute(r.value)] : [])),
    );
  }

  private async listen(region: string, port: number): Promise<void> {
    const server = http.createServer((req, res) => {
      this.handle(region, req, res).catch((error) => res.destroy(error as Error));
    });
    server.keepAliveTimeout = 30_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    this.servers.set(region, server);
  }

  /** The port that reaches `to`'s app from the edge in `from` (through the link if they differ). */
  private portFor(from: string, to: string): Promise<number> {
    const key = `${from}>${to}`;
    let port = this.targets.get(key);
    if (!port) {
      const app = this.options.apps[to] as EdgeApp;
      port =
        from === to || !this.options.links
          ? Promise.resolve(app.port)
          : this.options.links.route({ from, to, port: app.port, name: 'edge' });
      this.targets.set(key, port);
      if (from !== to && this.options.links) this.routed.push(port);
    }
    return port;
  }

  private async handle(
    entry: string,
    req: http.IncomingMessage,
    res: http.ServerResponse,
  ): Promise<void> {
    this.counters.requests++;
    const { body, replayable } = await readBody(req, this.maxBody);
    let region = this.options.entries?.[entry] ?? entry;
    let replaySource: string | undefined;
    const target = hostAndPath(req);
    let cached = this.cachedReplay(entry, target);
    if (cached) {
      this.counters.replayCacheHits++;
      replaySource = `instance=replay-cache;region=${region};t=${Date.now() * 1000}`;
      region = cached.region;
    }
    /** The replay asked for, while one is under way: its time-out and where to fall back. */
    let asked: { from: string; replay: FlyReplay } | null = null;
    let failed: string | undefined;
    for (let hops = 0; ; hops++) {
      const app = this.options.apps[region] as EdgeApp;
      let response: Dispatcher.ResponseData;
      try {
        const port = await this.portFor(entry, region);
        response = await this.agent.request({
          origin: `http://${app.host ?? '127.0.0.1'}:${port}`,
          method: (req.method ?? 'GET') as Dispatcher.HttpMethod,
          path: req.url ?? '/',
          headers: forwardHeaders(req, replaySource, failed),
          body,
          headersTimeout: asked?.replay.timeoutMs ?? this.timeoutMs,
        });
      } catch (error) {
        // Like a platform's proxy: what failed, never where (no addresses).
        const code = (error as { code?: string }).code ?? 'error';
        const timedOut = code === 'UND_ERR_HEADERS_TIMEOUT';
        if (asked?.replay.fallback && !failed) {
          // Back to the instance that asked, which answers the client itself.
          failed = `reason=${timedOut ? 'timeout' : 'unreachable'};region=${region}`;
          region = asked.from;
          replaySource = undefined;
          continue;
        }
        if (timedOut)
          return this.fail(res, 504, `edge: the app in ${region} did not answer in time`);
        return this.fail(res, 502, `edge: the app in ${region} did not answer (${code})`);
      }
      if (failed) return relay(response, res);
      const replay = response.headers['fly-replay'];
      if (replay === undefined) return relay(response, res);
      await response.body.dump();
      const next = parseFlyReplay(Array.isArray(replay) ? (replay[0] as string) : replay);
      asked = { from: region, replay: next };
      if (!next.region || !this.options.apps[next.region])
        return this.fail(
          res,
          502,
          `edge: fly-replay names region "${next.region ?? ''}", which has no app`,
        );
      const cacheHeader = single(response.headers['fly-replay-cache']);
      if (cacheHeader === 'invalidate') {
        // The region a cached replay led to says it no longer serves these requests.
        if (cached) this.forgetReplay(entry, cached);
        cached = undefined;
      } else if (cacheHeader !== undefined) {
        this.rememberReplay(
          entry,
          target,
          cacheHeader,
          next.region,
          single(response.headers['fly-replay-cache-ttl-secs']),
        );
      }
      if (!replayable)
        return this.fail(
          res,
          413,
          `edge: the request body is over ${this.maxBody} bytes and cannot be replayed`,
        );
      if (hops >= this.maxReplays)
        return this.fail(
          res,
          508,
          `edge: more than ${this.maxReplays} fly-replay answers for one request`,
        );
      this.counters.replays++;
      replaySource = [
        `instance=${region}-app`,
        `region=${region}`,
        `t=${Date.now() * 1000}`,
        ...(next.state === undefined ? [] : [`state=${next.state}`]),
      ].join(';');
      region = next.region;
    }
  }

  /** The cached replay for a request entering `entry`, if one matches and has not expired. */
  private cachedReplay(entry: string, target: string): CachedReplay | undefined {
    const entries = this.replayCache.get(entry);
    if (!entries) return undefined;
    const now = Date.now();
    return entries.find((c) => c.expiresAt > now && c.matches(target));
  }

  /**
   * Remembers a replay as Fly.io's proxy does: only with a lifetime of at least 10 s and a
   * `host/path` glob that matches the request that was replayed; anything else is ignored.
   */
  private rememberReplay(
    entry: string,
    target: string,
    pattern: string,
    region: string,
    ttl: string | undefined,
  ): void {
    const seconds = Number(ttl);
    if (!Number.isFinite(seconds) || seconds < MIN_REPLAY_CACHE_SECONDS) return;
    const matches = globMatcher(pattern);
    if (!matches(target)) return;
    const now = Date.now();
    const kept = (this.replayCache.get(entry) ?? []).filter(
      (c) => c.pattern !== pattern && c.expiresAt > now,
    );
    kept.push({ pattern, matches, region, expiresAt: now + seconds * 1000 });
    this.replayCache.set(entry, kept);
  }

  private forgetReplay(entry: string, cached: CachedReplay): void {
    const entries = this.replayCache.get(entry);
    if (entries)
      this.replayCache.set(
        entry,
        entries.filter((c) => c !== cached),
      );
  }

  private fail(res: http.ServerResponse, status: number, message: string): void {
    this.counters.failures++;
    res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' });
    res.end(`${message}\n`);
  }
}

const single = (value: string | string[] | undefined): string | undefined =>
  Array.isArray(value) ? value[0] : value;

/** `host/path` of a request, the host without its port: what replay cache patterns match. */
function hostAndPath(req: http.IncomingMessage): string {
  const host = (req.headers.host ?? '').replace(/:\d+$/, '');
  const url = req.url ?? '/';
  const query = url.indexOf('?');
  return `${host}${query < 0 ? url : url.slice(0, query)}`;
}

function forwardHeaders(
  req: http.IncomingMessage,
  replaySource: string | undefined,
  replayFailed: string | undefined,
) {
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    // `expect: 100-continue` was answered here (node:http does); undici refuses to send it on.
    // `fly-replay-failed` is the platform's to set, never a client's.
    if (value === undefined || HOP_BY_HOP.has(name)) continue;
    if (name !== 'expect' && name !== 'fly-replay-failed') headers[name] = value;
  }
  const address = req.socket.remoteAddress ?? '127.0.0.1';
  headers['x-forwarded-for'] = headers['x-forwarded-for']
    ? `${headers['x-forwarded-for']}, ${address}`
    : address;
  headers['x-forwarded-proto'] = 'http';
  headers.via = '1.1 regional-edge';
  if (replaySource) headers['fly-replay-src'] = replaySource;
  if (replayFailed) headers['fly-replay-failed'] = replayFailed;
  return headers;
}

/** The body, kept whole when it is small enough to replay; otherwise streamed on once. */
async function readBody(
  req: http.IncomingMessage,
  limit: number,
): Promise<{ body: Buffer | Readable | null; replayable: boolean }> {
  if (!hasBody((name) => req.headers[name] as string | undefined))
    return { body: null, replayable: true };
  const chunks: Buffer[] = [];
  let size = 0;
  const iterator = req[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  for (;;) {
    const { value, done } = await iterator.next();
    if (done) return { body: Buffer.concat(chunks), replayable: true };
    chunks.push(value);
    size += value.length;
    if (size > limit) {
      async function* rest() {
        yield* chunks;
        for (let next = await iterator.next(); !next.done; next = await iterator.next())
          yield next.value;
      }
      return { body: Readable.from(rest()), replayable: false };
    }
  }
}

function relay(response: Dispatcher.ResponseData, res: http.ServerResponse): void {
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(response.headers)) {
    if (value !== undefined && !HOP_BY_HOP.has(name)) headers[name] = value;
  }
  res.writeHead(response.statusCode, headers);
  // pipe() with both ends' failures handled, rather than stream.pipeline(): the same flow
  // control without the abort signal and promise pipeline() makes on every request.
  const body = response.body;
  body.on('error', (error) => res.destroy(error));
  res.on('close', () => {
    if (!res.writableFinished) body.destroy();
  });
  body.pipe(res);
}
