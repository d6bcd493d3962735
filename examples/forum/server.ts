/**
 * The forum's server: one process per region. With Regional (the default) it is wired the way
 * the README tells users to: a RegionalPool under Drizzle, Regional's Hono middleware in front,
 * and — where REDIS_URL is set — sessions and counters in the shared Redis store and the topic
 * list in the regional cache.
 *
 * `FORUM_DEPLOYMENT` picks one of the demo's comparison deployments instead:
 * - `single`: a plain pg.Pool on DATABASE_URL (the database only in the primary region);
 * - `replicas`: Drizzle's own `withReplicas` (reads on DATABASE_REPLICA_URL, no consistency).
 *
 * With Regional it also exports Regional's metrics (replica lag, routed queries, waits, replays)
 * for Prometheus at `GET /metrics`, through OpenTelemetry's Prometheus exporter.
 *
 * Environment: PORT (default 8080), HOST (default 127.0.0.1), REGION, and Regional's variables.
 */
import { type HttpBindings, serve } from '@hono/node-server';
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import { metrics } from '@opentelemetry/api';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import { drizzle as plainDrizzle } from 'drizzle-orm/node-postgres';
import { withReplicas } from 'drizzle-orm/pg-core';
import { Hono } from 'hono';
import pg from 'pg';
import { detached } from 'regional';
import { drizzle } from 'regional/drizzle';
import { regional } from 'regional/hono';
import { RegionalPool } from 'regional/pg';
import { RegionalCache, SharedStore } from 'regional/redis';
import { type ForumServices, forumApp } from './app.js';
import { schema } from './schema.js';
import { type ForumDb, ForumStore } from './store.js';

const deployment = process.env.FORUM_DEPLOYMENT ?? 'regional';
const region = process.env.REGION ?? process.env.FLY_REGION ?? 'local';
const port = Number(process.env.PORT ?? 8080);
const host = process.env.HOST ?? '127.0.0.1';
const SESSION_TTL_MS = 30 * 24 * 3600 * 1000;
/** How late the cached topic list may show replies (new topics purge it everywhere at once). */
const TOPIC_LIST_TTL_MS = 5_000;

const warn = (what: string) => (error: unknown) =>
  console.warn(`[forum ${region}] ${what}:`, (error as Error)?.message ?? error);
const closers: (() => Promise<unknown>)[] = [];

function postgresSessions(store: ForumStore): ForumServices['sessions'] {
  return {
    create: async () => {}, // signIn already wrote (and rotated) the session row
    userId: async (token) => (await store.userForSession(token))?.id ?? null,
  };
}

/** Services over Postgres only: what every comparison deployment runs. */
function postgresServices(store: ForumStore): ForumServices {
  return {
    store,
    region,
    sessions: postgresSessions(store),
    recordVisit(path, userId) {
      // Writes nobody reads back at once: in the background, fire-and-forget.
      void detached(() =>
        Promise.all([store.countRequest(path), userId === null ? null : store.touch(userId)]),
      ).catch(warn('visit not recorded'));
    },
    topicList: (load) => load(),
    topicCreated: async () => {},
  };
}

function regionalServices(): { services: ForumServices; sources: (RegionalPool | SharedStore)[] } {
  const pool = new RegionalPool();
  closers.push(() => pool.end());
  const store = new ForumStore(drizzle(pool, { schema }));
  if (!process.env.REDIS_URL) return { services: postgresServices(store), sources: [pool] };

  const shared = new SharedStore();
  const cache = new RegionalCache({ store: shared });
  closers.push(
    () => cache.close(),
    () => shared.end(),
  );
  const day = () => new Date().toISOString().slice(0, 10);
  return {
    sources: [pool, shared],
    services: {
      store,
      region,
      sessions: {
        async create(userId, token) {
          // Signing in rotates the token: the previous one stops working.
          const previous = await shared.call<string | null>('getset', [
            `forum:user-session:${userId}`,
            token,
          ]);
          if (previous) await shared.del(`forum:session:${previous}`);
          await shared.set(`forum:session:${token}`, String(userId), { ttlMs: SESSION_TTL_MS });
        },
        async userId(token) {
          const id = await shared.get(`forum:session:${token}`);
          return id === null ? null : Number(id);
        },
      },
      recordVisit(path, userId) {
        void shared
          .incr(`forum:requests:${day()}:${path}`, { await: false })
          .catch(warn('request not counted'));
        if (userId !== null) {
          void shared
            .call('hset', ['forum:last-seen', String(userId), String(Date.now())], { await: false })
            .catch(warn('last seen not recorded'));
        }
      },
      topicList: (load) =>
        cache.getOrCompute('forum:topics', load, { tags: ['topics'], ttlMs: TOPIC_LIST_TTL_MS }),
      // The cache is per region and not read-your-writes: the purge need not hold up the answer.
      topicCreated: async () => void cache.purgeTags('topics').catch(warn('topic list not purged')),
    },
  };
}

function plainServices(): ForumServices {
  const primary = new pg.Pool({ connectionString: process.env.DATABASE_URL });
  primary.on('error', warn('idle primary connection failed'));
  closers.push(() => primary.end());
  if (deployment === 'single')
    return postgresServices(new ForumStore(plainDrizzle(primary, { schema })));
  const replicaUrl = process.env.DATABASE_REPLICA_URL;
  if (!replicaUrl) return postgresServices(new ForumStore(plainDrizzle(primary, { schema })));
  const replica = new pg.Pool({ connectionString: replicaUrl });
  replica.on('error', warn('idle replica connection failed'));
  closers.push(() => replica.end());
  const db = withReplicas(plainDrizzle(primary, { schema }), [plainDrizzle(replica, { schema })]);
  return postgresServices(new ForumStore(db as unknown as ForumDb));
}

if (!['regional', 'single', 'replicas'].includes(deployment)) {
  console.error(`FORUM_DEPLOYMENT must be "regional", "single" or "replicas", got "${deployment}"`);
  process.exit(2);
}

const root = new Hono<{ Bindings: HttpBindings }>();
if (deployment === 'regional') {
  // The SDK's meter provider is registered before the pool and the middleware are made: they
  // take their instruments from the global provider when they are created.
  const exporter = new PrometheusExporter({ preventServerStart: true });
  const meterProvider = new MeterProvider({ readers: [exporter] });
  metrics.setGlobalMeterProvider(meterProvider);
  closers.push(() => meterProvider.shutdown());
  // Before Regional's middleware: a scrape is not a request of the app's (no token wait, not counted).
  root.get('/metrics', (c) => {
    exporter.getMetricsRequestHandler(c.env.incoming, c.env.outgoing);
    return RESPONSE_ALREADY_SENT;
  });
  const { services, sources } = regionalServices();
  root.use(
    // Replies are not in primaryOnlyPaths. That would spare each a stop at this instance (about
    // 1.3 ms in the demo), but outside iad the instance would then serve only reads and run
    // colder: reads there came out 1.07-1.20x iad's, against 0.98-1.10x (README, "The demo").
    regional({ sources }),
  );
  root.route('/', forumApp(services));
} else {
  root.route('/', forumApp(plainServices()));
}

// Requests being handled, so that stopping lets them finish (a handler outlives its client).
let inFlight = 0;
let onIdle: (() => void) | undefined;
const fetch: typeof root.fetch = async (...args) => {
  inFlight++;
  try {
    return await root.fetch(...args);
  } finally {
    if (--inFlight === 0) onIdle?.();
  }
};

const server = serve({ fetch, port, hostname: host }, () => {
  console.log(`listening on ${port} in ${region} (${deployment})`);
});
// Keep idle connections from the edge (or a platform's proxy) open, so a request does not pay for a new one.
(server as unknown as { keepAliveTimeout: number }).keepAliveTimeout = 65_000;

/** How long stopping waits for requests in flight before closing the pools anyway. */
const DRAIN_MS = 3_000;
/** Time for the writes the last requests left in the background (visits) to go out. */
const BACKGROUND_MS = 250;
const wait = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
let stopping = false;

/**
 * On SIGTERM or SIGINT (a deploy, the demo moving on): take no new connections, let the
 * requests in flight finish, then close the pools and the stores. Closed first, the pools
 * would fail those requests halfway.
 */
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  server.close();
  if (inFlight > 0)
    await Promise.race([new Promise<void>((resolve) => (onIdle = resolve)), wait(DRAIN_MS)]);
  await wait(BACKGROUND_MS);
  await Promise.allSettled(closers.map((close) => close()));
  process.exit(0);
}
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());
