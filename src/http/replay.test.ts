/**
 * Replays under faults and hostile clients, on a real two-region cluster with node:http
 * instances: a partition during a lag replay, slow uploads, `Expect: 100-continue`, an
 * unreachable primary region, aborted uploads.
 */
import http from 'node:http';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { Client } from '../../test/support/http-client.js';
import { LocalEdge } from '../edge/edge.js';
import { RegionalPool, type RegionalPoolOptions } from '../pg/pool.js';
import { LocalCluster } from '../testing/cluster.js';
import { LatencyProxy } from '../testing/link/latency-proxy.js';
import { regionalNode } from './node/index.js';
import type { RegionalHttpOptions } from './settings.js';

const SECRET = 'e469510d32bf70170f9f515aab060069cedc4684b2b41a80e30c7b419bc96dce';

let cluster: LocalCluster;
const closers: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  cluster = await LocalCluster.start({
    temporary: true,
    regions: ['iad', 'syd'],
    rttMs: { syd: 40 },
  });
  await cluster.query('iad', 'CREATE TABLE posts (id serial PRIMARY KEY, body text NOT NULL)');
  await cluster.waitForReplay('syd');
});

afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
  await cluster.link('iad', 'syd').restore();
  await cluster.resumeReplay('syd');
});

afterAll(async () => {
  await cluster?.stop();
});

/** An instance of a small app: POST /posts { body } → 303 /posts/:id; GET /posts/:id. */
async function instance(
  region: 'iad' | 'syd',
  options: RegionalHttpOptions = {},
  poolOptions: Partial<RegionalPoolOptions> = {},
) {
  const endpoints = cluster.endpoints(region);
  const pool = new RegionalPool({
    primaryRegion: 'iad',
    region,
    databaseUrl: endpoints.databaseUrl,
    replicaUrl: endpoints.replicaUrl,
    onWarning: () => {},
    ...poolOptions,
  });
  const listener = regionalNode(
    async (req, res) => {
      const post = /^\/posts\/(\d+)$/.exec(req.url ?? '');
      if (req.method === 'POST' && req.url === '/posts') {
        let text = '';
        for await (const chunk of req) text += chunk;
        const { rows } = await pool.query<{ id: number }>(
          'INSERT INTO posts (body) VALUES ($1) RETURNING id',
          [(JSON.parse(text) as { body: string }).body],
        );
        res.writeHead(303, { location: `/posts/${rows[0]?.id}` }).end();
      } else if (req.method === 'GET' && post) {
        const { rows } = await pool.query('SELECT id, body FROM posts WHERE id = $1', [post[1]]);
        res.writeHead(rows[0] ? 200 : 404, { 'content-type': 'application/json' });
        res.end(JSON.stringify(rows[0] ?? { error: 'not found' }));
      } else res.writeHead(404).end();
    },
    {
      sources: [pool],
      primaryRegion: 'iad',
      region,
      secret: SECRET,
      mode: 'proxy',
      maxWaitMs: 300,
      onWarning: () => {},
      ...options,
    },
  );
  const server = http.createServer(listener);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  closers.push(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    await listener.regional.close();
    await pool.end();
  });
  return { port, url: `http://127.0.0.1:${port}`, regional: listener.regional };
}

/** iad's instance, and syd's reaching it through the link (proxy mode unless told). */
async function deployment(
  syd: RegionalHttpOptions = {},
  sydPool: Partial<RegionalPoolOptions> = {},
) {
  const iad = await instance('iad');
  const toIad = await cluster.route({ from: 'syd', to: 'iad', port: iad.port, name: 'http' });
  closers.push(() => cluster.unroute(toIad));
  return {
    iad,
    syd: await instance('syd', { primaryUrl: `http://127.0.0.1:${toIad}`, ...syd }, sydPool),
  };
}

/** Sends a request on a raw socket: headers now, then `bodyBytes` bytes one every `everyMs`. */
function slowUpload(port: number, bodyBytes: number, everyMs: number) {
  const socket = net.connect(port, '127.0.0.1');
  let answer = '';
  socket.setEncoding('utf8');
  socket.on('data', (data) => {
    answer += data;
  });
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  socket.write(
    `POST /posts HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: ${bodyBytes}\r\n\r\n`,
  );
  let sent = 0;
  const timer = setInterval(() => {
    if (sent >= bodyBytes || socket.destroyed) return clearInterval(timer);
    socket.write(' ');
    sent++;
  }, everyMs);
  return {
    get answer() {
      return answer;
    },
    get sent() {
      return sent;
    },
    closed,
    destroy() {
      clearInterval(timer);
      socket.destroy();
    },
  };
}

describe('proxy mode under faults', () => {
  it('a read replayed for lag during a partition ends with 504 while the partition lasts', async () => {
    const { syd } = await deployment({ lagReplayTimeoutMs: 1000 });
    const client = new Client(syd.url);
    await cluster.pauseReplay('syd');
    const post = await client.send('POST', '/posts', { json: { body: 'before the cut' } });
    expect(post.status, post.text).toBe(303);
    const link = cluster.link('iad', 'syd');
    await link.cut('hang');
    const read = await client.get(post.header('location') as string);
    // Answered while the partition still holds: the request did not wait it out.
    expect(link.state).toBe('hang');
    expect(read.status, read.text).toBe(504);
    expect(read.json()).toMatchObject({ error: { code: 'REGIONAL_REPLAY_TIMEOUT' } });
    expect(read.header('retry-after')).toBe('1');
  });

  it('under fly-replay, a read replayed for lag during a partition comes back and is answered 503 while it lasts', async () => {
    const { iad, syd } = await deployment({ mode: 'fly-replay', lagReplayTimeoutMs: 1000 });
    const edge = await LocalEdge.start({
      apps: { iad: { port: iad.port }, syd: { port: syd.port } },
      links: cluster,
    });
    closers.push(() => edge.close());
    const client = new Client(edge.url('syd'));
    await cluster.pauseReplay('syd');
    const post = await client.send('POST', '/posts', { json: { body: 'before the cut' } });
    expect(post.status, post.text).toBe(303);
    const link = cluster.link('iad', 'syd');
    await link.cut('hang');
    const read = await client.get(post.header('location') as string);
    expect(link.state).toBe('hang');
    expect(read.status, read.text).toBe(503);
    expect(read.json()).toMatchObject({ error: { code: 'REGIONAL_PRIMARY_REGION_UNAVAILABLE' } });
    expect(read.header('x-regional-region')).toBe('syd');
    expect(syd.regional.stats().replayFailures).toBe(1);
  });

  it('slow uploads do not keep other writes from the primary region, and time out with 408', async () => {
    const { syd } = await deployment({ replayBodyTimeoutMs: 3000 });
    // More slow clients than there are connections to the primary region (16).
    const uploads = Array.from({ length: 24 }, () => slowUpload(syd.port, 60, 200));
    await sleep(500);
    const post = await new Client(syd.url).send('POST', '/posts', { json: { body: 'normal' } });
    expect(post.status, post.text).toBe(303);
    // The normal write was answered while every slow upload was still sending its body.
    for (const upload of uploads) {
      expect(upload.sent).toBeLessThan(60);
      expect(upload.answer).toBe('');
    }
    await Promise.all(uploads.map((upload) => upload.closed));
    for (const upload of uploads) {
      expect(upload.answer).toMatch(/^HTTP\/1\.1 408 /);
      expect(upload.answer).toContain('REGIONAL_BODY_TIMEOUT');
    }
    for (const upload of uploads) upload.destroy();
  });

  it('an aborted upload logs no stack trace', async () => {
    const { syd } = await deployment();
    const logged = vi.spyOn(console, 'error').mockImplementation(() => {});
    try {
      const uploads = Array.from({ length: 5 }, () => slowUpload(syd.port, 100, 50));
      await sleep(300);
      for (const upload of uploads) upload.destroy();
      await sleep(500);
      expect(logged).not.toHaveBeenCalled();
    } finally {
      logged.mockRestore();
    }
  });

  it('an unreachable primary region is a 503 that names no internal address', async () => {
    const closed = await new Promise<number>((resolve) => {
      const probe = net.createServer();
      probe.listen(0, '127.0.0.1', () => {
        const { port } = probe.address() as net.AddressInfo;
        probe.close(() => resolve(port));
      });
    });
    const syd = await instance('syd', { primaryUrl: `http://127.0.0.1:${closed}` });
    const post = await new Client(syd.url).send('POST', '/posts', { json: { body: 'lost' } });
    expect(post.status, post.text).toBe(503);
    expect(post.json()).toMatchObject({ error: { code: 'REGIONAL_PRIMARY_REGION_UNAVAILABLE' } });
    expect(post.text).not.toContain(String(closed));
    expect(post.text).not.toMatch(/127\.0\.0\.1|REGIONAL_PRIMARY_URL/);
  });
});

describe('monotonic reads across requests', () => {
  it('a read served by the primary gives the client a token, and its next request sees no less', async () => {
    const direct = new URL(cluster.serverUrl('syd'));
    const replica = new LatencyProxy({
      name: 'syd replica',
      targetPort: Number(direct.port),
      oneWayMs: 0,
    });
    await replica.listen();
    closers.push(() => replica.close());
    direct.port = String(replica.port);
    const { syd } = await deployment({}, { replicaUrl: direct.toString(), replicaRetryMs: 100 });
    await cluster.pauseReplay('syd');
    const post = await new Client(syd.url).send('POST', '/posts', { json: { body: 'elsewhere' } });
    expect(post.status, post.text).toBe(303);
    const reader = new Client(syd.url);
    await replica.cut('refuse');
    // The replica cannot be reached: the primary serves the read, and the client learns where.
    const first = await reader.get(post.header('location') as string);
    expect(first.status, first.text).toBe(200);
    expect(first.header('x-regional-token')).toMatch(/^t1\./);
    await replica.restore();
    await sleep(300); // the replica is in use again, still behind
    const again = await reader.get(post.header('location') as string);
    expect(again.status, again.text).toBe(200);
  });
});

describe('Expect: 100-continue', () => {
  /** A POST that sends its body only after the server's 100 Continue, as curl does for large bodies. */
  function postExpectingContinue(url: string, body: string): Promise<{ status: number }> {
    return new Promise((resolve, reject) => {
      const request = http.request(`${url}/posts`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
          expect: '100-continue',
        },
      });
      request.on('continue', () => request.end(body));
      request.on('response', (response) => {
        response.resume();
        resolve({ status: response.statusCode ?? 0 });
      });
      request.on('error', reject);
    });
  }

  it.each(['proxy', 'fly-replay'] as const)(
    'a write through the edge in %s mode is replayed and succeeds',
    async (mode) => {
      const { iad, syd } = await deployment({ mode });
      const edge = await LocalEdge.start({
        apps: { iad: { port: iad.port }, syd: { port: syd.port } },
        links: cluster,
      });
      closers.push(() => edge.close());
      const body = JSON.stringify({ body: 'x'.repeat(2000) });
      expect((await postExpectingContinue(edge.url('syd'), body)).status).toBe(303);
      // And straight to the instance, without the edge in front.
      if (mode === 'proxy') expect((await postExpectingContinue(syd.url, body)).status).toBe(303);
    },
  );
});
