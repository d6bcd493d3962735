import type { Readable } from 'node:stream';
import { isConnectionError } from '../core/instances.js';
import { HOP_BY_HOP, REPLAYED_FROM_HEADER, timing } from './headers.js';
import { REPLAY_HEADER, type ReplayMarkers } from './marker.js';
import type { RequestState } from './request-state.js';
import type { HttpSettings } from './settings.js';

/** A response to send in place of running the handler here: framework-neutral. */
export interface ReplayAnswer {
  status: number;
  headers: [string, string][];
  /** The body: a stream to pass on, bytes, or `null` for none. */
  body: Readable | Buffer | null;
}

/** The request being replayed, as the adapter can give it. */
export interface ReplaySource {
  /** Request headers (names lower-case). */
  headers: Iterable<[string, string | string[] | undefined]>;
  /** The body, not yet read, or `null` if there is none. Read only in `proxy` mode. */
  body: () => Readable | AsyncIterable<Uint8Array> | null;
}

/** `fly-replay` mode: an empty answer asking the platform's proxy to replay the request. */
export function flyReplayAnswer(
  settings: HttpSettings,
  markers: ReplayMarkers,
  state: RequestState,
  headers: [string, string][],
): ReplayAnswer {
  const { method, path } = state.view;
  return {
    // 409 if nothing honours the header: the client is told plainly that this did not run.
    status: 409,
    headers: [
      ['fly-replay', `region=${settings.primaryRegion};state=${markers.flyState(method, path)}`],
      ...replayCacheHeaders(settings, state),
      ['content-length', '0'],
      ['cache-control', 'no-store'],
      ...headers,
    ],
    body: null,
  };
}

/**
 * For a path under `primaryOnlyPaths`: Fly.io's replay cache headers, so its proxy sends later
 * requests there to the primary region directly. The pattern names the host (without port),
 * as Fly requires; without a Host header nothing is cached.
 */
function replayCacheHeaders(settings: HttpSettings, state: RequestState): [string, string][] {
  const pattern = settings.routes.primaryOnlyPattern(state.view.path);
  if (pattern === undefined) return [];
  const host = state.view.header('host')?.replace(/:\d+$/, '');
  if (!host) return [];
  return [
    ['fly-replay-cache', `${host}${pattern}`],
    ['fly-replay-cache-ttl-secs', String(settings.primaryOnlyCacheSeconds)],
  ];
}

/**
 * `proxy` mode: sends the request, body streamed, to an instance in the primary region with a
 * signed replay marker, and returns its answer with a `Server-Timing` entry for the trip.
 */
export async function proxyReplay(
  settings: HttpSettings,
  markers: ReplayMarkers,
  state: RequestState,
  source: ReplaySource,
  ownHeaders: () => [string, string][],
): Promise<ReplayAnswer & { failed: boolean }> {
  const instances = settings.instances;
  if (!instances) throw new Error('proxyReplay needs the primary region instances');
  const { method, path } = state.view;
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of source.headers) {
    if (value === undefined || HOP_BY_HOP.has(name) || name === 'host') continue;
    if (name === REPLAY_HEADER || name === REPLAYED_FROM_HEADER) continue;
    headers[name] = value;
  }
  headers[REPLAY_HEADER] = markers.header(method, path);
  headers[REPLAYED_FROM_HEADER] = settings.region ?? '';
  const host = state.view.header('host');
  if (host && headers['x-forwarded-host'] === undefined) headers['x-forwarded-host'] = host;
  if (headers['x-forwarded-proto'] === undefined)
    headers['x-forwarded-proto'] = state.view.https ? 'https' : 'http';

  const body = source.body();
  const started = performance.now();
  try {
    const response = await instances.request(
      {
        method,
        path,
        headers,
        body: body as Readable | null,
        headersTimeoutMs: settings.replayTimeoutMs,
      },
      // Only a request without a body can be sent again to another instance.
      () => body === null,
    );
    state.replayMs = performance.now() - started;
    const out: [string, string][] = [];
    for (const [name, value] of Object.entries(response.headers)) {
      if (value === undefined || HOP_BY_HOP.has(name)) continue;
      if (Array.isArray(value)) for (const v of value) out.push([name, v]);
      else out.push([name, value]);
    }
    out.push([
      'server-timing',
      timing(
        'regional-replay',
        state.replayMs,
        `proxy ${settings.region}>${settings.primaryRegion}`,
      ),
    ]);
    for (const header of ownHeaders()) if (header[0] === 'server-timing') out.push(header);
    return { status: response.statusCode, headers: out, body: response.body, failed: false };
  } catch (error) {
    state.replayMs = performance.now() - started;
    const reason = isConnectionError(error)
      ? `no instance answered (${(error as { code?: string }).code})`
      : (error as Error).message;
    const message = `Could not replay ${method} ${path} in the primary region (${settings.primaryRegion}) through ${instances.url.origin}: ${reason}.`;
    const json = JSON.stringify({ error: { code: 'REGIONAL_REPLAY_FAILED', message } });
    return {
      status: 502,
      headers: [
        ['content-type', 'application/json; charset=utf-8'],
        ['content-length', String(Buffer.byteLength(json))],
        ...ownHeaders(),
      ],
      body: Buffer.from(json),
      failed: true,
    };
  }
}
