/**
 * `regional/hono`: Regional as Hono middleware.
 *
 * @example
 * import { Hono } from 'hono';
 * import { regional } from 'regional/hono';
 *
 * const app = new Hono();
 * app.use(regional({ sources: [pool], readRoutes: ['POST /search'] }));
 * app.post('/posts', async (c) => { … }); // replayed in the primary region from replica regions
 */
import type { Context, MiddlewareHandler } from 'hono';
import { runInContext } from '../core/context.js';
import { answerResponse, webReplaySource, webView, withHeaders } from '../http/fetch.js';
import { RegionalHttp } from '../http/regional-http.js';
import type { RegionalHttpOptions } from '../http/settings.js';

/** Hono middleware with the {@link RegionalHttp} it uses. */
export type RegionalMiddleware = MiddlewareHandler & { readonly regional: RegionalHttp };

/** Replaces the context's response outright (Hono's setter would merge the old one's headers in). */
function replaceResponse(c: Context, response: Response): void {
  c.res = undefined as unknown as Response;
  c.res = response;
}

/**
 * Hono middleware: mount it first (`app.use(regional(...))`). Writing requests arriving in a
 * replica region are replayed in the primary region; reads wait for the client's token; a
 * read whose handler writes is replayed while nothing has been sent; every response gets
 * Regional's headers, and a token after a write.
 *
 * @example
 * app.use(regional({ sources: [pool] }));
 */
export function regional(options: RegionalHttp | RegionalHttpOptions = {}): RegionalMiddleware {
  const core = RegionalHttp.from(options);
  const middleware: MiddlewareHandler = async (c, next) => {
    const request = c.req.raw;
    const state = await core.begin(webView(request));
    if (state.action === 'answer') return answerResponse(core.answer(state));
    if (state.action === 'replay')
      return answerResponse(await core.replay(state, webReplaySource(request, state)));
    await runInContext(state.context, next);
    // Hono catches handler errors itself (into `c.error`, answered by `onError`).
    if (state.replayInstead(c.error)) {
      await c.res.body?.cancel().catch(() => {});
      replaceResponse(c, answerResponse(await core.replay(state, webReplaySource(request, state))));
      return;
    }
    // One of Regional's errors a client can act on (503/504), which the app's error handler
    // answered as a bare 500: its status and code instead, and no internals.
    const failure =
      c.error === undefined || c.res.status !== 500 ? null : core.errorAnswer(state, c.error);
    if (failure) {
      await c.res.body?.cancel().catch(() => {});
      replaceResponse(c, answerResponse(failure));
      return;
    }
    state.responseStarted = true;
    const response = withHeaders(c.res, core.responseHeaders(state));
    if (response !== c.res) replaceResponse(c, response);
  };
  return Object.assign(middleware, { regional: core });
}
