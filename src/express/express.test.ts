import http from 'node:http';
import express from 'express';
import { listen, type TestApp, type TestAppAdapter } from '../../test/support/http-app.js';
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
