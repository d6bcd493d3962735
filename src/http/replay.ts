import { PassThrough, Readable } from 'node:stream';
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

/**
 * `fly-replay` mode: an empty answer asking the platform's proxy to replay the request. It
 * bounds how long the proxy tries to reach the primary region (`timeout`: the lag replay's
 * time-out for a read replayed for lag, else the replay time-out) and asks it to bring the
 * request back here if it cannot (`fallback=force_self`), so the client gets a clear answer
 * ({@link FLY_REPLAY_FAILED}) instead of the proxy's own error after its long default.
 */
export function flyReplayAnswer(
  settings: HttpSettings,
  markers: ReplayMarkers,
  state: RequestState,
  headers: [string, string][],
): ReplayAnswer {
  const { method, path } = state.view;
  const timeoutMs =
    state.replayReason === 'lag' ? settings.lagReplayTimeoutMs : settings.replayTimeoutMs;
  return {
    // 409 if nothing honours the header: the client is told plainly that this did not run.
    status: 409,
    headers: [
      [
        'fly-replay',
        `region=${settings.primaryRegion};state=${markers.flyState(method, path)};timeout=${timeoutMs}ms;fallback=force_self`,
      ],
      ...replayCacheHeaders(settings, state),
      ['content-length', '0'],
      ['cache-control', 'no-store'],
      ...headers,
    ],
    body: null,
  };
}

/**
 * The request header Fly.io's proxy adds when it brings a replay back to the instance that
 * asked for it (`fallback`): the replay could not reach its target in time.
 */
export const FLY_REPLAY_FAILED = 'fly-replay-failed';

/** A host name as a `fly-replay-cache` pattern may name it: letters, digits, dots, dashes. */
const HOST_NAME = /^[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?$/;

/**
 * For a path under `primaryOnlyPaths`: Fly.io's replay cache headers, so its proxy sends later
 * requests there to the primary region directly. The pattern names the host (without port),
 * as Fly requires; only a plain host name is taken from the client's Host header (a `*` there
 * would make the pattern cover every host), else nothing is cached.
 */
function replayCacheHeaders(settings: HttpSettings, state: RequestState): [string, string][] {
  const pattern = settings.routes.primaryOnlyPattern(state.view.path);
  if (pattern === undefined) return [];
  const host = state.view.header('host')?.replace(/:\d+$/, '').toLowerCase();
  if (!host || !HOST_NAME.test(host)) return [];
  return [
    ['fly-replay-cache', `${host}${pattern}`],
    ['fly-replay-cache-ttl-secs', String(settings.primaryOnlyCacheSeconds)],
  ];
}

/** Request headers a replay never passes on: hop-by-hop ones, and those it sets itself. */
const NOT_FORWARDED = new Set([
  'host',
  REPLAY_HEADER,
  REPLAYED_FROM_HEADER,
  // The body is read before it is sent on: 100 Continue was this instance's to answer (and
  // undici refuses the header).
  'expect',
  'content-length',
]);

/** Why a replay did not get an answer, and what the client is told. */
function replayFailure(
  error: unknown,
  settings: HttpSettings,
): { status: number; code: string; message: string } {
  const region = settings.primaryRegion;
  const code = (error as { code?: string } | undefined)?.code ?? '';
  if (UNDELIVERED.has(code)) {
    return {
      status: 503,
      code: 'REGIONAL_PRIMARY_REGION_UNAVAILABLE',
      message: `The primary region (${region}) cannot be reached right now; nothing was sent there. Retry shortly.`,
    };
  }
  if (code === 'UND_ERR_HEADERS_TIMEOUT') {
    return {
      status: 504,
      code: 'REGIONAL_REPLAY_TIMEOUT',
      message: `The primary region (${region}) did not answer in time; whether the request took effect there is unknown. Retry shortly.`,
    };
  }
  return {
    status: 502,
    code: 'REGIONAL_REPLAY_FAILED',
    message: `The primary region (${region}) did not answer; whether the request took effect there is unknown. Retry shortly.`,
  };
}

/** Failures that show the request cannot have reached any instance. */
const UNDELIVERED = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'UND_ERR_CONNECT_TIMEOUT',
]);

/** A JSON error answer with Regional's headers. */
export function jsonError(
  status: number,
  code: string,
  message: string,
  headers: [string, string][],
): ReplayAnswer {
  const json = JSON.stringify({ error: { code, message } });
  return {
    status,
    headers: [
      ['content-type', 'application/json; charset=utf-8'],
      ['content-length', String(Buffer.byteLength(json))],
      ...(status === 503 || status === 504 ? ([['retry-after', '1']] as [string, string][]) : []),
      ...headers,
    ],
    body: Buffer.from(json),
  };
}

/**
 * Limits replays whose body is streamed (too large to read first): each holds a connection to
 * the primary region for as long as its client takes to send, so only a few may at once.
 */
export class StreamedReplays {
  private active = 0;

  constructor(private readonly limit: number) {}

  take(): (() => void) | null {
    if (this.active >= this.limit) return null;
    this.active++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.active--;
    };
  }
}

/**
 * `proxy` mode: sends the request to an instance in the primary region with a signed replay
 * marker, and returns its answer with a `Server-Timing` entry for the trip. A body up to
 * `maxReplayBodyBytes` is read whole first (within `replayBodyTimeoutMs`), so a slow client
 * holds no connection to the primary region; a larger one is streamed, a few at a time. The
 * answer must start within `replayTimeoutMs` (`lagReplayTimeoutMs` for a read replayed
 * because the replica was behind); a failure is answered with a status and code the client can
 * act on, and the details go to the log.
 */
export async function proxyReplay(
  settings: HttpSettings,
  markers: ReplayMarkers,
  state: RequestState,
  source: ReplaySource,
  ownHeaders: () => [string, string][],
  streamed: StreamedReplays,
): Promise<ReplayAnswer & { failed: boolean }> {
  const instances = settings.instances;
  if (!instances) throw new Error('proxyReplay needs the primary region instances');
  const { method, path } = state.view;
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of source.headers) {
    if (value === undefined || HOP_BY_HOP.has(name) || NOT_FORWARDED.has(name)) continue;
    headers[name] = value;
  }
  headers[REPLAY_HEADER] = markers.header(method, path);
  headers[REPLAYED_FROM_HEADER] = settings.region ?? '';
  const host = state.view.header('host');
  if (host && headers['x-forwarded-host'] === undefined) headers['x-forwarded-host'] = host;
  if (headers['x-forwarded-proto'] === undefined)
    headers['x-forwarded-proto'] = state.view.https ? 'https' : 'http';

  const fail = (status: number, code: string, message: string, extra: [string, string][] = []) => ({
    ...jsonError(status, code, message, [...extra, ...ownHeaders()]),
    failed: true,
  });
  let body: Buffer | Readable | null = null;
  let release = () => {};
  const stream = source.body();
  if (stream) {
    const read = await readReplayBody(
      stream,
      settings.maxReplayBodyBytes,
      settings.replayBodyTimeoutMs,
    );
    if (read.kind === 'timeout' || read.kind === 'aborted') {
      // The connection is not reused: the rest of the body may still be on its way.
      return fail(
        408,
        'REGIONAL_BODY_TIMEOUT',
        `The request body did not arrive within ${settings.replayBodyTimeoutMs} ms.`,
        [['connection', 'close']],
      );
    }
    if (read.kind === 'whole') {
      body = read.body;
      headers['content-length'] = String(read.body.length);
    } else {
      const slot = streamed.take();
      if (!slot) {
        read.body.destroy();
        return fail(
          503,
          'REGIONAL_REPLAY_BUSY',
          `Too many large uploads are being sent to the primary region (${settings.primaryRegion}) right now. Retry shortly.`,
          [['connection', 'close']],
        );
      }
      release = slot;
      body = read.body;
    }
  }
  const timeoutMs =
    state.replayReason === 'lag' ? settings.lagReplayTimeoutMs : settings.replayTimeoutMs;
  const started = performance.now();
  try {
    const response = await instances.request(
      { method, path, headers, body, headersTimeoutMs: timeoutMs },
      // A body read whole can be sent again to another instance; a streamed one cannot.
      () => !(body instanceof Readable),
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
    response.body.once('close', release);
    return { status: response.statusCode, headers: out, body: response.body, failed: false };
  } catch (error) {
    release();
    if (body instanceof Readable) body.destroy();
    state.replayMs = performance.now() - started;
    const failure = replayFailure(error, settings);
    settings.warn(
      `Could not replay ${method} ${state.view.path.split('?')[0]} in ${settings.primaryRegion} through ${instances.url.origin} (${(error as Error).message}): answered ${failure.status} ${failure.code}.`,
    );
    return fail(failure.status, failure.code, failure.message);
  }
}

type ReadBody =
  | { kind: 'whole'; body: Buffer }
  | { kind: 'streamed'; body: Readable }
  | { kind: 'timeout' }
  | { kind: 'aborted' };

/**
 * Reads a request body whole if it is at most `maxBytes`, within `timeoutMs`; a larger one is
 * handed back as a stream (what was read, then the rest) that fails if it pauses longer than
 * `timeoutMs`. On a time-out the request is left paused, not destroyed, so the answer (408,
 * connection: close) still reaches the client.
 */
function readReplayBody(
  source: Readable | AsyncIterable<Uint8Array>,
  maxBytes: number,
  timeoutMs: number,
): Promise<ReadBody> {
  const stream = source instanceof Readable ? source : Readable.from(source);
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const timer = setTimeout(() => finish({ kind: 'timeout' }), timeoutMs);
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      size += chunk.length;
      if (size > maxBytes) finish({ kind: 'streamed', body: rest(stream, chunks, timeoutMs) });
    };
    const onEnd = () => finish({ kind: 'whole', body: Buffer.concat(chunks) });
    const onError = () => finish({ kind: 'aborted' });
    const onClose = () => {
      if (!stream.readableEnded) finish({ kind: 'aborted' });
    };
    function finish(outcome: ReadBody) {
      clearTimeout(timer);
      stream.off('data', onData).off('end', onEnd).off('error', onError).off('close', onClose);
      if (outcome.kind !== 'streamed') stream.pause();
      // Errors after this are the streamed body's reader's, or of a request already answered.
      if (outcome.kind !== 'streamed') stream.on('error', () => {});
      resolve(outcome);
    }
    stream.on('data', onData).on('end', onEnd).on('error', onError).on('close', onClose);
  });
}

/** `read`, then the rest of `stream`, failing if it pauses longer than `idleMs`. */
function rest(stream: Readable, read: Buffer[], idleMs: number): Readable {
  stream.pause();
  const out = new PassThrough();
  for (const chunk of read) out.write(chunk);
  let timer = setTimeout(idle, idleMs);
  function idle() {
    const error = new Error(`the request body paused for more than ${idleMs} ms`);
    stream.destroy(error);
    out.destroy(error);
  }
  stream.on('data', () => {
    clearTimeout(timer);
    timer = setTimeout(idle, idleMs);
  });
  stream.once('end', () => clearTimeout(timer));
  stream.once('error', (error) => {
    clearTimeout(timer);
    out.destroy(error);
  });
  out.once('close', () => clearTimeout(timer));
  stream.pipe(out);
  return out;
}
