/**
 * The local dashboard of `regional demo --serve` and `regional dev --app`: one page for the
 * whole local deployment. It reads only what the product exposes — each instance's `/metrics`
 * (OpenTelemetry's Prometheus exporter), its readiness endpoint, and the headers of answers to
 * requests it makes itself — so it shows what a user's own monitoring would.
 *
 * For local runs only: it is started by the CLI, listens on 127.0.0.1, and is no part of any
 * middleware or export of the package.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { LocalApps } from '../edge/apps.js';
import type { LocalEdge } from '../edge/edge.js';
import { HEALTH_READY_PATH } from '../http/endpoints.js';
import { REGION_HEADER, TOKEN_HEADER } from '../http/headers.js';
import { dashboardPage } from './page.js';
import { type MetricFamily, parsePrometheusText, samples, total } from './prometheus-text.js';

/** One region of the deployment, as the dashboard reaches it. */
export interface DashboardRegion {
  region: string;
  /** The region's entry URL (the local edge): where its users' requests arrive. */
  entry: string;
  /** The region's app instance itself (`http://127.0.0.1:port`): scraped like Prometheus would. */
  instance: string;
}

/** What the dashboard asks the app, to show where requests run and how a write spreads. */
export interface DashboardProbe {
  /** A path it GETs in every region every few seconds (the last requests show where each ran). */
  read: string;
  /**
   * The write of the "write" button: a JSON request whose body names a unique marker. The
   * written thing is then read back in every region at the answer's `Location`, or at
   * `path/<id>` for a JSON answer with an `id`; it has arrived once that read answers 2xx
   * with the marker in its body.
   */
  write?: { method: string; path: string; body(marker: string): unknown };
}

export interface DashboardOptions {
  /** The regions, asked again at each scrape (instances may be restarted on other ports). */
  regions: () => DashboardRegion[];
  primaryRegion: string;
  probe: DashboardProbe;
  /** Where the page says it was started from, e.g. `regional demo --serve`. */
  startedBy: string;
  /** Port on 127.0.0.1 (default: any free one). */
  port?: number;
  /** How often each instance's /metrics is read (default 1000 ms). */
  scrapeMs?: number;
  /**
   * How often each instance's readiness is asked (default 5000 ms): the app counts those
   * requests among its own, as it counts a platform's health checks.
   */
  readinessMs?: number;
  /** How much lag history is kept (default 5 minutes). */
  historyMs?: number;
  /** How often the probe read runs in every region (default 2000 ms; 0: never). */
  readEveryMs?: number;
  /** How long a written thing may take to appear in a region (default 10 s). */
  arrivalTimeoutMs?: number;
}

/** One request the dashboard made, as its answer described it. */
export interface ObservedRequest {
  at: number;
  /** The entry region it was sent to. */
  entry: string;
  method: string;
  path: string;
  /** `read`, `write`, or `read-back` (a write's arrival check). */
  kind: string;
  status: number | null;
  /** The region whose instance answered (`x-regional-region`), or null. */
  ranIn: string | null;
  /** `Server-Timing: regional-wait` (ms), the time it waited for the replica. */
  waitMs: number | null;
  /** `Server-Timing: regional-replay`'s description (`from syd`, `fly-replay to iad`). */
  replay: string | null;
  totalMs: number;
  error: string | null;
}

/** What a region's /metrics said last. */
export interface RegionFigures {
  /** The Postgres replica's lag in seconds and bytes; null without one (or no answer). */
  lagSeconds: number | null;
  lagBytes: number | null;
  /** Whether reads may use the Postgres replica (null: no replica). */
  replicaUsable: boolean | null;
  /** Statements by database system (`postgresql`, `redis`), route, then reason. */
  queries: Record<string, Record<string, Record<string, number>>>;
  /** Reads that waited for the replica: how many, and the seconds waited in all. */
  replicationWaits: { count: number; seconds: number };
  requests: number;
  replays: Record<string, number>;
  tokenWaits: number;
  tokenWaitTimeouts: number;
}

export interface RegionState {
  region: string;
  role: 'primary' | 'replica';
  entry: string;
  instance: string;
  /** Readiness: true (200), false (503), null (not asked yet, or no answer). */
  ready: boolean | null;
  figures: RegionFigures | null;
  /** Why /metrics could not be read, if it could not. */
  metricsError: string | null;
  /** [time ms, lag seconds or null] over the history. */
  lag: [number, number | null][];
}

export interface WriteArrival {
  region: string;
  /** Whether the reads carried the write's token (the writing region's do: read-your-writes). */
  withToken: boolean;
  state: 'waiting' | 'arrived' | 'timeout';
  /** Time from the write's answer to the first read that saw it. */
  afterMs: number | null;
  tries: number;
  ranIn: string | null;
  waitMs: number | null;
}

export interface WriteState {
  id: number;
  region: string;
  marker: string;
  state: 'writing' | 'spreading' | 'done' | 'failed';
  startedAt: number;
  writeMs: number | null;
  /** Where the write ran (`x-regional-region` of its answer). */
  ranIn: string | null;
  readPath: string | null;
  error: string | null;
  arrivals: WriteArrival[];
}

export interface DashboardState {
  startedBy: string;
  primaryRegion: string;
  now: number;
  historyMs: number;
  canWrite: boolean;
  regions: RegionState[];
  requests: ObservedRequest[];
  write: WriteState | null;
}

const RECENT = 40;

/** The regions of a local deployment: each instance of `apps`, entered through `edge`. */
export function localRegions(apps: LocalApps, edge: LocalEdge): () => DashboardRegion[] {
  return () =>
    apps.list().map(({ region, port }) => ({
      region,
      entry: edge.url(region),
      instance: `http://127.0.0.1:${port}`,
    }));
}

/** `Server-Timing` entries by name: `{ dur, desc }`. */
export function parseServerTiming(
  value: string | null,
): Map<string, { dur: number | null; desc: string | null }> {
  const out = new Map<string, { dur: number | null; desc: string | null }>();
  if (!value) return out;
  for (const entry of value.split(',')) {
    const [name, ...params] = entry.trim().split(';');
    if (!name) continue;
    let dur: number | null = null;
    let desc: string | null = null;
    for (const param of params) {
      const [key, raw = ''] = param.trim().split(/=(.*)/s);
      const text = raw.startsWith('"') ? raw.slice(1, -1) : raw;
      if (key === 'dur' && text !== '' && Number.isFinite(Number(text))) dur = Number(text);
      if (key === 'desc') desc = text;
    }
    // The first entry of a name is the one the answering instance wrote about itself.
    if (!out.has(name.trim())) out.set(name.trim(), { dur, desc });
  }
  return out;
}

/**
 * The name a metric has in this scrape: as OpenTelemetry's Prometheus exporter writes it today
 * (`regional_replica_lag`, the unit in `# UNIT`), or with its unit as a suffix
 * (`regional_replica_lag_seconds`), as exporters that follow Prometheus's conventions do.
 */
function named(families: Map<string, MetricFamily>, name: string, unitSuffix: string): string {
  return families.has(name) || !families.has(name + unitSuffix) ? name : name + unitSuffix;
}

function figuresFrom(families: Map<string, MetricFamily>, region: string): RegionFigures {
  const where = { regional_region: region };
  const postgres = { ...where, db_system_name: 'postgresql' };
  const one = (name: string) => samples(families, name, postgres)[0]?.value ?? null;
  const lag = named(families, 'regional_replica_lag', '_seconds');
  const waits = named(families, 'regional_replication_wait_duration', '_seconds');
  const queries: Record<string, Record<string, Record<string, number>>> = {};
  for (const s of samples(families, 'regional_db_queries_total', where)) {
    const system = s.labels.db_system_name ?? '?';
    const route = s.labels.regional_route ?? '?';
    const reason = s.labels.regional_reason ?? '?';
    const routes = queries[system] ?? {};
    const reasons = routes[route] ?? {};
    reasons[reason] = (reasons[reason] ?? 0) + s.value;
    routes[route] = reasons;
    queries[system] = routes;
  }
  const replays: Record<string, number> = {};
  for (const s of samples(families, 'regional_http_replays_total', where)) {
    const reason = s.labels.regional_replay_reason ?? '?';
    replays[reason] = (replays[reason] ?? 0) + s.value;
  }
  const usable = one('regional_replica_usable');
  return {
    lagSeconds: one(lag),
    lagBytes: one('regional_replica_lag_bytes'),
    replicaUsable: usable === null ? null : usable === 1,
    queries,
    replicationWaits: {
      count: total(families, `${waits}_count`, where),
      seconds: total(families, `${waits}_sum`, where),
    },
    requests: total(families, 'regional_http_requests_total', where),
    replays,
    tokenWaits: total(families, 'regional_http_token_waits_total', where),
    tokenWaitTimeouts: total(families, 'regional_http_token_wait_timeouts_total', where),
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const message = (error: unknown) =>
  ((error as { cause?: { code?: string } })?.cause?.code ?? (error as Error)?.message) || 'failed';

/**
 * The dashboard's server. Its page polls `GET /api/state`; `POST /api/write` starts a write.
 *
 * @example
 * const dashboard = await Dashboard.start({ regions, primaryRegion: 'iad', probe, startedBy: 'regional dev --app' });
 * console.log(dashboard.url); // http://127.0.0.1:…
 */
export class Dashboard {
  private readonly regionStates = new Map<string, RegionState>();
  private readonly requests: ObservedRequest[] = [];
  private write: WriteState | null = null;
  private writes = 0;
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly aborter = new AbortController();
  private scraping = false;
  private readinessAskedAt = 0;
  private reading = false;
  /** Unique per dashboard: markers of two runs never match each other's writes. */
  private readonly run = randomBytes(3).toString('hex');

  private constructor(
    private readonly options: DashboardOptions,
    private readonly server: http.Server,
  ) {}

  static async start(options: DashboardOptions): Promise<Dashboard> {
    const server = http.createServer();
    const dashboard = new Dashboard(options, server);
    server.on('request', (req, res) => {
      dashboard.handle(req, res).catch((error: Error) => {
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(error.message);
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port ?? 0, '127.0.0.1', () => resolve());
    });
    await dashboard.scrape();
    dashboard.timers.push(setInterval(() => void dashboard.scrape(), options.scrapeMs ?? 1000));
    const readEvery = options.readEveryMs ?? 2000;
    if (readEvery > 0) {
      void dashboard.probeReads();
      dashboard.timers.push(setInterval(() => void dashboard.probeReads(), readEvery));
    }
    for (const timer of dashboard.timers) timer.unref();
    return dashboard;
  }

  /** The page's URL (like the edge's entry URLs, without a trailing slash). */
  get url(): string {
    const { port } = this.server.address() as AddressInfo;
    return `http://127.0.0.1:${port}`;
  }

  /** Everything the page shows, now. */
  state(): DashboardState {
    const historyMs = this.options.historyMs ?? 300_000;
    return {
      startedBy: this.options.startedBy,
      primaryRegion: this.options.primaryRegion,
      now: Date.now(),
      historyMs,
      canWrite: this.options.probe.write !== undefined,
      regions: this.options.regions().map((r) => this.regionState(r)),
      requests: [...this.requests].reverse(),
      write: this.write,
    };
  }

  async close(): Promise<void> {
    for (const timer of this.timers) clearInterval(timer);
    this.aborter.abort();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /**
   * Writes in `region` (through its entry) and reads the written thing back in every region
   * until it appears there: the writing region with the write's token, the others without.
   */
  startWrite(region: string): WriteState {
    const probe = this.options.probe.write;
    if (!probe) throw new Error('this dashboard has no write to make (no write probe)');
    const target = this.options.regions().find((r) => r.region === region);
    if (!target) throw new Error(`no region "${region}"`);
    if (this.write && (this.write.state === 'writing' || this.write.state === 'spreading'))
      throw new Error('a write is still spreading');
    const id = ++this.writes;
    const marker = `dashboard-${this.run}-${id} from ${region}`;
    const write: WriteState = {
      id,
      region,
      marker,
      state: 'writing',
      startedAt: Date.now(),
      writeMs: null,
      ranIn: null,
      readPath: null,
      error: null,
      arrivals: [],
    };
    this.write = write;
    void this.spread(write, target, probe).catch((error) => {
      write.state = 'failed';
      write.error = message(error);
    });
    return write;
  }

  private async spread(
    write: WriteState,
    target: DashboardRegion,
    probe: NonNullable<DashboardProbe['write']>,
  ): Promise<void> {
    const answer = await this.request(target, probe.method, probe.path, 'write', {
      body: JSON.stringify(probe.body(write.marker)),
    });
    write.writeMs = answer.observed.totalMs;
    write.ranIn = answer.observed.ranIn;
    if (answer.observed.status === null || answer.observed.status >= 400) {
      write.state = 'failed';
      write.error = answer.observed.error ?? `${probe.method} ${probe.path}: ${answer.text}`;
      return;
    }
    const location = answer.headers?.get('location');
    let id: unknown;
    try {
      id = (JSON.parse(answer.text) as { id?: unknown }).id;
    } catch {}
    const readPath = location
      ? new URL(location, target.entry).pathname
      : id !== undefined
        ? `${probe.path.replace(/\/$/, '')}/${encodeURIComponent(String(id))}`
        : null;
    if (!readPath) {
      write.state = 'failed';
      write.error = 'the answer had neither a Location header nor a JSON id to read the write at';
      return;
    }
    write.readPath = readPath;
    write.state = 'spreading';
    const token = answer.headers?.get(TOKEN_HEADER) ?? null;
    const written = performance.now();
    const deadline = written + (this.options.arrivalTimeoutMs ?? 10_000);
    write.arrivals = this.options.regions().map((r) => ({
      region: r.region,
      withToken: r.region === target.region && token !== null,
      state: 'waiting',
      afterMs: null,
      tries: 0,
      ranIn: null,
      waitMs: null,
    }));
    await Promise.all(
      write.arrivals.map(async (arrival) => {
        const region = this.options.regions().find((r) => r.region === arrival.region);
        if (!region) return;
        while (performance.now() < deadline && !this.aborter.signal.aborted) {
          arrival.tries++;
          const read = await this.request(region, 'GET', readPath, 'read-back', {
            token: arrival.withToken ? token : null,
            record: false,
          });
          const { status } = read.observed;
          if (status !== null && status < 300 && read.text.includes(write.marker)) {
            arrival.state = 'arrived';
            arrival.afterMs = Math.round((performance.now() - written) * 10) / 10;
            arrival.ranIn = read.observed.ranIn;
            arrival.waitMs = read.observed.waitMs;
            this.remember({ ...read.observed, kind: `read-back (try ${arrival.tries})` });
            return;
          }
          await sleep(20);
        }
        arrival.state = 'timeout';
      }),
    );
    write.state = write.arrivals.every((a) => a.state === 'arrived') ? 'done' : 'failed';
    if (write.state === 'failed') write.error = 'the write did not appear everywhere in time';
  }

  private regionState(r: DashboardRegion): RegionState {
    let state = this.regionStates.get(r.region);
    if (!state) {
      state = {
        region: r.region,
        role: r.region === this.options.primaryRegion ? 'primary' : 'replica',
        entry: r.entry,
        instance: r.instance,
        ready: null,
        figures: null,
        metricsError: null,
        lag: [],
      };
      this.regionStates.set(r.region, state);
    }
    state.entry = r.entry;
    state.instance = r.instance;
    return state;
  }

  /** Reads every instance's /metrics and readiness once. */
  private async scrape(): Promise<void> {
    if (this.scraping) return;
    this.scraping = true;
    try {
      const now = Date.now();
      const historyMs = this.options.historyMs ?? 300_000;
      const askReadiness = now - this.readinessAskedAt >= (this.options.readinessMs ?? 5_000);
      if (askReadiness) this.readinessAskedAt = now;
      await Promise.all(
        this.options.regions().map(async (r) => {
          const state = this.regionState(r);
          const signal = AbortSignal.any([this.aborter.signal, AbortSignal.timeout(2_000)]);
          const [metrics, ready] = await Promise.allSettled([
            fetch(new URL('/metrics', r.instance), { signal }).then(async (response) => {
              const text = await response.text();
              if (!response.ok) throw new Error(`GET /metrics answered ${response.status}`);
              return parsePrometheusText(text);
            }),
            askReadiness
              ? fetch(new URL(HEALTH_READY_PATH, r.instance), { signal }).then(async (response) => {
                  await response.arrayBuffer();
                  return response.status === 200;
                })
              : Promise.resolve(state.ready),
          ]);
          state.ready = ready.status === 'fulfilled' ? ready.value : null;
          if (metrics.status === 'fulfilled') {
            state.figures = figuresFrom(metrics.value, r.region);
            state.metricsError = null;
          } else {
            state.figures = null;
            state.metricsError = message(metrics.reason);
          }
          state.lag.push([now, state.figures?.lagSeconds ?? null]);
          while (state.lag.length > 0 && (state.lag[0] as [number, unknown])[0] < now - historyMs)
            state.lag.shift();
        }),
      );
    } finally {
      this.scraping = false;
    }
  }

  /** The probe's read, once in every region. */
  private async probeReads(): Promise<void> {
    if (this.reading) return;
    this.reading = true;
    try {
      await Promise.all(
        this.options
          .regions()
          .map((r) => this.request(r, 'GET', this.options.probe.read, 'read', {})),
      );
    } finally {
      this.reading = false;
    }
  }

  /** Sends a request to `region`'s entry and describes its answer from the headers. */
  private async request(
    region: DashboardRegion,
    method: string,
    path: string,
    kind: string,
    options: { body?: string; token?: string | null; record?: boolean },
  ): Promise<{ observed: ObservedRequest; text: string; headers: Headers | null }> {
    const started = performance.now();
    const observed: ObservedRequest = {
      at: Date.now(),
      entry: region.region,
      method,
      path,
      kind,
      status: null,
      ranIn: null,
      waitMs: null,
      replay: null,
      totalMs: 0,
      error: null,
    };
    let text = '';
    let headers: Headers | null = null;
    try {
      const response = await fetch(new URL(path, region.entry), {
        method,
        headers: {
          ...(options.body !== undefined ? { 'content-type': 'application/json' } : {}),
          ...(options.token ? { [TOKEN_HEADER]: options.token } : {}),
        },
        body: options.body,
        redirect: 'manual',
        signal: AbortSignal.any([this.aborter.signal, AbortSignal.timeout(10_000)]),
      });
      text = await response.text();
      headers = response.headers;
      observed.status = response.status;
      observed.ranIn = response.headers.get(REGION_HEADER);
      const timings = parseServerTiming(response.headers.get('server-timing'));
      observed.waitMs = timings.get('regional-wait')?.dur ?? null;
      observed.replay = timings.get('regional-replay')?.desc ?? null;
    } catch (error) {
      observed.error = message(error);
    }
    observed.totalMs = Math.round((performance.now() - started) * 10) / 10;
    if (options.record !== false) this.remember(observed);
    return { observed, text, headers };
  }

  private remember(observed: ObservedRequest): void {
    this.requests.push(observed);
    if (this.requests.length > RECENT) this.requests.shift();
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    // Only this machine's pages: not another site's (no CORS), not a rebound DNS name.
    const { port } = this.server.address() as AddressInfo;
    const host = req.headers.host ?? '';
    if (host !== `127.0.0.1:${port}` && host !== `localhost:${port}`) {
      res.writeHead(403, { 'content-type': 'text/plain' }).end('local use only');
      return;
    }
    const path = (req.url ?? '/').split('?')[0];
    const send = (status: number, body: unknown) => {
      res
        .writeHead(status, {
          'content-type': 'application/json; charset=utf-8',
          'cache-control': 'no-store',
        })
        .end(JSON.stringify(body));
    };
    if (req.method === 'GET' && path === '/') {
      res
        .writeHead(200, {
          'content-type': 'text/html; charset=utf-8',
          'cache-control': 'no-store',
          'content-security-policy':
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
        })
        .end(dashboardPage());
      return;
    }
    if (req.method === 'GET' && path === '/api/state') return send(200, this.state());
    if (req.method === 'POST' && path === '/api/write') {
      // JSON only: a form on another site cannot send it without a CORS preflight, never answered.
      if (!(req.headers['content-type'] ?? '').startsWith('application/json'))
        return send(415, { error: 'send JSON' });
      let body = '';
      for await (const chunk of req) {
        body += chunk;
        if (body.length > 10_000) return send(413, { error: 'too large' });
      }
      try {
        const { region } = JSON.parse(body) as { region?: unknown };
        return send(202, this.startWrite(String(region)));
      } catch (error) {
        return send(409, { error: (error as Error).message });
      }
    }
    send(404, { error: 'not found' });
  }
}
