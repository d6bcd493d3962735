import type { RegionInstances } from '../core/instances.js';
import { type Keyring, RequestVerifier, SIGNATURE_HEADER } from '../core/signing.js';
import type { ReplicatedSource } from '../core/source.js';
import { PING_PATH, pingHandler, pingInstance } from '../health/ping.js';
import {
  isReadinessTarget,
  liveness,
  Readiness,
  type ReadinessTarget,
} from '../health/readiness.js';
import type { ReplayAnswer } from './replay.js';
import type { RequestView } from './request-state.js';

/** Liveness: 200 while the process answers. */
export const HEALTH_LIVE_PATH = '/_regional/health/live';
/** Readiness: 200 when ready, 503 with the failed checks named otherwise. */
export const HEALTH_READY_PATH = '/_regional/health/ready';
export { PING_PATH };

export interface HealthOptions {
  /** The pool whose primary, replica, lag and schema readiness checks (default: the first `RegionalPool` among `sources`). */
  pool?: ReadinessTarget;
  /** The replica must replay the primary's position within this (default: the pool's `maxWaitMs`). */
  maxLagMs?: number;
  /** Each check gives up after this long (default 2000 ms). */
  timeoutMs?: number;
  /** A readiness report is reused for this long (default 1000 ms): a flood of requests runs one check. */
  cacheMs?: number;
}

const json = (status: number, body: unknown, extra: [string, string][] = []): ReplayAnswer => {
  const text = JSON.stringify(body);
  return {
    status,
    headers: [
      ['content-type', 'application/json; charset=utf-8'],
      ['content-length', String(Buffer.byteLength(text))],
      ['cache-control', 'no-store'],
      ...extra,
    ],
    body: Buffer.from(text),
  };
};

/**
 * Regional's own endpoints, served by every adapter before the app's handler and before any
 * replay or wait: liveness, readiness (replication-aware) and the signed ping that
 * `regional doctor` uses.
 */
export class RegionalEndpoints {
  private readonly ping: ((request: Request) => Promise<Response | null>) | null;
  private readonly readiness: Readiness | null;
  private readonly verifier: RequestVerifier | null;

  constructor(
    private readonly region: string | null,
    keyring: Keyring | null,
    sources: readonly ReplicatedSource[],
    health: HealthOptions | false | undefined,
    private readonly primaryInstances: RegionInstances | null,
    private readonly viaPrimaryInstances: boolean,
  ) {
    this.verifier = keyring ? new RequestVerifier(keyring) : null;
    this.ping =
      keyring && this.verifier ? pingHandler({ keyring, region, verifier: this.verifier }) : null;
    const pool =
      health === false
        ? undefined
        : (health?.pool ?? (sources.find(isReadinessTarget) as ReadinessTarget | undefined));
    this.readiness =
      health === false || !pool
        ? null
        : new Readiness({
            pool,
            maxLagMs: health?.maxLagMs,
            timeoutMs: health?.timeoutMs,
            cacheMs: health?.cacheMs,
            pingPrimaryInstance: this.pingPrimary(keyring, pool),
          });
  }

  /** The answer if `view` asks for one of these endpoints, else `null`. */
  match(view: RequestView): Promise<ReplayAnswer> | null {
    const path = view.path.split('?', 1)[0];
    if (path === HEALTH_LIVE_PATH) return Promise.resolve(json(200, liveness(this.region)));
    if (path === HEALTH_READY_PATH) return this.ready(view);
    if (path === PING_PATH && this.ping) return this.answerPing(view);
    return null;
  }

  /** Closes the readiness check's own connections. */
  async close(): Promise<void> {
    await this.readiness?.close();
  }

  /**
   * Readiness: the status for anyone (a platform's health check needs no more); the checks'
   * detail — hosts, positions, causes — only for callers that sign the request like a ping.
   */
  private async ready(view: RequestView): Promise<ReplayAnswer> {
    if (!this.readiness) {
      return json(200, { ready: true, region: this.region, note: 'no RegionalPool to check' });
    }
    const report = await this.readiness.check();
    const status = report.ready ? 200 : 503;
    const signature = view.header(SIGNATURE_HEADER);
    const signed =
      signature !== undefined &&
      this.verifier?.verify(signature, { method: view.method, path: view.path, body: '' }) === null;
    return json(status, signed ? report : { ready: report.ready, region: report.region });
  }

  private async answerPing(view: RequestView): Promise<ReplayAnswer> {
    const headers = new Headers();
    const signature = view.header('x-regional-signature');
    if (signature) headers.set('x-regional-signature', signature);
    const response = (await (this.ping as (r: Request) => Promise<Response | null>)(
      new Request(`http://instance${view.path}`, { method: view.method, headers }),
    )) as Response;
    return json(response.status, await response.json());
  }

  /** Where writes reach the primary through primary-region instances, readiness pings them. */
  private pingPrimary(
    keyring: Keyring | null,
    pool: ReadinessTarget,
  ): (() => Promise<void>) | undefined {
    const instances = this.primaryInstances;
    if (!instances || !keyring || pool.config.isPrimaryRegion) return undefined;
    if (!this.viaPrimaryInstances && !pool.forwardsWrites) return undefined;
    return async () => {
      const result = await pingInstance(instances.url.href, keyring);
      if (!result.ok)
        throw new Error(
          `the primary-region instance (${instances.url.host}) does not answer: ${result.reason}`,
        );
    };
  }
}
