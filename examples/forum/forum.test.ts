import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { LocalApps } from '../../src/edge/apps.js';
import { LocalEdge } from '../../src/edge/edge.js';
import { migrate } from '../../src/migrate/index.js';
import { LocalCluster } from '../../src/testing/cluster.js';
import { redisUnavailableReason } from '../../src/testing/redis/binary.js';
import { Client } from '../../test/support/http-client.js';
import { seedForum } from './demo/seed.js';

const REGIONS = ['iad', 'cdg', 'syd'] as const;
const ROOT = new URL('../..', import.meta.url).pathname;
const withRedis = redisUnavailableReason() === null;

/** The forum's API, deployed with Regional in three regions behind the edge. */
describe(`the forum in iad, cdg and syd (Regional${withRedis ? ', with Regional Redis' : ', Postgres only: redis-server missing'})`, () => {
  let cluster: LocalCluster;
  let apps: LocalApps;
  let edge: LocalEdge;
  let seededTopic: number;

  beforeAll(async () => {
    cluster = await LocalCluster.start({
      temporary: true,
      regions: [...REGIONS],
      rttMs: { cdg: 40, syd: 80, 'cdg-syd': 100 },
      redis: withRedis,
    });
    const env = cluster.env('iad');
    await migrate({
      primaryRegion: 'iad',
      region: 'iad',
      databaseUrl: env.DATABASE_URL,
      dir: `${ROOT}examples/forum/migrations`,
    });
    seededTopic = (await seedForum(cluster, { reset: true, writersPerRegion: 0 }))
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

  describe.each(REGIONS)('in %s', (region) => {
    const client = () => new Client(edge.url(region));

    it('GET /api/topics lists topics as { topics: [{ id, title, postCount }] }, served in the region', async () => {
      const response = await client().get('/api/topics');
      expect(response.status).toBe(200);
      const { topics } = response.json<{
        topics: { id: number; title: string; postCount: number }[];
      }>();
      expect(topics.length).toBeGreaterThanOrEqual(50);
      expect(Object.keys(topics[0] as object).sort()).toEqual(['id', 'postCount', 'title']);
      expect(response.header('x-regional-region')).toBe(region);
      expect(response.header('x-forum-region')).toBe(region);
    });

    it('GET /api/topics/:id shows a topic as { id, title, posts: [{ id, body, createdAt }] }; 404 for none', async () => {
      const response = await client().get(`/api/topics/${seededTopic}`);
      expect(response.status).toBe(200);
      const topic = response.json<{
        id: number;
        title: string;
        posts: { id: number; body: string; createdAt: string }[];
      }>();
      expect(topic.id).toBe(seededTopic);
      expect(topic.posts).toHaveLength(10);
      expect(Object.keys(topic.posts[0] as object).sort()).toEqual(['body', 'createdAt', 'id']);
      expect(new Date((topic.posts[0] as { createdAt: string }).createdAt).toISOString()).toBe(
        (topic.posts[0] as { createdAt: string }).createdAt,
      );
      const missing = await client().get('/api/topics/999999');
      expect(missing.status).toBe(404);
      expect(missing.header('x-forum-region')).toBe(region);
      expect((await client().get('/api/topics/nonsense')).status).toBe(404);
    });

    it('POST /api/topics and POST /api/topics/:id/posts answer 201 { id }, run in iad, and are read back here at once', async () => {
      const user = client();
      expect(
        (await user.send('POST', '/api/session', { json: { name: `tester-${region}` } })).status,
      ).toBe(200);
      const created = await user.send('POST', '/api/topics', {
        json: { title: `Made in ${region}` },
      });
      expect(created.status, created.text).toBe(201);
      expect(created.header('x-regional-region')).toBe('iad');
      expect(created.header('x-forum-region')).toBe('iad');
      const { id } = created.json<{ id: number }>();
      const replays = edge.stats().replays;
      const empty = await user.get(`/api/topics/${id}`);
      expect(empty.json()).toEqual({ id, title: `Made in ${region}`, posts: [] });
      for (let i = 0; i < 5; i++) {
        const post = await user.send('POST', `/api/topics/${id}/posts`, {
          json: { body: `reply ${i} from ${region}` },
        });
        expect(post.status, post.text).toBe(201);
        const read = await user.get(`/api/topics/${id}`);
        expect(read.header('x-regional-region')).toBe(region);
        const topic = read.json<{ title: string; posts: { id: number; body: string }[] }>();
        expect(topic.title).toBe(`Made in ${region}`);
        expect(topic.posts[0]).toMatchObject({
          id: post.json<{ id: number }>().id,
          body: `reply ${i} from ${region}`,
        });
        // Newest first, every post once.
        const ids = topic.posts.map((p) => p.id);
        expect(ids).toHaveLength(i + 1);
        expect(ids).toEqual([...ids].sort((a, b) => b - a));
      }
      // Outside iad each reply stops at this region's instance, which answers fly-replay, and
      // the edge replays it in iad (no primaryOnlyPaths: see server.ts). The tests of each
      // region run one after another.
      expect(edge.stats().replays - replays).toBe(region === 'iad' ? 0 : 5);
    });

    it('shows a new topic at the top of the list here soon after: the cached list is purged everywhere', async () => {
      const user = client();
      const listed = () =>
        user.get('/api/topics').then((r) => r.json<{ topics: { id: number }[] }>().topics);
      await listed(); // cached here now, for 5 s
      const created = await user.send('POST', '/api/topics', {
        json: { title: `New in ${region}` },
      });
      const { id } = created.json<{ id: number }>();
      // The purge is not read-your-writes: it arrives with replication, well before the 5 s are up.
      await vi.waitFor(async () => expect((await listed())[0]?.id).toBe(id), {
        timeout: 2_000,
        interval: 20,
      });
    });

    it('refuses bad input with 400 and a message naming the field', async () => {
      const user = client();
      const noTitle = await user.send('POST', '/api/topics', { json: { title: '' } });
      expect(noTitle.status).toBe(400);
      expect(noTitle.text).toMatch(/title/);
      const noBody = await user.send('POST', `/api/topics/${seededTopic}/posts`, { json: {} });
      expect(noBody.status).toBe(400);
      expect(noBody.text).toMatch(/body/);
      expect(
        (await user.send('POST', `/api/topics/999999/posts`, { json: { body: 'x' } })).status,
      ).toBe(404);
      expect(
        (await user.send('POST', '/api/session', { json: { name: 'no spaces allowed' } })).status,
      ).toBe(400);
    });

    it('signing in rotates the session token: the previous one no longer identifies the user', async () => {
      const first = client();
      await first.send('POST', '/api/session', { json: { name: `rotator-${region}` } });
      const firstToken = first.cookies.get('forum_session');
      const second = client();
      await second.send('POST', '/api/session', { json: { name: `rotator-${region}` } });
      expect(second.cookies.get('forum_session')).not.toBe(firstToken);
      // Only the new session may create a topic under that user; the old one is anonymous now.
      const fromOld = await first.send('POST', '/api/topics', {
        json: { title: `old session ${region}` },
      });
      const fromNew = await second.send('POST', '/api/topics', {
        json: { title: `new session ${region}` },
      });
      const owners = await cluster.query<{ title: string; name: string | null }>(
        'iad',
        'SELECT t.title, u.name FROM topics t LEFT JOIN users u ON u.id = t.user_id WHERE t.id = ANY($1) ORDER BY t.id',
        [[fromOld.json<{ id: number }>().id, fromNew.json<{ id: number }>().id]],
      );
      expect(owners.rows).toEqual([
        { title: `old session ${region}`, name: null },
        { title: `new session ${region}`, name: `rotator-${region}` },
      ]);
    });

    it('serves HTML pages a person can click through', async () => {
      const home = await client().get('/');
      expect(home.status).toBe(200);
      expect(home.text).toMatch(/<h1>Topics<\/h1>/);
      expect(home.text).toContain(`served from <strong>${region}</strong>`);
      const topic = await client().get(`/t/${seededTopic}`);
      expect(topic.text).toMatch(/<form method="post" action="\/t\/\d+\/posts">/);
    });
  });

  it('GETs record visits and "last seen" in the background without being replayed', async () => {
    const day = new Date().toISOString().slice(0, 10);
    const redis = async <T>(use: (client: Redis) => Promise<T>): Promise<T> => {
      const client = new Redis(cluster.env('iad').REDIS_URL as string, { lazyConnect: true });
      try {
        await client.connect();
        return await use(client);
      } finally {
        client.disconnect();
      }
    };
    const counted = async (): Promise<number> => {
      if (!withRedis) {
        const { rows } = await cluster.query<{ n: string }>(
          'iad',
          "SELECT coalesce(sum(count), 0) AS n FROM request_counts WHERE path = '/api/topics'",
        );
        return Number(rows[0]?.n);
      }
      return redis(async (r) => Number((await r.get(`forum:requests:${day}:/api/topics`)) ?? 0));
    };
    /** When the user was last seen (ms since the epoch), or null if never. */
    const lastSeen = async (userId: number): Promise<number | null> => {
      if (!withRedis) {
        const { rows } = await cluster.query<{ at: Date | null }>(
          'iad',
          'SELECT last_seen_at AS at FROM users WHERE id = $1',
          [userId],
        );
        return rows[0]?.at ? rows[0].at.getTime() : null;
      }
      return redis(async (r) => {
        const at = await r.hget('forum:last-seen', String(userId));
        return at === null ? null : Number(at);
      });
    };
    const before = await counted();
    const user = new Client(edge.url('syd'));
    const name = `visitor-${Date.now()}`;
    const signedIn = await user.send('POST', '/api/session', { json: { name } });
    const { userId } = signedIn.json<{ userId: number }>();
    const seenBefore = (await lastSeen(userId)) ?? 0;
    await new Promise((r) => setTimeout(r, 20)); // so that a new "last seen" is later
    for (let i = 0; i < 3; i++) {
      const read = await user.get('/api/topics');
      expect(read.status).toBe(200);
      expect(read.header('x-regional-region')).toBe('syd');
    }
    const deadline = Date.now() + 10_000;
    const done = async () =>
      (await counted()) >= before + 3 && ((await lastSeen(userId)) ?? 0) > seenBefore;
    while (!(await done()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(await counted()).toBeGreaterThanOrEqual(before + 3);
    expect((await lastSeen(userId)) ?? 0).toBeGreaterThan(seenBefore);
  });
});
