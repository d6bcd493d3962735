import { Agent, request } from 'undici';

/** A person in one region: a cookie jar and keep-alive connections to that region's entry. */
class User {
  base;
  agent;
  cookies = new Map();
  constructor(base, agent) {
    this.base = base;
    this.agent = agent;
  }
  async send(method, path, json) {
    const headers = { accept: 'application/json' };
    if (this.cookies.size > 0)
      headers.cookie = [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
    if (json !== undefined) headers['content-type'] = 'application/json';
    const started = performance.now();
    const response = await request(`${this.base}${path}`, {
      method,
      headers,
      body: json === undefined ? undefined : JSON.stringify(json),
      dispatcher: this.agent,
      headersTimeout: 30_000,
      bodyTimeout: 30_000,
    });
    const ttfbMs = performance.now() - started;
    const body = await response.body.text();
    const raw = response.headers['set-cookie'];
    const setCookies = raw === undefined ? [] : Array.isArray(raw) ? raw : [raw];
    for (const cookie of setCookies) {
      const [pair] = cookie.split(';');
      const eq = pair.indexOf('=');
      if (eq > 0) this.cookies.set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim());
    }
    const timing = String(response.headers['server-timing'] ?? '');
    const waitedMs = Number(/regional-wait;dur=([\d.]+)/.exec(timing)?.[1] ?? 0);
    return {
      waitedMs,
      status: response.statusCode,
      ttfbMs,
      totalMs: performance.now() - started,
      body,
      setCookies,
    };
  }
}
const emptySample = () => ({
  reads: [],
  writes: [],
  writeThenReads: [],
  ownWriteWaits: [],
  ownWriteReads: 0,
  staleReads: 0,
  errors: 0,
  errorSamples: [],
});
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
/**
 * The demo's users: in every region, readers browsing the topic list and topics, and writers
 * posting in a topic and reading it straight back — the read that shows stale data when a
 * deployment does not keep read-your-writes. Bounded by time; every user signs in first
 * (which rotates a session token: a write).
 */
export async function runWorkload(options) {
  const regions = Object.keys(options.entries);
  const samples = Object.fromEntries(regions.map((r) => [r, emptySample()]));
  const agents = regions.map((region) => [
    region,
    new Agent({ keepAliveTimeout: 60_000, connections: 32 }),
  ]);
  const started = performance.now();
  const measureFrom = started + options.warmupMs;
  const end = measureFrom + options.durationMs;
  const measuring = () => performance.now() >= measureFrom;
  const running = () => performance.now() < end;
  const fail = (sample, what) => {
    if (!measuring()) return;
    sample.errors++;
    if (sample.errorSamples.length < 3) sample.errorSamples.push(what.slice(0, 200));
  };
  const progress = setInterval(() => {
    options.onProgress?.(Math.min(1, (performance.now() - started) / (end - started)));
  }, 250);
  const users = [];
  for (const [region, agent] of agents) {
    const sample = samples[region];
    const base = options.entries[region];
    const signIn = async (user, name) => {
      const answer = await user.send('POST', '/api/session', { name });
      if (answer.status !== 200)
        throw new Error(`sign-in in ${region} failed: ${answer.status} ${answer.body}`);
    };
    for (let i = 0; i < options.readersPerRegion; i++) {
      users.push(
        (async () => {
          const user = new User(base, agent);
          await signIn(user, `${options.runId}-${region}-r${i}`);
          // Readers start spread out, as people do.
          await sleep(Math.random() * options.readerThinkMs);
          for (let n = 0; running(); n++) {
            const topic = options.topicIds[Math.floor(Math.random() * options.topicIds.length)];
            const path = n % 2 === 0 ? '/api/topics' : `/api/topics/${topic}`;
            try {
              const answer = await user.send('GET', path);
              if (answer.status !== 200)
                fail(sample, `GET ${path}: ${answer.status} ${answer.body}`);
              else if (measuring() && running()) sample.reads.push(answer.ttfbMs);
            } catch (error) {
              fail(sample, `GET ${path}: ${error.message}`);
            }
            await sleep(options.readerThinkMs);
          }
        })(),
      );
    }
    for (const [i, topic] of (options.writerTopics[region] ?? []).entries()) {
      users.push(
        (async () => {
          const user = new User(base, agent);
          await signIn(user, `${options.runId}-${region}-w${i}`);
          await sleep(Math.random() * options.writerThinkMs);
          for (let n = 0; running(); n++) {
            try {
              const post = await user.send('POST', `/api/topics/${topic}/posts`, {
                body: `${options.runId} ${region} writer ${i} post ${n}`,
              });
              if (post.status !== 201) {
                fail(sample, `POST /api/topics/${topic}/posts: ${post.status} ${post.body}`);
              } else {
                const { id } = JSON.parse(post.body);
                const read = await user.send('GET', `/api/topics/${topic}`);
                if (read.status !== 200)
                  fail(sample, `GET /api/topics/${topic}: ${read.status} ${read.body}`);
                else if (measuring() && running()) {
                  const { posts } = JSON.parse(read.body);
                  sample.writes.push(post.totalMs);
                  sample.writeThenReads.push(post.totalMs + read.totalMs);
                  sample.ownWriteWaits.push(read.waitedMs);
                  sample.ownWriteReads++;
                  if (!posts.some((p) => p.id === id)) sample.staleReads++;
                }
              }
            } catch (error) {
              fail(sample, `write then read: ${error.message}`);
            }
            await sleep(options.writerThinkMs);
          }
        })(),
      );
    }
  }
  try {
    await Promise.all(users);
  } finally {
    clearInterval(progress);
    options.onProgress?.(1);
    await Promise.all(agents.map(([, agent]) => agent.close()));
  }
  return samples;
}
//# sourceMappingURL=workload.js.map
