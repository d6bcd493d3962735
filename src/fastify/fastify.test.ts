import Fastify, { type FastifyInstance } from 'fastify';
import { describe, expect, it } from 'vitest';
import type { TestApp, TestAppAdapter } from '../../test/support/http-app.js';
import { httpBehaviourSuite } from '../../test/support/http-suite.js';
import { regional } from './index.js';

/** The test app as a Fastify app with Regional's plugin. */
async function fastifyApp(app: TestApp, options: object): Promise<FastifyInstance> {
  const server = Fastify();
  await server.register(regional, options);
  server.post('/posts', async (request, reply) => {
    const id = await app.createPost((request.body as { body: string }).body);
    return reply.code(303).header('location', `/posts/${id}`).send({ id });
  });
  server.get('/posts/:id', async (request, reply) => {
    const row = await app.readPost((request.params as { id: string }).id);
    return row ? row : reply.code(404).send({ error: 'not found' });
  });
  server.get('/visit', async () => app.visit());
  server.get('/touch', async () => app.visit());
  server.get('/note-fn', async () => app.noteViaFunction());
  server.get('/note-raw', async () => app.noteViaRawReplica());
  server.get('/unavailable', async () => app.unavailable());
  server.post('/search', async () => app.search());
  server.get('/stream-write', async (_request, reply) => {
    // Raw streaming: the status line and headers go out before the write is tried.
    reply.hijack();
    reply.raw.writeHead(200, { 'content-type': 'text/plain' });
    reply.raw.write('started\n');
    reply.raw.end(await app.writeAfterStart());
  });
  return server;
}

const fastifyAdapter: TestAppAdapter = {
  name: 'Fastify',
  async start(app, options) {
    const server = await fastifyApp(app, options);
    await server.listen({ port: 0, host: '127.0.0.1' });
    const address = server.server.address();
    return {
      port: typeof address === 'object' && address ? address.port : 0,
      regional: server.regional,
      async close() {
        server.server.closeAllConnections();
        await server.close();
        await server.regional.close();
      },
    };
  },
};

httpBehaviourSuite(fastifyAdapter);

describe('Fastify route marking', () => {
  it('config.regional marks a GET as writing and a POST as reading, whatever the method', async () => {
    const server = Fastify();
    await server.register(regional, {
      primaryRegion: 'iad',
      region: 'syd',
      mode: 'fly-replay',
      secret: 'e469510d32bf70170f9f515aab060069cedc4684b2b41a80e30c7b419bc96dce',
      onWarning: () => {},
    });
    server.get('/logout', { config: { regional: 'write' } }, async () => ({ ran: 'syd' }));
    server.get('/page', async () => ({ ran: 'syd' }));
    server.post('/search', { config: { regional: 'read' } }, async () => ({ ran: 'syd' }));
    server.post('/posts', async () => ({ ran: 'syd' }));
    try {
      const replayed = async (method: 'GET' | 'POST', url: string) => {
        const response = await server.inject({
          method,
          url,
          payload: method === 'POST' ? {} : undefined,
        });
        expect(response.headers['x-regional-region']).toBe('syd');
        return (
          response.statusCode === 409 &&
          /^region=iad;state=/.test(String(response.headers['fly-replay']))
        );
      };
      expect(await replayed('GET', '/logout')).toBe(true);
      expect(await replayed('GET', '/page')).toBe(false);
      expect(await replayed('POST', '/search')).toBe(false);
      expect(await replayed('POST', '/posts')).toBe(true);
      expect(server.regional.stats().replays.write).toBe(2);
    } finally {
      await server.close();
    }
  });
});
