import http from 'node:http';
import type net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '../../test/support/http-client.js';
import { regionalNode } from '../http/node/index.js';
import { RegionalPool } from '../pg/pool.js';
import { LocalCluster } from '../testing/cluster.js';

const SECRET = 'e469510d32bf70170f9f515aab060069cedc4684b2b41a80e30c7b419bc96dce';

let cluster: LocalCluster;
let pool: RegionalPool;
let server: http.Server;
let url: string;
let regional: ReturnType<typeof regionalNode>['regional'];

beforeAll(async () => {
  cluster = await LocalCluster.start({
    temporary: true,
    regions: ['iad', 'syd'],
    rttMs: { syd: 100 },
  });
  const syd = cluster.endpoints('syd');
  pool = new RegionalPool({
    primaryRegion: 'iad',
    region: 'syd',
    databaseUrl: syd.databaseUrl,
    replicaUrl: syd.replicaUrl,
    onWarning: () => {},
  });
  const listener = regionalNode((_req, res) => res.end('app'), {
    sources: [pool],
    primaryRegion: 'iad',
    region: 'syd',
    secret: SECRET,
    mode: 'fly-replay',
    onWarning: () => {},
  });
  regional = listener.regional;
  server = http.createServer(listener);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
});

afterAll(async () => {
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
  await regional?.close();
  await pool?.end();
  await cluster?.stop();
});

describe('readiness under a flood', () => {
  it('a hundred concurrent checks all answer ready, and so does the platform check among them', async () => {
    const flood = Array.from({ length: 100 }, () => new Client(url).get('/_regional/health/ready'));
    const platform = new Client(url).get('/_regional/health/ready');
    const answers = await Promise.all([...flood, platform]);
    expect(answers.map((a) => a.status)).toEqual(answers.map(() => 200));
    // The checks ran on connections of their own: the app's pools were never touched.
    expect(pool.primaryPool.totalCount).toBe(0);
    expect(pool.replicaPool?.totalCount).toBe(0);
  });
});
