import http from 'node:http';
import express from 'express';
import { describe, expect, it } from 'vitest';
import { listen, type TestApp, type TestAppAdapter } from '../../test/support/http-app.js';
import { Client } from '../../test/support/http-client.js';
import { httpBehaviourSuite } from '../../test/support/http-suite.js';
import { type RegionalExpress, regional } from './index.js';

/** The test app as an Express app with Regional's middleware (first) and error handler (last). */
function expressApp(app: TestApp, middleware: RegionalExpress): express.Express {
  const server = express();
  server.use(middleware);
  server.use(express.json());
  server.post('/posts', async (req, res) => {
    const id = await app.createPost((req.body as { body: string }).body);
    res.status(303).location(`/posts/${id}`).json({ id });
  });
  server.get('/posts/:id', async (req, res) => {
    const row = await app.readPost(req.params.id);
    if (row) res.json(row);
    else res.status(404).json({ error: 'not found' });
  });
  server.get('/visit', async (_req, res) => void res.json(await app.visit()));
  server.get('/touch', async (_req, res) => void res.json(await app.visit()));
  server.get('/note-fn', async (_req, res) => void res.json(await app.noteViaFunction()));
  server.get('/note-raw', async (_req, res) => void res.json(await app.noteViaRawReplica()));
  server.get('/unavailable', async (_req, res) => void res.json(await app.unavailable()));
  server.post('/search', async (_req, res) => void res.json(await app.search()));
  server.get('/stream-write', async (_req, res) => {
    res.type('text/plain').status(200);
    res.write('started\n');
    res.end(await app.writeAfterStart());
  });
  server.use(middleware.errors);
  server.use(((error, _req, res, _next) => {
    res.status(500).send((error as Error).message);
  }) as express.ErrorRequestHandler);
  return server;
}

const expressAdapter: TestAppAdapter = {
  name: 'Express',
  async start(app, options) {
    const middleware = regional(options);
    return listen(http.createServer(expressApp(app, middleware)), middleware.regional);
  },
};

httpBehaviourSuite(expressAdapter);

describe('Express mounting order', () => {
  it('a write behind a body parser mounted before Regional is refused with a message saying so (proxy mode)', async () => {
    const server = express();
    server.use(express.json());
    const middleware = regional({
      primaryRegion: 'iad',
      region: 'syd',
      mode: 'proxy',
      primaryUrl: 'http://127.0.0.1:1',
      secret: 'e469510d32bf70170f9f515aab060069cedc4684b2b41a80e30c7b419bc96dce',
      onWarning: () => {},
    });
    server.use(middleware);
    server.post('/posts', (_req, res) => void res.send('ran in syd'));
    const app = await listen(http.createServer(server), middleware.regional);
    try {
      const response = await new Client(`http://127.0.0.1:${app.port}`).send('POST', '/posts', {
        json: { body: 'x' },
      });
      expect(response.status).toBe(500);
      expect(response.json()).toEqual({
        error: {
          code: 'REGIONAL_BODY_ALREADY_READ',
          message:
            "POST /posts must be replayed in iad, but its body was already read: mount Regional's middleware before any body parser.",
        },
      });
    } finally {
      await app.close();
    }
  });
});
