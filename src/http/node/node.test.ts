import http from 'node:http';
import { listen, type TestApp, type TestAppAdapter } from '../../../test/support/http-app.js';
import { httpBehaviourSuite } from '../../../test/support/http-suite.js';
import { regionalNode } from './index.js';

async function readJson(req: http.IncomingMessage): Promise<unknown> {
  let text = '';
  for await (const chunk of req) text += chunk;
  return text ? JSON.parse(text) : {};
}

function send(res: http.ServerResponse, status: number, body: unknown, headers = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

/** The test app on a plain node:http server. */
function handler(app: TestApp) {
  return async (req: http.IncomingMessage, res: http.ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const route = `${req.method} ${url.pathname}`;
    const post = /^\/posts\/([^/]+)$/.exec(url.pathname);
    if (route === 'POST /posts') {
      const { body } = (await readJson(req)) as { body: string };
      const id = await app.createPost(body);
      return send(res, 303, { id }, { location: `/posts/${id}` });
    }
    if (req.method === 'GET' && post) {
      const row = await app.readPost(post[1] as string);
      return row ? send(res, 200, row) : send(res, 404, { error: 'not found' });
    }
    if (route === 'GET /visit' || route === 'GET /touch') return send(res, 200, await app.visit());
    if (route === 'GET /note-fn') return send(res, 200, await app.noteViaFunction());
    if (route === 'GET /note-raw') return send(res, 200, await app.noteViaRawReplica());
    if (route === 'GET /unavailable') return send(res, 200, await app.unavailable());
    if (route === 'POST /search') {
      await readJson(req);
      return send(res, 200, await app.search());
    }
    if (route === 'GET /stream-write') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('started\n');
      return res.end(await app.writeAfterStart());
    }
    send(res, 404, { error: 'no route' });
  };
}

const nodeAdapter: TestAppAdapter = {
  name: 'node:http',
  async start(app, options) {
    const listener = regionalNode(handler(app), options);
    return listen(http.createServer(listener), listener.regional);
  },
};

httpBehaviourSuite(nodeAdapter);
