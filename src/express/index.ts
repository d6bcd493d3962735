/**
 * `regional/express`: Regional as Express middleware.
 *
 * @example
 * import express from 'express';
 * import { regional } from 'regional/express';
 *
 * const app = express();
 * const middleware = regional({ sources: [pool] });
 * app.use(middleware); // first: before body parsers
 * app.use(express.json());
 * // … routes …
 * app.use(middleware.errors); // last: replays a read whose handler hit a replica's 25006
 */
import type { ErrorRequestHandler, Request, RequestHandler } from 'express';
import { NodeExchange } from '../http/node/exchange.js';
import { RegionalHttp } from '../http/regional-http.js';
import type { RegionalHttpOptions } from '../http/settings.js';

/** The middleware, its error handler, and the {@link RegionalHttp} they use. */
export type RegionalExpress = RequestHandler & {
  readonly regional: RegionalHttp;
  /**
   * Error middleware to mount after the routes: a read whose handler failed with a replica's
   * SQLSTATE 25006 (from a client other than Regional's pool) is replayed instead, and
   * Regional's own errors a client can act on (the primary unreachable, a time-out) are answered
   * 503/504 with their code. Writes through `RegionalPool` are replayed without it. (Without
   * it, Express's own handler still answers those errors with their `status`.)
   */
  readonly errors: ErrorRequestHandler;
};

/**
 * Express middleware: mount it before any body parser, so that a write can be forwarded with
 * its body. Writing requests arriving in a replica region are replayed in the primary region;
 * reads wait for the client's token; a read whose handler writes is replayed while nothing
 * has been sent; every response gets Regional's headers, and a token after a write.
 *
 * @example
 * app.use(regional({ sources: [pool], writeRoutes: ['GET /logout'] }));
 */
export function regional(options: RegionalHttp | RegionalHttpOptions = {}): RegionalExpress {
  const core = RegionalHttp.from(options);
  const exchanges = new WeakMap<Request, NodeExchange>();
  const middleware: RequestHandler = (req, res, next) => {
    NodeExchange.begin(core, req, res, { path: req.originalUrl }).then((exchange) => {
      if (exchange.handled) {
        // answer() ends the response itself when it fails midway.
        exchange.answer().catch((error) => (res.headersSent ? undefined : next(error)));
        return;
      }
      exchanges.set(req, exchange);
      exchange.run(() => next());
    }, next);
  };
  const errors: ErrorRequestHandler = (error, req, _res, next) => {
    const exchange = exchanges.get(req);
    if (exchange?.failed(error)) return;
    if (!exchange) return next(error);
    exchange.answerError(error).then((answered) => {
      if (!answered) next(error);
    }, next);
  };
  return Object.assign(middleware, { regional: core, errors });
}
