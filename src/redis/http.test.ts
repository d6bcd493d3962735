import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Client } from '../../test/support/http-client.js';
import { describeWithRedis } from '../../test/support/redis.js';
import { LocalEdge } from '../edge/edge.js';
import type { RegionalHttp } from '../http/index.js';
import { regionalNode } from '../http/node/index.js';
import { LocalCluster } from '../testing/cluster.js';
import { loadRedisConfig } from './config.js';
import { SharedStore } from './store.js';

const SECRET = 'e469510d32bf70170f9f515aab060069cedc4684b2b41a80e30c7b419bc96dce';

/**
 * A POST that writes Redis in syd, then a GET in syd carrying the token: the token holds the
 * Redis offset beside any Postgres position, and the GET waits for it before its handler.
 */
describeWithRedis(
  'Regional Redis across requests, through the edge (iad primary, syd replica, 50 ms each way)',
  () => {
    let cluster: LocalCluster;
    let edge: LocalEdge;
    const stores: SharedStore[] = [];
    const servers: http.Server[] = [];
    const regional: Record<string, RegionalHttp> = {};

    beforeAll(async () => {
      cluster = await LocalCluster.start({
        temporary: true,
        regions: ['iad', 'syd'],
        rttMs: { syd: 100 },
        redis: true,
      });
      const ports: Record<string, number> = {};
      for (const region of ['iad', 'syd']) {
        const env = cluster.env(region);
        const store = new SharedStore({ config: loadRedisConfig({}, env), onWarning: () => {} });
        stores.push(store);
        const listener = regionalNode(
          async (req, res) => {
            const url = new URL(req.url ?? '/', 'http://app');
            res.setHeader('content-type', 'application/json');
            if (req.method === 'POST') {
              let body = '';
              for await (const chunk of req) body += chunk;
              const { key, value } = JSON.parse(body) as { key: string; value: string };
              await store.set(key, value);
              res.end(JSON.stringify({ ok: true }));
              return;
            }
            res.end(JSON.stringify({ value: await store.get(url.pathname.slice('/kv/'.length)) }));
          },
          {
            sources: [store],
            primaryRegion: 'iad',
            region,
            mode: 'fly-replay',
            secret: SECRET,
            maxWaitMs: 500,
            lagPolicy: 'replay',
            onWarning: () => {},
          },
        );
        regional[region] = listener.regional;
        const server = http.createServer(listener);
        servers.push(server);
        await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
        ports[region] = (server.address() as AddressInfo).port;
      }
      edge = await LocalEdge.start({
        apps: { iad: { port: ports.iad as number }, syd: { port: ports.syd as number } },
        links: cluster,
      });
    });

    afterAll(async () => {
      await edge?.close();
      for (const server of servers) {
        server.closeAllConnections();
        await new Promise((resolve) => server.close(resolve));
      }
      await Promise.all(Object.values(regional).map((r) => r.close()));
      await Promise.all(stores.map((store) => store.end()));
      await cluster?.stop();
    });

    it('a POST that writes Redis in syd, then a GET in syd carrying the token, sees the value (200 times)', async () => {
      // Five clients, each with its own cookie jar and keys, 40 sequences each.
      await Promise.all(
        Array.from({ length: 5 }, async (_, c) => {
          const client = new Client(edge.url('syd'));
          for (let i = 0; i < 40; i++) {
            const key = `c${c}-k${i % 4}`;
            const post = await client.send('POST', '/kv', { json: { key, value: `v${i}` } });
            expect(post.header('x-regional-region')).toBe('iad');
            expect(post.header('x-regional-token')).toMatch(/^t1\./);
            const get = await client.get(`/kv/${key}`);
            expect(get.header('x-regional-region')).toBe('syd');
            expect(get.json()).toEqual({ value: `v${i}` });
          }
        }),
      );
    });

    it('with Redis replication held back, the genuine token is waited on; a forged one is ignored without waiting', async () => {
      const client = new Client(edge.url('syd'));
      await client.send('POST', '/kv', { json: { key: 'held', value: 'before' } });
      await cluster.redis.waitForSync(10_000);
      await cluster.redis.pauseReplication('syd');
      try {
        const post = await client.send('POST', '/kv', { json: { key: 'held', value: 'after' } });
        const token = post.header('x-regional-token') as string;
        // Genuine: waited on up to the bound, then (lag policy `replay`) answered in iad.
        const genuine = await new Client(edge.url('syd')).get('/kv/held', {
          headers: { 'x-regional-token': token },
        });
        expect(genuine.json()).toEqual({ value: 'after' });
        expect(genuine.header('x-regional-region')).toBe('iad');
        // Forged: the same token with its signature broken is ignored, not waited on: the syd
        // replica answers at once with what it has.
        const forged = `${token.slice(0, -4)}${token.endsWith('AAAA') ? 'BBBB' : 'AAAA'}`;
        const before = regional.syd?.stats().tokensIgnored.forged ?? 0;
        const ignored = await new Client(edge.url('syd')).get('/kv/held', {
          headers: { 'x-regional-token': forged },
        });
        expect(ignored.header('x-regional-region')).toBe('syd');
        expect(ignored.json()).toEqual({ value: 'before' });
        expect(String(ignored.headers['server-timing'])).toMatch(
          /regional-wait;dur=0(\.0+)?[;,]|regional-wait;dur=0$/,
        );
        expect(regional.syd?.stats().tokensIgnored.forged).toBe(before + 1);
      } finally {
        await cluster.redis.resumeReplication('syd');
      }
    });
  },
);
