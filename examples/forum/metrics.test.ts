/**
 * The forum's `/metrics`: Regional's metrics through OpenTelemetry's Prometheus exporter, scraped
 * from the instance in a replica region (syd) of a real cluster and parsed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePrometheusText, samples, total } from '../../src/dashboard/prometheus-text.js';
import { LocalApps } from '../../src/edge/apps.js';
import { LocalEdge } from '../../src/edge/edge.js';
import { migrate } from '../../src/migrate/index.js';
import { LocalCluster } from '../../src/testing/cluster.js';
import { Client } from '../../test/support/http-client.js';
import { seedForum } from './demo/seed.js';

const ROOT = new URL('../..', import.meta.url).pathname;

describe('the forum exports Regional metrics for Prometheus at GET /metrics (syd replica of iad)', () => {
  let cluster: LocalCluster;
  let apps: LocalApps;
  let edge: LocalEdge;
  let topicId: number;

  beforeAll(async () => {
    cluster = await LocalCluster.start({
      temporary: true,
      regions: ['iad', 'syd'],
      rttMs: { syd: 40 },
    });
    await migrate({
      primaryRegion: 'iad',
      region: 'iad',
      databaseUrl: cluster.env('iad').DATABASE_URL,
      dir: `${ROOT}examples/forum/migrations`,
    });
    topicId = (await seedForum(cluster, { reset: true, writersPerRegion: 0 }))
      .topicIds[0] as number;
    apps = await LocalApps.start({
      command: `"${process.execPath}" --conditions=regional-source --import tsx examples/forum/server.ts`,
      cwd: ROOT,
      cluster,
      regionEnv: () => ({ FORUM_DEPLOYMENT: 'regional' }),
    });
    edge = await LocalEdge.start({ apps: apps.edgeApps(), links: cluster });
  });

  afterAll(async () => {
    await edge?.close();
    await apps?.stop();
    await cluster?.stop();
  });

  /** Scrapes the syd instance itself, as Prometheus would (not through the edge). */
  async function scrape(): Promise<{ text: string; contentType: string | null }> {
    const port = apps.list().find((i) => i.region === 'syd')?.port;
    const response = await fetch(`http://127.0.0.1:${port}/metrics`);
    expect(response.status).toBe(200);
    return { text: await response.text(), contentType: response.headers.get('content-type') };
  }

  it('counts reads on the replica, the replayed write and the wait for its token; reports the lag', async () => {
    const user = new Client(edge.url('syd'));
    for (let i = 0; i < 3; i++) expect((await user.get('/api/topics')).status).toBe(200);
    const post = await user.send('POST', `/api/topics/${topicId}/posts`, {
      json: { body: 'counted' },
    });
    expect(post.status, post.text).toBe(201);
    expect(post.header('x-regional-region')).toBe('iad');
    // The read after the write carries its token: syd waits for the replica, then reads there.
    const read = await user.get(`/api/topics/${topicId}`);
    expect(read.header('x-regional-region')).toBe('syd');

    const { text, contentType } = await scrape();
    if (process.env.REGIONAL_PRINT_SCRAPE) console.log(text);
    expect(contentType).toMatch(/^text\/plain/);
    const families = parsePrometheusText(text);
    const syd = { regional_region: 'syd' };

    // The replica lag gauge, in seconds (the exporter adds no unit suffix; `# UNIT` says it).
    expect(families.get('regional_replica_lag')).toMatchObject({ type: 'gauge', unit: 's' });
    const [lag] = samples(families, 'regional_replica_lag', syd);
    expect(lag?.value).toBeGreaterThanOrEqual(0);
    expect(lag?.value).toBeLessThan(60);
    expect(families.get('regional_replica_lag_bytes')).toMatchObject({ unit: 'By' });
    expect(samples(families, 'regional_replica_lag_bytes', syd)[0]?.value).toBeGreaterThanOrEqual(
      0,
    );
    expect(samples(families, 'regional_replica_usable', syd)[0]?.value).toBe(1);

    // Routed statements by route and reason, each labelled with the region and the database.
    expect(families.get('regional_db_queries_total')?.type).toBe('counter');
    const replicaReads = samples(families, 'regional_db_queries_total', {
      ...syd,
      regional_route: 'replica',
      regional_reason: 'read',
      db_system_name: 'postgresql',
    });
    expect(replicaReads).toHaveLength(1);
    expect(replicaReads[0]?.value).toBeGreaterThanOrEqual(4);
    // HTTP: every request seen, the POST replayed to iad (by reason), the token waited on.
    expect(total(families, 'regional_http_requests_total', syd)).toBeGreaterThanOrEqual(5);
    const replays = samples(families, 'regional_http_replays_total', syd);
    expect(replays.map((s) => s.labels.regional_replay_reason)).toContain('write');
    expect(total(families, 'regional_http_replays_total', syd)).toBeGreaterThanOrEqual(1);
    expect(families.get('regional_http_token_waits_total')?.type).toBe('counter');
    expect(families.get('regional_http_token_wait_timeouts_total')?.type).toBe('counter');
    expect(total(families, 'regional_http_token_wait_timeouts_total', syd)).toBe(0);
  });

  it('a scrape is not one of the app’s requests, and is not replayed', async () => {
    const before = total(
      parsePrometheusText((await scrape()).text),
      'regional_http_requests_total',
    );
    const after = total(parsePrometheusText((await scrape()).text), 'regional_http_requests_total');
    expect(after).toBe(before);
    // Through the edge too, it is answered in the region asked.
    const response = await new Client(edge.url('syd')).get('/metrics');
    expect(response.status).toBe(200);
    expect(response.text).toMatch(/^regional_replica_lag\{regional_region="syd"/m);
  });
});
