/**
 * `regional/http/node`: Regional for a plain node:http server.
 *
 * @example
 * import http from 'node:http';
 * import { RegionalPool } from 'regional/pg';
 * import { regionalNode } from 'regional/http/node';
 *
 * const pool = new RegionalPool();
 * http.createServer(regionalNode(async (req, res) => {
 *   const { rows } = await pool.query('SELECT * FROM posts');
 *   res.end(JSON.stringify(rows));
 * }, { sources: [pool] })).listen(8080);
 */
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import { RegionalHttp } from '../regional-http.js';
import type { RegionalHttpOptions } from '../settings.js';
import { NodeExchange } from './exchange.js';

export type { NodeExchangeOptions } from './exchange.js';
export { NodeExchange, nodeView } from './exchange.js';

/** A node:http request listener with the {@link RegionalHttp} it uses. */
export type RegionalRequestListener = RequestListener & { readonly regional: RegionalHttp };

/**
 * Wraps a node:http handler: writes arriving in a replica region are replayed in the primary
 * region, reads wait for the client's token, and every response gets Regional's headers. A
 * handler error that is not Regional's to handle answers 500 (or ends a started response).
 *
 * @example
 * http.createServer(regionalNode(handler, { sources: [pool] }));
 */
export function regionalNode(
  handler: (req: IncomingMessage, res: ServerResponse) => unknown,
  options: RegionalHttp | RegionalHttpOptions = {},
): RegionalRequestListener {
  const regional = RegionalHttp.from(options);
  const listener = (req: IncomingMessage, res: ServerResponse) => {
    void serve(regional, handler, req, res);
  };
  return Object.assign(listener, { regional });
}

async function serve(
  regional: RegionalHttp,
  handler: (req: IncomingMessage, res: ServerResponse) => unknown,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  let exchange: NodeExchange;
  try {
    exchange = await NodeExchange.begin(regional, req, res);
    if (exchange.handled) return await exchange.answer();
  } catch (error) {
    return internalError(req, res, error);
  }
  try {
    await exchange.run(() => handler(req, res));
  } catch (error) {
    if (exchange.failed(error)) return;
    if (await exchange.answerError(error)) return;
    return internalError(req, res, error);
  }
  exchange.finished();
}

function internalError(req: IncomingMessage, res: ServerResponse, error: unknown): void {
  // A client that went away (an aborted upload) is not the server's failure: nothing to log.
  if (!clientAborted(req, error)) console.error('[regional] request failed:', error);
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  res.statusCode = 500;
  res.setHeader('content-type', 'text/plain; charset=utf-8');
  res.end('Internal Server Error');
}

/** True if `error` comes from the client closing its connection mid-request. */
export function clientAborted(req: IncomingMessage, error: unknown): boolean {
  const code = (error as { code?: string } | undefined)?.code;
  return (
    code === 'ECONNRESET' ||
    code === 'ERR_STREAM_PREMATURE_CLOSE' ||
    (error as Error | undefined)?.message === 'aborted' ||
    (req.destroyed && !req.complete)
  );
}
