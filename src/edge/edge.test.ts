import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Client } from '../../test/support/http-client.js';
import { LatencyProxy } from '../testing/link/latency-proxy.js';
import { type EdgeLinks, LocalEdge, type LocalEdgeOptions, parseFlyReplay } from './edge.js';

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

interface Seen {
  method: string;
  url: string;
  body: string;
  headers: http.IncomingHttpHeaders;
}

/** An app instance of `region`: records what it gets; `answer` decides the response. */
async function app(
  region: string,
  answer: (seen: Seen, res: http.ServerResponse) => void = (seen, res) =>
    res.end(JSON.stringify({ region, ...seen })),
): Promise<{ port: number; seen: Seen[] }> {
  const seen: Seen[] = [];
  const server = http.createServer(async (req, res) => {
    let body = '';
    for await (const chunk of req) body += chunk;
    const entry = { method: req.method ?? '', url: req.url ?? '', body, headers: req.headers };
    seen.push(entry);
    answer(entry, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  closers.push(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  return { port: (server.address() as AddressInfo).port, seen };
}

/** Cross-region paths through latency proxies, `oneWayMs` each way; `proxies` are those open. */
function links(oneWayMs: number): { links: EdgeLinks; proxies: LatencyProxy[] } {
  const proxies: LatencyProxy[] = [];
  const links: EdgeLinks = {
    async route({ from, to, port, name }) {
      const proxy = new LatencyProxy({
        name: `${from}->${to} ${name}`,
        targetPort: port,
        oneWayMs,
      });
      await proxy.listen();
      proxies.push(proxy);
      closers.push(() => proxy.close());
      return proxy.port;
    },
    async unroute(port) {
      const at = proxies.findIndex((p) => p.port === port);
      if (at >= 0) await proxies.splice(at, 1)[0]?.close();
    },
  };
  return { links, proxies };
}

async function edge(options: LocalEdgeOptions): Promise<LocalEdge> {
  const started = await LocalEdge.start(options);
  closers.push(() => started.close());
  return started;
}

const replayToIad = (_seen: Seen, res: http.ServerResponse) => {
  res.writeHead(409, { 'fly-replay': 'region=iad;state=abc123', 'content-length': '0' });
  res.end();
};

describe('LocalEdge', () => {
  it('sends each entry port to its own region, directly, with forwarding headers', async () => {
    const iad = await app('iad');
    const syd = await app('syd');
    const paths = links(50);
    const { proxies } = paths;
    const local = await edge({
      apps: { iad: { port: iad.port }, syd: { port: syd.port } },
      links: paths.links,
    });
    const response = await new Client(local.url('syd')).send('POST', '/x?y=1', { json: { a: 1 } });
    expect(response.json()).toMatchObject({
      region: 'syd',
      method: 'POST',
      url: '/x?y=1',
      body: '{"a":1}',
    });
    expect(syd.seen[0]?.headers).toMatchObject({
      'x-forwarded-proto': 'http',
      via: '1.1 regional-edge',
    });
    expect(iad.seen).toEqual([]);
    expect(proxies).toEqual([]);
    expect(Object.keys(local.entries)).toEqual(['iad', 'syd']);
  });

  it('honours fly-replay: re-sends the same request with fly-replay-src to the named region, through the link', async () => {
    const iad = await app('iad');
    const syd = await app('syd', replayToIad);
    const paths = links(50);
    const { proxies } = paths;
    const local = await edge({
      apps: { iad: { port: iad.port }, syd: { port: syd.port } },
      links: paths.links,
    });
    const started = performance.now();
    const response = await new Client(local.url('syd')).send('PUT', '/posts/1', {
      json: { body: 'hello' },
      headers: { 'x-custom': 'kept' },
    });
    const elapsed = performance.now() - started;
    expect(response.status).toBe(200);
    expect(response.json()).toMatchObject({
      region: 'iad',
      method: 'PUT',
      url: '/posts/1',
      body: '{"body":"hello"}',
    });
    const replayed = iad.seen[0] as Seen;
    expect(replayed.headers['x-custom']).toBe('kept');
    expect(replayed.headers['fly-replay-src']).toMatch(
      /^instance=syd-app;region=syd;t=\d+;state=abc123$/,
    );
    // One round trip across a link of 50 ms each way, at least.
    expect(elapsed).toBeGreaterThanOrEqual(100);
    expect(proxies.map((p) => p.name)).toEqual(['syd->iad edge']);
    expect(proxies[0]?.stats().roundTrips).toBeGreaterThanOrEqual(1);
    expect(local.stats()).toEqual({ requests: 1, replays: 1, failures: 0, replayCacheHits: 0 });
    // Closing the edge closes the path it made.
    await local.close();
    expect(proxies).toEqual([]);
  });

  it('a replay with a timeout and a fallback that does not answer in time goes back to the asker, marked', async () => {
    // iad never answers; syd asks for the replay, and answers what came back itself.
    const iad = await app('iad', () => {});
    const syd = await app('syd', (seen, res) => {
      if (seen.headers['fly-replay-failed']) {
        res.writeHead(503).end(`back: ${seen.headers['fly-replay-failed']}`);
        return;
      }
      res.writeHead(409, { 'fly-replay': 'region=iad;timeout=300ms;fallback=force_self' });
      res.end();
    });
    const local = await edge({
      apps: { iad: { port: iad.port }, syd: { port: syd.port } },
      links: links(10).links,
    });
    const response = await new Client(local.url('syd')).send('POST', '/posts', {
      json: { body: 'x' },
      headers: { 'fly-replay-failed': 'forged by the client' },
    });
    expect(response.status).toBe(503);
    expect(response.text).toBe('back: reason=timeout;region=iad');
    expect(iad.seen).toHaveLength(1);
    // The client's own header never reached the app.
    expect(syd.seen[0]?.headers['fly-replay-failed']).toBeUndefined();
    expect(syd.seen[1]?.body).toBe('{"body":"x"}');
  });

  it('parses the fly-replay fields it honours', () => {
    expect(parseFlyReplay('region=iad;state=s;timeout=2s;fallback=force_self')).toEqual({
      region: 'iad',
      state: 's',
      timeoutMs: 2000,
      fallback: 'force_self',
    });
    expect(parseFlyReplay('region="iad,any";timeout=800ms;fallback=nope')).toEqual({
      region: 'iad',
      timeoutMs: 800,
    });
  });

  it('refuses to replay a body over the limit, an unknown region, and endless replays', async () => {
    const iad = await app('iad', replayToIad);
    const syd = await app('syd', replayToIad);
    const elsewhere = await app('cdg', (_seen, res) => {
      res.writeHead(409, { 'fly-replay': 'region=lhr' });
      res.end();
    });
    const local = await edge({
      apps: { iad: { port: iad.port }, syd: { port: syd.port }, cdg: { port: elsewhere.port } },
      maxReplayBodyBytes: 1024,
    });
    const big = await new Client(local.url('syd')).send('POST', '/upload', {
      json: { data: 'x'.repeat(2000) },
    });
    expect(big.status).toBe(413);
    expect(big.text).toMatch(/over 1024 bytes and cannot be replayed/);
    // The app still got the whole body, streamed.
    expect(syd.seen[0]?.body.length).toBeGreaterThan(2000);
    const unknown = await new Client(local.url('cdg')).get('/');
    expect(unknown.status).toBe(502);
    expect(unknown.text).toMatch(/fly-replay names region "lhr", which has no app/);
    const loop = await new Client(local.url('syd')).get('/');
    expect(loop.status).toBe(508);
    expect(local.stats().failures).toBe(3);
  });

  it('answers 502 when a region app does not answer, and passes a client fly-replay-src on untouched', async () => {
    const iad = await app('iad');
    const local = await edge({ apps: { iad: { port: iad.port }, syd: { port: 1 } } });
    expect((await new Client(local.url('syd')).get('/')).status).toBe(502);
    await new Client(local.url('iad')).get('/', { headers: { 'fly-replay-src': 'state=forged' } });
    expect(iad.seen[0]?.headers['fly-replay-src']).toBe('state=forged');
  });

  it('caches a replay the app asks it to (fly-replay-cache): later matching requests go straight to that region', async () => {
    const iad = await app('iad');
    const cachingReplay = (seen: Seen, res: http.ServerResponse) => {
      const [pattern, ttl] = seen.url.startsWith('/short')
        ? ['127.0.0.1/short/*', '5'] // under Fly's 10 s minimum: ignored
        : seen.url.startsWith('/elsewhere')
          ? ['127.0.0.1/topics/*', '60'] // does not match this request: ignored
          : ['127.0.0.1/topics/*/posts', '60'];
      res.writeHead(409, {
        'fly-replay': 'region=iad;state=abc123',
        'fly-replay-cache': pattern,
        'fly-replay-cache-ttl-secs': ttl,
        'content-length': '0',
      });
      res.end();
    };
    const syd = await app('syd', cachingReplay);
    const cdg = await app('cdg', cachingReplay);
    const local = await edge({
      apps: { iad: { port: iad.port }, syd: { port: syd.port }, cdg: { port: cdg.port } },
    });
    const client = new Client(local.url('syd'));
    for (const body of ['one', 'two', 'three']) {
      const response = await client.send('POST', '/topics/7/posts?x=1', { json: { body } });
      expect(response.json()).toMatchObject({ region: 'iad', body: JSON.stringify({ body }) });
    }
    // Only the first request stopped in syd; the next two went straight to iad.
    expect(syd.seen.map((s) => s.url)).toEqual(['/topics/7/posts?x=1']);
    expect(iad.seen).toHaveLength(3);
    expect(iad.seen[1]?.headers['fly-replay-src']).toMatch(
      /^instance=replay-cache;region=syd;t=\d+$/,
    );
    expect(local.stats()).toMatchObject({ requests: 3, replays: 1, replayCacheHits: 2 });
    // Other paths, and other entry regions, still ask their own region's app first.
    await client.get('/topics/7');
    expect(syd.seen.map((s) => s.url)).toEqual(['/topics/7/posts?x=1', '/topics/7']);
    await new Client(local.url('cdg')).send('POST', '/topics/7/posts', { json: {} });
    expect(cdg.seen).toHaveLength(1);
    // A lifetime under 10 s, or a pattern that does not match the request, is not cached.
    for (const url of ['/short/1', '/short/1', '/elsewhere/1', '/elsewhere/1'])
      await client.get(url);
    expect(syd.seen.filter((s) => /short|elsewhere/.test(s.url))).toHaveLength(4);
  });

  it('forgets a cached replay when the region it leads to answers fly-replay-cache: invalidate', async () => {
    let iadIsPrimary = true;
    const iad = await app('iad', (seen, res) => {
      if (iadIsPrimary) return res.end(JSON.stringify({ region: 'iad', ...seen }));
      res.writeHead(409, { 'fly-replay': 'region=cdg', 'fly-replay-cache': 'invalidate' });
      res.end();
    });
    const cdg = await app('cdg');
    const syd = await app('syd', (_seen, res) => {
      res.writeHead(409, {
        'fly-replay': `region=${iadIsPrimary ? 'iad' : 'cdg'}`,
        'fly-replay-cache': '127.0.0.1/posts',
        'fly-replay-cache-ttl-secs': '60',
      });
      res.end();
    });
    const local = await edge({
      apps: { iad: { port: iad.port }, syd: { port: syd.port }, cdg: { port: cdg.port } },
    });
    const client = new Client(local.url('syd'));
    await client.send('POST', '/posts', { json: {} });
    await client.send('POST', '/posts', { json: {} });
    expect(syd.seen).toHaveLength(1);
    iadIsPrimary = false;
    // The cached replay reaches iad, which sends it on and drops the cache entry...
    expect((await client.send('POST', '/posts', { json: {} })).json()).toMatchObject({
      region: 'cdg',
    });
    // ...so the next request asks syd again, which now names cdg.
    expect((await client.send('POST', '/posts', { json: {} })).json()).toMatchObject({
      region: 'cdg',
    });
    expect(syd.seen).toHaveLength(2);
    expect(local.stats().replayCacheHits).toBe(2);
  });

  it('streams an answer as the app writes it, and a client that leaves closes the app side', async () => {
    let appResponse: http.ServerResponse | undefined;
    const closed = new Promise<void>((resolve) => {
      void app('iad', (_seen, res) => {
        appResponse = res;
        res.on('close', () => resolve());
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write('data: first\n\n');
      }).then(async (iad) => {
        const local = await edge({ apps: { iad: { port: iad.port } } });
        const request = http.get(`${local.url('iad')}/events`);
        request.on('response', (response) => {
          // The first event arrives while the app's answer is still open...
          response.once('data', (chunk: Buffer) => {
            expect(chunk.toString()).toBe('data: first\n\n');
            expect(appResponse?.writableEnded).toBe(false);
            // ...and when the client goes away, the edge lets go of the app's answer too.
            request.destroy();
          });
        });
        request.on('error', () => {});
      });
    });
    await Promise.race([
      closed,
      new Promise((_, reject) =>
        setTimeout(() => reject(new Error('the app still streams to a client that left')), 3000),
      ),
    ]);
    expect(appResponse?.writableFinished).toBe(false);
  });

  it('reads fly-replay fields as Fly.io writes them', () => {
    expect(parseFlyReplay('region=iad')).toEqual({ region: 'iad' });
    expect(parseFlyReplay('region="iad,ord";state=xyz;elsewhere=true')).toEqual({
      region: 'iad',
      state: 'xyz',
    });
    expect(parseFlyReplay('instance=00bb33ff')).toEqual({});
  });
});
