import { Readable } from 'node:stream';
import type { ReadableStream as NodeReadableStream } from 'node:stream/web';
import { runInContext } from '../core/context.js';
import { hasBody } from './headers.js';
import { RegionalHttp } from './regional-http.js';
import type { ReplayAnswer, ReplaySource } from './replay.js';
import type { RequestState, RequestView } from './request-state.js';
import type { RegionalHttpOptions } from './settings.js';

/** The framework-neutral view of a Web-standard `Request`. */
export function webView(request: Request, mark?: 'read' | 'write'): RequestView {
  const url = new URL(request.url);
  // A Web Request keeps its host in the URL, not among its headers.
  const header = (name: string) =>
    request.headers.get(name) ?? (name === 'host' ? url.host : undefined);
  return {
    method: request.method.toUpperCase(),
    path: url.pathname + url.search,
    header,
    https:
      url.protocol === 'https:' || header('x-forwarded-proto')?.split(',')[0]?.trim() === 'https',
    mark,
  };
}

/** What a replay needs of a Web `Request`: its headers and, unread, its body. */
export function webReplaySource(request: Request, state: RequestState): ReplaySource {
  return {
    // Read only in proxy mode, at once: no copy for a fly-replay answer.
    headers: request.headers,
    body: () =>
      request.body && !request.bodyUsed && hasBody(state.view.header)
        ? Readable.fromWeb(request.body as unknown as NodeReadableStream<Uint8Array>)
        : null,
  };
}

const NULL_BODY_STATUS = new Set([101, 103, 204, 205, 304]);

/** A replay (or refusal) answer as a Web `Response`. */
export function answerResponse(answer: ReplayAnswer): Response {
  const headers = new Headers();
  for (const [name, value] of answer.headers) headers.append(name, value);
  let body: ConstructorParameters<typeof Response>[0] = null;
  if (!NULL_BODY_STATUS.has(answer.status) && answer.body !== null) {
    body = Buffer.isBuffer(answer.body)
      ? new Uint8Array(answer.body)
      : (Readable.toWeb(answer.body) as unknown as ReadableStream<Uint8Array>);
  }
  return new Response(body, { status: answer.status, headers });
}

/** `response` with Regional's headers added (copied first if its headers are immutable). */
export function withHeaders(response: Response, pairs: [string, string][]): Response {
  let target = response;
  try {
    for (const [name, value] of pairs) target.headers.append(name, value);
  } catch {
    target = new Response(response.body, response);
    for (const [name, value] of pairs) target.headers.append(name, value);
  }
  return target;
}

/** A handler that answers a Web `Request`, as `fetch`-style servers and Hono's `app.fetch` do. */
export type FetchHandler = (request: Request) => Response | Promise<Response>;

/**
 * Runs one request through Regional around `next`: replays it in the primary region, or
 * waits for its token and runs `next` in the request's context, then adds Regional's
 * headers. A read whose handler tried to write is replayed instead of answered.
 *
 * @example
 * const response = await handleFetch(regional, request, (r) => app.fetch(r));
 */
export async function handleFetch(
  regional: RegionalHttp,
  request: Request,
  next: FetchHandler,
): Promise<Response> {
  const state = await regional.begin(webView(request));
  if (state.action === 'answer') return answerResponse(regional.answer(state));
  if (state.action === 'replay')
    return answerResponse(await regional.replay(state, webReplaySource(request, state)));
  let response: Response | undefined;
  let failure: unknown;
  try {
    response = await runInContext(state.context, () => next(request));
  } catch (error) {
    failure = error;
  }
  if (state.replayInstead(failure)) {
    await response?.body?.cancel().catch(() => {});
    return answerResponse(await regional.replay(state, webReplaySource(request, state)));
  }
  if (failure !== undefined || !response) {
    const answer = regional.errorAnswer(state, failure);
    if (answer) return answerResponse(answer);
    throw failure;
  }
  state.responseStarted = true;
  return withHeaders(response, regional.responseHeaders(state));
}

/**
 * Wraps a Web-standard `fetch` handler (Hono's `app.fetch`, or any other) with Regional.
 *
 * @example
 * import { serve } from '@hono/node-server';
 * serve({ fetch: regionalFetch(app.fetch, { sources: [pool] }), port: 8080 });
 */
export function regionalFetch(
  handler: FetchHandler,
  options: RegionalHttp | RegionalHttpOptions = {},
): FetchHandler & { readonly regional: RegionalHttp } {
  const regional = RegionalHttp.from(options);
  return Object.assign((request: Request) => handleFetch(regional, request, handler), {
    regional,
  });
}
