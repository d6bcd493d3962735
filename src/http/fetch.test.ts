import type { Server } from 'node:http';
import { createAdaptorServer } from '@hono/node-server';
import { listen, type TestApp, type TestAppAdapter } from '../../test/support/http-app.js';
import { httpBehaviourSuite } from '../../test/support/http-suite.js';
import { regionalFetch } from './fetch.js';

const json = (body: unknown, status = 200, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify(body), {
    status,
    headers: { 'content-type': 'application/json', ...headers },
  });

/** The test app as a bare Web-standard fetch handler, no framework. */
function fetchHandler(app: TestApp) {
  return async (request: Request): Promise<Response> => {
    const { pathname } = new URL(request.url);
    const route = `${request.method} ${pathname}`;
    const post = /^\/posts\/([^/]+)$/.exec(pathname);
    if (route === 'POST /posts') {
      const { body } = (await request.json()) as { body: string };
      const id = await app.createPost(body);
      return json({ id }, 303, { location: `/posts/${id}` });
    }
    if (request.method === 'GET' && post) {
      const row = await app.readPost(post[1] as string);
      return row ? json(row) : json({ error: 'not found' }, 404);
    }
    if (route === 'GET /visit' || route === 'GET /touch') return json(await app.visit());
    if (route === 'GET /note-fn') return json(await app.noteViaFunction());
    if (route === 'GET /note-raw') return json(await app.noteViaRawReplica());
    if (route === 'GET /unavailable') return json(await app.unavailable());
    if (route === 'POST /search') return json(await app.search());
    if (route === 'GET /stream-write') {
      const encoder = new TextEncoder();
      const body = new ReadableStream({
        async start(controller) {
          controller.enqueue(encoder.encode('started\n'));
          // By now the response has been handed over: a write can no longer be replayed.
          await new Promise((resolve) => setTimeout(resolve, 50));
          controller.enqueue(encoder.encode(await app.writeAfterStart()));
          controller.close();
        },
      });
      return new Response(body, { headers: { 'content-type': 'text/plain' } });
    }
    return json({ error: 'no route' }, 404);
  };
}

const fetchAdapter: TestAppAdapter = {
  name: 'a Web-standard fetch handler (regionalFetch)',
  async start(app, options) {
    const handler = regionalFetch(fetchHandler(app), options);
    return listen(createAdaptorServer({ fetch: handler }) as Server, handler.regional);
  },
};

// Not one of the four framework adapters: the same suite, with a shorter consistency run.
httpBehaviourSuite(fetchAdapter, { sequences: 200 });
