import { Agent, request } from 'undici';

/** What one region's users saw during the measured window. */
export interface RegionSample {
  /** Time to first byte of each read (ms). */
  reads: number[];
  /** Duration of each write (ms). */
  writes: number[];
  /** A write and the read of it that followed, together (ms). */
  writeThenReads: number[];
  /** How long those reads waited for replication before their handler ran (ms, from Server-Timing). */
  ownWriteWaits: number[];
  /** Reads of a topic right after posting in it, and how many of them missed the new post. */
  ownWriteReads: number;
  staleReads: number;
  /** Requests that failed (status >= 400 or no answer). */
  errors: number;
  /** The first few failures, for the report. */
  errorSamples: string[];
}

export interface WorkloadOptions {
  /** Entry URL per region: where that region's users connect (the edge). */
  entries: Readonly<Record<string, string>>;
  /** Topics readers pick from. */
  topicIds: readonly number[];
  /** Per region, one topic per writer: each writer posts in its own topic and reads it back. */
  writerTopics: Readonly<Record<string, readonly number[]>>;
  readersPerRegion: number;
  /** Pause between a reader's requests (ms): people read, then click. */
  readerThinkMs: number;
  writerThinkMs: number;
  warmupMs: number;
  durationMs: number;
  /** Names users uniquely across runs of the workload. */
  runId: string;
  /** Called with the fraction done, 0 to 1. */
  onProgress?: (fraction: number) => void;
}

interface Answer {
  status: number;
  ttfbMs: number;
  totalMs: number;
  body: string;
  setCookies: string[];
  /** Milliseconds the serving instance spent waiting for replication (its `Server-Timing`). */
  waitedMs: number;
}

/** A person in one region: a cookie jar and keep-alive connections to that region's entry. */
class User {
  private readonly cookies = new Map<string, string>();

  constructor(
    private readonly base: string,
    private readonly agent: Agent,
  ) {}

  async send(method: 'GET' | 'POST', path: string, json?: unknown): Promise<Answer> {
    const headers: Record<string, string> = { accept: 'application/json' };
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
      const eq = (pair as string).indexOf('=');
      if (eq > 0)
        this.cookies.set(
          (pair as string).slice(0, eq).trim(),
          (pair as string).slice(eq + 1).trim(),
        );
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

/** A region's sample before anything was measured. */
export const emptySample = (): RegionSample => ({
  reads: [],
  writes: [],
  writeThenReads: [],
  ownWriteWaits: [],
  ownWriteReads: 0,
  staleReads: 0,
  errors: 0,
  errorSamples: [],
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The demo's users: in every region, readers browsing (the topic list, then three topics), and writers
 * posting in a topic and reading it straight back — the read that shows stale data when a
 * deployment does not keep read-your-writes. Bounded by time; every user signs in first
 * (which rotates a session token: a write).
 */
export async function runWorkload(options: WorkloadOptions): Promise<Record<string, RegionSample>> {
  const regions = Object.keys(options.entries);
  const samples: Record<string, RegionSample> = Object.fromEntries(
    regions.map((r) => [r, emptySample()]),
  );
  const agents = regions.map(
    (region) => [region, new Agent({ keepAliveTimeout: 60_000, connections: 32 })] as const,
  );
  const started = performance.now();
  const measureFrom = started + options.warmupMs;
  const end = measureFrom + options.durationMs;
  const measuring = () => performance.now() >= measureFrom;
  const running = () => performance.now() < end;
  const fail = (sample: RegionSample, what: string) => {
    if (!measuring()) return;
    sample.errors++;
    if (sample.errorSamples.length < 3) sample.errorSamples.push(what.slice(0, 200));
  };

  const progress = setInterval(() => {
    options.onProgress?.(Math.min(1, (performance.now() - started) / (end - started)));
  }, 250);

  const users: Promise<void>[] = [];
  for (const [region, agent] of agents) {
    const sample = samples[region] as RegionSample;
    const base = options.entries[region] as string;
    const signIn = async (user: User, name: string) => {
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
            // The list, then three topics from it, and again: as people browse.
            const path = n % 4 === 0 ? '/api/topics' : `/api/topics/${topic}`;
            try {
              const answer = await user.send('GET', path);
              if (answer.status !== 200)
                fail(sample, `GET ${path}: ${answer.status} ${answer.body}`);
              else if (measuring() && running()) sample.reads.push(answer.ttfbMs);
            } catch (error) {
              fail(sample, `GET ${path}: ${(error as Error).message}`);
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
                const { id } = JSON.parse(post.body) as { id: number };
                const read = await user.send('GET', `/api/topics/${topic}`);
                if (read.status !== 200)
                  fail(sample, `GET /api/topics/${topic}: ${read.status} ${read.body}`);
                else if (measuring() && running()) {
                  const { posts } = JSON.parse(read.body) as { posts: { id: number }[] };
                  sample.writes.push(post.totalMs);
                  sample.writeThenReads.push(post.totalMs + read.totalMs);
                  sample.ownWriteWaits.push(read.waitedMs);
                  sample.ownWriteReads++;
                  if (!posts.some((p) => p.id === id)) sample.staleReads++;
                }
              }
            } catch (error) {
              fail(sample, `write then read: ${(error as Error).message}`);
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
