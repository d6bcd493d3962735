import { existsSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startScript, waitGone } from '../../../test/support/child.js';
import { describeWithRedis } from '../../../test/support/redis.js';
import { LocalCluster } from '../cluster.js';
import { isAlive } from '../postgres/server.js';

// 20 ms each way to syd: quick, and large enough to see.
const RTT_MS = 40;

describeWithRedis('LocalCluster with Redis', () => {
  let cluster: LocalCluster;
  const clients: Redis[] = [];
  const client = (url: string) => {
    const c = new Redis(url, { maxRetriesPerRequest: 1 });
    c.on('error', () => {});
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    cluster = await LocalCluster.start({
      temporary: true,
      regions: ['iad', 'syd'],
      rttMs: { syd: RTT_MS },
      redis: true,
    });
  });

  afterAll(async () => {
    for (const c of clients) c.disconnect();
    await cluster?.stop();
  });

  it('gives each region REDIS_URL (the primary, through the link), REDIS_REPLICA_URL and REDIS_CACHE_URL', async () => {
    const iad = cluster.env('iad');
    const syd = cluster.env('syd');
    expect(iad.REDIS_REPLICA_URL).toBeUndefined();
    expect(Object.keys(syd)).toEqual(
      expect.arrayContaining(['REDIS_URL', 'REDIS_REPLICA_URL', 'REDIS_CACHE_URL']),
    );
    expect(syd.REDIS_URL).not.toBe(iad.REDIS_URL);
    const role = async (url: string) => ((await client(url).role()) as [string])[0];
    expect(await role(syd.REDIS_URL as string)).toBe('master');
    expect(await role(syd.REDIS_REPLICA_URL as string)).toBe('slave');
    expect(await role(syd.REDIS_CACHE_URL as string)).toBe('master');
    expect(syd.REDIS_CACHE_URL).not.toBe(iad.REDIS_CACHE_URL);
    // The cache is not replicated: what one region caches, the other does not see.
    await client(iad.REDIS_CACHE_URL as string).set('only-here', '1');
    expect(await client(syd.REDIS_CACHE_URL as string).get('only-here')).toBeNull();
    expect(cluster.toJSON().regions.syd?.redis?.redisReplicaUrl).toBe(syd.REDIS_REPLICA_URL);

    // Reaching the primary from syd pays the link's round trip.
    const remote = client(syd.REDIS_URL as string);
    await remote.ping();
    const started = performance.now();
    await remote.ping();
    expect(performance.now() - started).toBeGreaterThanOrEqual(RTT_MS - 2);
  });

  it('replicates to the syd replica through the link, no sooner than the one-way delay', async () => {
    const primary = client(cluster.redis.serverUrl('iad', 'primary'));
    const replica = client(cluster.redis.serverUrl('syd', 'replica'));
    for (let i = 0; i < 3; i++) {
      await primary.set('replicated', String(i));
      const started = performance.now();
      while ((await replica.get('replicated')) !== String(i)) await sleep(0);
      expect(performance.now() - started).toBeGreaterThanOrEqual(RTT_MS / 2 - 2);
    }
  });

  it('pauseReplication holds the replica behind; resumeReplication delivers what was held', async () => {
    const primary = client(cluster.redis.serverUrl('iad', 'primary'));
    const replica = client(cluster.redis.serverUrl('syd', 'replica'));
    await cluster.redis.pauseReplication('syd');
    try {
      await primary.set('held', 'new');
      await sleep(RTT_MS * 3);
      expect(await replica.get('held')).toBeNull();
    } finally {
      await cluster.redis.resumeReplication('syd');
    }
    await cluster.redis.waitForSync(10_000);
    expect(await replica.get('held')).toBe('new');
  });

  it('a replica stopped and started again resynchronises; a killed one too', async () => {
    const primary = client(cluster.redis.serverUrl('iad', 'primary'));
    const server = cluster.redis.server('syd', 'replica');
    await server.stop();
    expect(server.running).toBe(false);
    await primary.set('while-down', 'x');
    await server.start();
    await cluster.redis.waitForSync(20_000);
    expect(await client(cluster.redis.serverUrl('syd', 'replica')).get('while-down')).toBe('x');

    const pid = server.pid as number;
    await server.kill();
    expect(isAlive(pid)).toBe(false);
    await server.start();
    await cluster.redis.waitForSync(20_000);
  });

  it('keeps the primary data across a clean restart (append-only file)', async () => {
    const url = cluster.redis.serverUrl('iad', 'primary');
    await client(url).set('durable', 'yes');
    await cluster.redis.server('iad', 'primary').stop();
    await cluster.redis.server('iad', 'primary').start();
    expect(await client(url).get('durable')).toBe('yes');
    await cluster.redis.waitForSync(20_000);
  });

  it('runs the servers with their data in the cluster directory and their configuration in the title', () => {
    const server = cluster.redis.server('syd', 'cache');
    expect(server.dataDir.startsWith(cluster.dir)).toBe(true);
    expect(existsSync(path.join(server.dataDir, 'redis.pid'))).toBe(true);
    if (process.platform === 'linux') {
      const cmdline = readFileSync(`/proc/${server.pid}/cmdline`, 'utf8');
      expect(cmdline).toContain('redis-server');
    }
  });

  it('asking for a server a region does not have says what it has', () => {
    expect(() => cluster.redis.server('iad', 'replica')).toThrow(
      /No Redis replica in region "iad"/,
    );
  });
});

describeWithRedis('LocalCluster with Redis, lifecycle', () => {
  it('stops its Redis servers when the process that started them dies by SIGKILL', async () => {
    const script = `
      import { LocalCluster } from './src/testing/cluster.ts';
      const c = await LocalCluster.start({ temporary: true, regions: ['iad', 'syd'], rttMs: { syd: 10 }, redis: true });
      const pids = [['iad', 'primary'], ['iad', 'cache'], ['syd', 'replica'], ['syd', 'cache']].map(([r, k]) => c.redis.server(r, k).pid);
      console.log(JSON.stringify({ dir: c.dir, pids }));
      setInterval(() => {}, 1000);
    `;
    const { child, line } = await startScript(script);
    const { dir, pids } = JSON.parse(line) as { dir: string; pids: number[] };
    expect(pids).toHaveLength(4);
    expect(pids.every(isAlive)).toBe(true);
    child.kill('SIGKILL');
    expect(await waitGone(pids)).toEqual([]);
    rmSync(dir, { recursive: true, force: true });
  });

  it('a cluster started without redis refuses cluster.redis with how to ask for it', async () => {
    const plain = await LocalCluster.start({ temporary: true, regions: ['iad'] });
    try {
      expect(() => plain.redis).toThrow(/start it with LocalCluster.start\(\{ redis: true \}\)/);
      expect(plain.env('iad').REDIS_URL).toBeUndefined();
    } finally {
      await plain.stop();
    }
  });
});
