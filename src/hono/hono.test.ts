import type { Server } from 'node:http';
import { createAdaptorServer } from '@hono/node-server';
import { Hono } from 'hono';
import { stream } from 'hono/streaming';
import { listen, type TestApp, type TestAppAdapter } from '../../test/support/http-app.js';
import { httpBehaviourSuite } from '../../test/support/http-suite.js';
import { regional } from './index.js';

/** The test app as a Hono app with Regional's middleware. */
function honoApp(app: TestApp, middleware: ReturnType<typeof regional>): Hono {
  const hono = new Hono();
  hono.use(middleware);
  hono.onError((error, c) => c.text(error.message, 500));
  hono.post('/posts', async (c) => {
    const { body } = await c.req.json<{ body: string }>();
    const id = await app.createPost(body);
    return c.json({ id }, 303, { location: `/posts/${id}` });
  });
  hono.get('/posts/:id', async (c) => {
    const row = await app.readPost(c.req.param('id'));
    return row ? c.json(row) : c.json({ error: 'not found' }, 404);
  });
  hono.get('/visit', async (c) => c.json(await app.visit()));
  hono.get('/touch', async (c) => c.json(await app.visit()));
  hono.get('/note-fn', async (c) => c.json(await app.noteViaFunction()));
  hono.get('/note-raw', async (c) => c.json(await app.noteViaRawReplica()));
  hono.get('/unavailable', async (c) => c.json(await app.unavailable()));
  hono.post('/search', async (c) => c.json(await app.search()));
  hono.get('/stream-write', (c) => {
    c.header('content-type', 'text/plain');
    return stream(c, async (out) => {
      await out.write('started\n');
      // The response has been handed over by now: a write can no longer be replayed.
      await out.sleep(50);
      await out.write(await app.writeAfterStart());
    });
  });
  return hono;
}

const honoAdapter: TestAppAdapter = {
  name: 'Hono',
  async start(app, options) {
    const middleware = regional(options);
    const server = createAdaptorServer({ fetch: honoApp(app, middleware).fetch }) as Server;
    return listen(server, middleware.regional);
  },
};

httpBehaviourSuite(honoAdapter);
