/**
 * `regional/fastify`: Regional as a Fastify plugin.
 *
 * @example
 * import Fastify from 'fastify';
 * import { regional } from 'regional/fastify';
 *
 * const app = Fastify();
 * await app.register(regional, { sources: [pool] });
 * app.get('/logout', { config: { regional: 'write' } }, handler); // a GET that writes
 * app.post('/search', { config: { regional: 'read' } }, handler); // a POST that only reads
 */
import type { FastifyPluginCallback, FastifyRequest } from 'fastify';
import { runInContext } from '../core/context.js';
import { NodeExchange } from '../http/node/exchange.js';
import { RegionalHttp } from '../http/regional-http.js';
import type { RegionalHttpOptions } from '../http/settings.js';

export interface RegionalFastifyOptions extends RegionalHttpOptions {
  /** An already made instance (its options win over the others given here). */
  regional?: RegionalHttp;
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Regional's request handling (counters: `app.regional.stats()`). */
    regional: RegionalHttp;
  }
  interface FastifyContextConfig {
    /** Marks a route as writing (replayed in the primary region) or reading, whatever its method. */
    regional?: 'read' | 'write';
  }
}

/**
 * The Fastify plugin. Its hooks apply to the whole app (it is not encapsulated). Writing
 * requests arriving in a replica region are replayed in the primary region before their body
 * is parsed; reads wait for the client's token; a read whose handler writes is replayed while
 * nothing has been sent; every response gets Regional's headers, and a token after a write.
 * Routes mark themselves with `config: { regional: 'write' | 'read' }`.
 *
 * @example
 * await app.register(regional, { sources: [pool] });
 */
const plugin: FastifyPluginCallback<RegionalFastifyOptions> = (fastify, options, done) => {
  const core = options.regional ?? new RegionalHttp(options);
  const exchanges = new WeakMap<FastifyRequest, NodeExchange>();
  fastify.decorate('regional', core);

  fastify.addHook('onRequest', (request, reply, next) => {
    const mark = request.routeOptions.config?.regional;
    NodeExchange.begin(core, request.raw, reply.raw, { path: request.raw.url, mark }).then(
      (exchange) => {
        if (exchange.handled) {
          reply.hijack();
          exchange.answer().catch((error) => reply.raw.destroy(error));
          next();
          return;
        }
        exchanges.set(request, exchange);
        // Run the rest of the request (parsing, hooks, handler) in its consistency context.
        exchange.run(() => next());
      },
      next,
    );
  });
  // Body parsing may resume in another async context: enter the request's again.
  fastify.addHook('preHandler', (request, _reply, next) => {
    const exchange = exchanges.get(request);
    if (exchange) runInContext(exchange.state.context, () => next());
    else next();
  });
  fastify.addHook('onError', (request, _reply, error, next) => {
    exchanges.get(request)?.failed(error);
    next();
  });
  // Regional's own errors a client can act on (503/504) are answered with their code and a
  // message without internals; everything else goes to the error handler the app had. An app
  // that sets its own handler later gets them with `status` and `code` to act on.
  const previous = fastify.errorHandler;
  fastify.setErrorHandler(function (error, request, reply) {
    const exchange = exchanges.get(request);
    const answer = exchange ? core.errorAnswer(exchange.state, error) : null;
    if (!answer) return previous.call(this, error, request, reply);
    reply.code(answer.status);
    // Region and timing headers come with the response's start, as on every answer.
    for (const [name, value] of answer.headers)
      if (name === 'content-type' || name === 'retry-after') reply.header(name, value);
    return reply.send(answer.body);
  });
  done();
};

// Not encapsulated: the hooks apply to every route of the app that registers it.
(plugin as unknown as Record<symbol, unknown>)[Symbol.for('skip-override')] = true;
(plugin as unknown as Record<symbol, unknown>)[Symbol.for('fastify.display-name')] = 'regional';

export const regional = plugin;
export default plugin;
