import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '../../test/support/http-client.js';
import { currentContext, withContext } from '../core/context.js';
import { regionalNode } from '../http/node/index.js';
import type { LocalCluster } from '../testing/cluster.js';
import type { LatencyProxy } from '../testing/link/latency-proxy.js';
import {
  CallRefusedError,
  InstancesUnreachableError,
  ProcedureError,
  ProcedureNotFoundError,
} from './errors.js';
import type { ProcedureCall, Procedures } from './procedures.js';
import { type App, type AppOptions, SECRET, startApp, startCluster } from './test-support/apps.js';

// 20 ms each way between iad (primary) and syd (replica).
const RTT_MS = 40;

let cluster: LocalCluster;
let iad: App;
let syd: App;
/** The syd -> iad path the procedure calls take (a proxy of its own on the link). */
let rpcPort: number;
let rpcProxy: LatencyProxy;
const apps: App[] = [];

/** Runs inside a procedure body, where the test needs to act at that moment. */
let hook: ((call: ProcedureCall) => Promise<void> | void) | null = null;
/** How often each procedure body ran, anywhere. */
const runs = new Map<string, number>();
const ran = (name: string) => runs.get(name) ?? 0;
const count = (name: string) => runs.set(name, ran(name) + 1);

/** The app's procedures: every instance defines the same ones. */
function define(procedures: Procedures) {
  procedures.define('createPost', async (tx, input: { topicId: number; body: string }, call) => {
    count('createPost');
    const token = randomUUID(); // differs on every run: shows which run a result came from
    const { rows } = await tx.query<{ id: number }>(
      'INSERT INTO posts (topic_id, body, token) VALUES ($1, $2, $3) RETURNING id',
      [input.topicId, input.body, token],
    );
    await tx.query('UPDATE topics SET post_count = post_count + 1 WHERE id = $1', [input.topicId]);
    await hook?.(call);
    return { id: rows[0]?.id as number, token, at: new Date(), region: call.region };
  });
  procedures.define(
    'createPostRepeatableRead',
    async (tx, input: { body: string }, call) => {
      count('createPostRepeatableRead');
      const token = randomUUID();
      await tx.query('INSERT INTO posts (topic_id, body, token) VALUES (2, $1, $2)', [
        input.body,
        token,
      ]);
      await hook?.(call);
      return { token };
    },
    { isolationLevel: 'repeatable read' },
  );
  procedures.define('twenty', async (tx, input: { batch: string }) => {
    for (let n = 1; n <= 20; n++)
      await tx.query('INSERT INTO items (batch, n) VALUES ($1, $2)', [input.batch, n]);
    return 20;
  });
  procedures.define('echo', async (_tx, input: unknown) => {
    count('echo');
    return input;
  });
  procedures.define('where', async (tx, _input: null, call) => {
    await tx.query('INSERT INTO visits (region) VALUES ($1)', [call.region]);
    return call.region;
  });
  procedures.define('duplicate', async (tx) => {
    await tx.query("INSERT INTO posts (topic_id, body, token) VALUES (1, 'dup', 'same')");
    await tx.query("INSERT INTO posts (topic_id, body, token) VALUES (1, 'dup', 'same')");
  });
  procedures.define('unsendable', async (tx) => {
    await tx.query("INSERT INTO posts (topic_id, body, token) VALUES (1, 'unsendable', $1)", [
      randomUUID(),
    ]);
    return new (class Handle {})();
  });
}

async function app(region: string, options: AppOptions = {}): Promise<App> {
  const started = await startApp(cluster, region, { define, ...options });
  apps.push(started);
  return started;
}

/** A syd app calling iad through the link, unless told otherwise. */
const sydApp = (
  procedures: AppOptions['procedures'] = {},
  options: Omit<AppOptions, 'procedures'> = {},
) =>
  app('syd', {
    ...options,
    procedures: { primaryUrl: `http://127.0.0.1:${rpcPort}`, ...procedures },
  });

const link = () => cluster.link('syd', 'iad');

async function until(condition: () => boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(5);
  }
}

async function postsWithBody(body: string): Promise<{ id: number; token: string }[]> {
  return (
    await cluster.query<{ id: number; token: string }>(
      'iad',
      'SELECT id, token FROM posts WHERE body = $1',
      [body],
    )
  ).rows;
}

/** A hook that holds the first delivery until another one waits for the call's lock. */
function holdUntilSecondDeliveryWaits(): void {
  hook = async () => {
    hook = null;
    const waiting = async () =>
      (
        await cluster.query(
          'iad',
          "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
        )
      ).rowCount ?? 0;
    const deadline = Date.now() + 10_000;
    while ((await waiting()) === 0 && Date.now() < deadline) await sleep(2);
  };
}

/** Exactly one post with `body` exists, and the caller got the result of the run that wrote it. */
async function expectRanOnce(body: string, outcome: { result: { token: string } }): Promise<void> {
  const rows = await postsWithBody(body);
  expect(rows).toHaveLength(1);
  expect(outcome.result.token).toBe(rows[0]?.token);
}

beforeAll(async () => {
  cluster = await startCluster(
    RTT_MS,
    `CREATE TABLE topics (id int PRIMARY KEY, post_count int NOT NULL DEFAULT 0);
     INSERT INTO topics (id) VALUES (1), (2);
     CREATE TABLE posts (id serial PRIMARY KEY, topic_id int NOT NULL REFERENCES topics, body text NOT NULL, token text UNIQUE NOT NULL);
     CREATE TABLE items (batch text NOT NULL, n int NOT NULL);
     CREATE TABLE visits (region text NOT NULL);`,
  );
  iad = await app('iad', { listen: true });
  rpcPort = await cluster.route({ from: 'syd', to: 'iad', port: iad.port, name: 'rpc' });
  rpcProxy = link().proxies.find((p) => p.name === 'syd->iad rpc') as LatencyProxy;
  syd = await sydApp({}, { pool: { maxWaitMs: 5_000 } });
});

afterAll(async () => {
  hook = null;
  await Promise.all(apps.map((a) => a.close()));
  await cluster?.stop();
});

describe('procedures across regions (20 ms one way)', () => {
  it('a procedure of 20 statements from syd crosses the link once; the same work run directly crosses it 20 or more times', async () => {
    await syd.procedures.call('twenty', { batch: 'warm-up' }); // the keep-alive connection
    await syd.pool.transaction(async (tx) => tx.query('SELECT 1')); // the direct connection

    link().resetStats();
    expect(await syd.procedures.call('twenty', { batch: 'procedure' })).toBe(20);
    expect(link().stats('syd->iad rpc').roundTrips).toBe(1);
    expect(link().stats('syd->iad rpc').connections).toBe(0); // the kept-alive one
    expect(link().stats('syd->iad postgres').roundTrips).toBe(0);

    link().resetStats();
    await syd.pool.transaction(async (tx) => {
      for (let n = 1; n <= 20; n++)
        await tx.query('INSERT INTO items (batch, n) VALUES ($1, $2)', ['direct', n]);
    });
    expect(link().stats('syd->iad postgres').roundTrips).toBeGreaterThanOrEqual(20);
    expect(link().stats('syd->iad rpc').roundTrips).toBe(0);

    const { rows } = await cluster.query<{ batch: string; n: string }>(
      'iad',
      "SELECT batch, count(*) AS n FROM items WHERE batch IN ('procedure', 'direct') GROUP BY batch ORDER BY batch",
    );
    expect(rows).toEqual([
      { batch: 'direct', n: '20' },
      { batch: 'procedure', n: '20' },
    ]);
  });

  it('after a procedure returns, the next read in the caller region sees its writes (waiting for the replica)', async () => {
    await cluster.pauseReplay('syd');
    try {
      await withContext(async () => {
        const post = await syd.procedures.call<{ id: number }>('createPost', {
          topicId: 1,
          body: 'read-your-writes',
        });
        expect(currentContext().position(await syd.pool.sourceKey())).toBeDefined();
        const before = syd.pool.stats();
        // The replica has not replayed the write: the read waits until it has.
        setTimeout(() => void cluster.resumeReplay('syd'), 100);
        const { rows } = await syd.pool.query('SELECT id FROM posts WHERE id = $1', [post.id]);
        expect(rows).toEqual([{ id: post.id }]);
        const after = syd.pool.stats();
        expect(after.replicaReads).toBe(before.replicaReads + 1);
        expect(after.waitTimeouts).toBe(before.waitTimeouts);
      });
    } finally {
      await cluster.resumeReplay('syd');
    }
  });

  it('without the mechanism it fails: with { await: false } the same read is stale', async () => {
    await cluster.pauseReplay('syd');
    try {
      await withContext(async () => {
        const outcome = await syd.procedures.invoke<{ id: number }>(
          'createPost',
          { topicId: 1, body: 'not-awaited' },
          { await: false },
        );
        expect(outcome.lsn).not.toBeNull();
        expect(currentContext().position(await syd.pool.sourceKey())).toBeUndefined();
        const { rows } = await syd.pool.query('SELECT id FROM posts WHERE id = $1', [
          outcome.result.id,
        ]);
        expect(rows).toEqual([]); // stale: the local replica does not have it yet
      });
    } finally {
      await cluster.resumeReplay('syd');
    }
  });

  it('an answer lost after the commit (the link hangs), then retried: one row, and the caller gets the original result', async () => {
    const caller = await sydApp({ timeoutMs: 1_000, attempts: 30 });
    const body = `lost-hang-${randomUUID()}`;
    let cut = false;
    hook = async () => {
      if (cut) return;
      cut = true;
      await link().cut('hang'); // the commit happens; its answer stays in the link
    };
    try {
      const pending = caller.procedures.invoke<{ token: string }>('createPost', {
        topicId: 2,
        body,
      });
      await until(() => caller.procedures.stats().retries >= 1);
      hook = null;
      await link().restore();
      const outcome = await pending;
      await expectRanOnce(body, outcome);
      expect(outcome.replayed).toBe(true);
    } finally {
      hook = null;
      await link().restore();
    }
  });

  it('an answer lost after the commit (connection reset in flight), then retried: one row, the original result', async () => {
    const body = `lost-reset-${randomUUID()}`;
    const before = iad.procedures.stats();
    const runsBefore = ran('createPost');
    hook = () => {
      hook = null;
      setImmediate(() => rpcProxy.resetConnections());
    };
    try {
      const outcome = await syd.procedures.invoke<{ token: string }>('createPost', {
        topicId: 2,
        body,
      });
      await expectRanOnce(body, outcome);
      expect(ran('createPost')).toBe(runsBefore + 1);
      expect(iad.procedures.stats().replayed).toBe(before.replayed + 1);
    } finally {
      hook = null;
    }
  });

  it('without the call id it fails: the same lost answer retried as a new call writes twice', async () => {
    const naive = await sydApp({ attempts: 1 });
    const body = `naive-${randomUUID()}`;
    hook = () => {
      hook = null;
      setImmediate(() => rpcProxy.resetConnections());
    };
    try {
      const first = await naive.procedures
        .call('createPost', { topicId: 2, body })
        .catch((e: unknown) => e);
      expect(first).toBeInstanceOf(InstancesUnreachableError);
      await naive.procedures.call('createPost', { topicId: 2, body }); // a new id: runs again
      expect(await postsWithBody(body)).toHaveLength(2);
    } finally {
      hook = null;
    }
  });

  it('two deliveries of the same call id at once run it once; both get the same result', async () => {
    const body = `twice-${randomUUID()}`;
    const id = randomUUID();
    const runsBefore = ran('createPost');
    holdUntilSecondDeliveryWaits(); // so they really overlap
    const [a, b] = await Promise.all([
      syd.procedures.invoke('createPost', { topicId: 1, body }, { id }),
      syd.procedures.invoke('createPost', { topicId: 1, body }, { id }),
    ]);
    expect(await postsWithBody(body)).toHaveLength(1);
    expect(ran('createPost')).toBe(runsBefore + 1);
    expect(a.result).toEqual(b.result);
    expect([a.replayed, b.replayed].sort()).toEqual([false, true]);
    // A later retry of the same id, too.
    const again = await syd.procedures.invoke('createPost', { topicId: 1, body }, { id });
    expect(again.result).toEqual(a.result);
    expect(ran('createPost')).toBe(runsBefore + 1);
  });

  it('under REPEATABLE READ too (the snapshot predates the lock): a second delivery rolls back and gets the first result', async () => {
    const body = `repeatable-${randomUUID()}`;
    const id = randomUUID();
    const runsBefore = ran('createPostRepeatableRead');
    holdUntilSecondDeliveryWaits();
    const [a, b] = await Promise.all([
      syd.procedures.invoke<{ token: string }>('createPostRepeatableRead', { body }, { id }),
      syd.procedures.invoke<{ token: string }>('createPostRepeatableRead', { body }, { id }),
    ]);
    await expectRanOnce(body, a);
    expect(b.result).toEqual(a.result);
    // The second ran on its old snapshot, and its record insert rolled it back.
    expect(ran('createPostRepeatableRead')).toBe(runsBefore + 2);
  });

  it('values JSON loses survive the trip both ways', async () => {
    const value = {
      at: new Date('2024-02-29T12:00:00.123Z'),
      big: 2n ** 70n,
      map: new Map<unknown, unknown>([
        ['a', 1],
        [2, new Set(['x', 'y'])],
      ]),
      set: new Set([1, 2, 3]),
      missing: undefined,
      list: [undefined, -0, Number.NaN, Number.POSITIVE_INFINITY],
      bytes: Buffer.from([0, 1, 2, 255]),
      nested: { when: [new Date(0)] },
    };
    const echoed = await syd.procedures.call<typeof value>('echo', value);
    expect(echoed).toEqual(value);
    expect(echoed.at).toBeInstanceOf(Date);
    expect(typeof echoed.big).toBe('bigint');
    expect(echoed.map).toBeInstanceOf(Map);
    expect('missing' in echoed).toBe(true);
    expect(Object.is(echoed.list[1], -0)).toBe(true);
    expect(Buffer.isBuffer(echoed.bytes)).toBe(true);
    // What JSON would have made of it, for contrast:
    const json = JSON.parse(JSON.stringify({ ...value, big: 0 }));
    expect(json.at).not.toBeInstanceOf(Date);
    expect(json.map).toEqual({});
  });

  it('a procedure that wrote nothing records nothing: no LSN, no record, the context unchanged', async () => {
    await withContext(async () => {
      const id = randomUUID();
      const outcome = await syd.procedures.invoke('echo', { hello: 'world' }, { id });
      expect(outcome.lsn).toBeNull();
      expect(currentContext().entries()).toEqual([]);
      const { rows } = await cluster.query(
        'iad',
        'SELECT 1 FROM regional_procedure_calls WHERE id = $1',
        [id],
      );
      expect(rows).toEqual([]);
    });
  });

  it('errors come back with name, message and SQLSTATE, without a stack unless debug is on; nothing commits', async () => {
    const error = await syd.procedures.call('duplicate', null).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ProcedureError);
    expect(error).toMatchObject({
      code: '23505',
      remoteName: 'DatabaseError',
      constraint: 'posts_token_key',
      procedure: 'duplicate',
      region: 'iad',
    });
    expect((error as ProcedureError).message).toMatch(
      /duplicate key value violates unique constraint/,
    );
    expect((error as ProcedureError).remoteStack).toBeUndefined();
    expect(await postsWithBody('dup')).toEqual([]);

    const debugging = await app('iad', { listen: true, procedures: { debug: true } });
    const caller = await app('syd', {
      procedures: { primaryUrl: `http://127.0.0.1:${debugging.port}` },
    });
    const debugError = await caller.procedures.call('duplicate', null).catch((e: unknown) => e);
    expect((debugError as ProcedureError).remoteStack).toMatch(/at /);
  });

  it('a result that cannot be sent is an error naming it, and its writes roll back', async () => {
    const before = (await cluster.query('iad', "SELECT 1 FROM posts WHERE body = 'unsendable'"))
      .rowCount;
    const error = await syd.procedures.call('unsendable', null).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'REGIONAL_UNSERIALIZABLE' });
    expect((error as Error).message).toMatch(/the result of procedure "unsendable" cannot be sent/);
    expect(
      (await cluster.query('iad', "SELECT 1 FROM posts WHERE body = 'unsendable'")).rowCount,
    ).toBe(before);
  });

  it('a name nobody registered: ProcedureNotFoundError from the primary region', async () => {
    await expect(syd.procedures.call('nobodyDefinedThis', 1)).rejects.toBeInstanceOf(
      ProcedureNotFoundError,
    );
    await expect(syd.procedures.call('nobodyDefinedThis', 1)).rejects.toThrow(
      /on the instance in iad/,
    );
  });

  it('in the primary region a call runs in-process, records its commit, and crosses nothing', async () => {
    await withContext(async () => {
      link().resetStats();
      const outcome = await iad.procedures.invoke<{ region: string }>('createPost', {
        topicId: 1,
        body: 'local',
      });
      expect(outcome.via).toBe('local');
      expect(outcome.result.region).toBe('iad');
      expect(currentContext().position(await iad.pool.sourceKey())).toBe(outcome.lsn);
      expect(link().stats('syd->iad rpc').roundTrips).toBe(0);
    });
  });

  it('runs in a named region when asked, on an instance there', async () => {
    const sydServer = await sydApp({}, { listen: true });
    const back = await cluster.route({
      from: 'iad',
      to: 'syd',
      port: sydServer.port,
      name: 'back',
    });
    const caller = await app('iad', {
      procedures: {
        regionUrl: (region) => `http://127.0.0.1:${region === 'syd' ? back : iad.port}`,
      },
    });
    const outcome = await caller.procedures.invoke('where', null, { region: 'syd' });
    expect(outcome).toMatchObject({ result: 'syd', via: 'remote', region: 'syd' });
    const { rows } = await cluster.query('iad', "SELECT region FROM visits WHERE region = 'syd'");
    expect(rows).toHaveLength(1);
  });

  it('an instance in the wrong region refuses the call (421) and runs nothing', async () => {
    const sydServer = await sydApp({}, { listen: true });
    const misdirected = await sydApp({ primaryUrl: `http://127.0.0.1:${sydServer.port}` });
    const body = `misdirected-${randomUUID()}`;
    const error = await misdirected.procedures
      .call('createPost', { topicId: 1, body })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CallRefusedError);
    expect(error).toMatchObject({ remoteStatus: 421, code: 'REGIONAL_MISDIRECTED' });
    expect(await postsWithBody(body)).toEqual([]);
  });

  it('old call records are cleaned up after the retention; recent ones stay', async () => {
    const old = await syd.procedures.invoke('createPost', { topicId: 1, body: 'old' });
    const recent = await syd.procedures.invoke('createPost', { topicId: 1, body: 'recent' });
    await cluster.query(
      'iad',
      "UPDATE regional_procedure_calls SET created_at = now() - interval '25 hours' WHERE id = $1",
      [old.id],
    );
    expect(await iad.procedures.cleanup()).toBeGreaterThanOrEqual(1);
    const { rows } = await cluster.query<{ id: string }>(
      'iad',
      'SELECT id FROM regional_procedure_calls WHERE id = ANY($1)',
      [[old.id, recent.id]],
    );
    expect(rows).toEqual([{ id: recent.id }]);
  });
});

describe('procedures in read requests of a replica region', () => {
  it('a POST in readRoutes calls a procedure over RPC, is not replayed, and its token lets the next GET read the write', async () => {
    const listener = regionalNode(
      async (req, res) => {
        if (req.method === 'POST') {
          let text = '';
          for await (const chunk of req) text += chunk;
          const post = await syd.procedures.call<{ id: number }>('createPost', {
            topicId: 1,
            body: (JSON.parse(text) as { body: string }).body,
          });
          res.writeHead(303, { location: `/posts/${post.id}` }).end();
        } else {
          const id = (req.url ?? '').split('/').pop();
          const { rows } = await syd.pool.query('SELECT body FROM posts WHERE id = $1', [id]);
          res.writeHead(rows[0] ? 200 : 404).end(rows[0]?.body ?? '');
        }
      },
      {
        sources: [syd.pool],
        primaryRegion: 'iad',
        region: 'syd',
        secret: SECRET,
        mode: 'proxy',
        // No instance answers there: a replay would fail, so a success ran here.
        primaryUrl: 'http://127.0.0.1:1',
        readRoutes: ['POST /calls'],
        onWarning: () => {},
      },
    );
    const server = http.createServer(listener);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const client = new Client(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
      await cluster.pauseReplay('syd');
      try {
        const post = await client.send('POST', '/calls', { json: { body: 'from a read route' } });
        expect(post.status, post.text).toBe(303);
        expect(post.header('x-regional-token')).toMatch(/^t1\./);
        const readBack = client.get(post.header('location') as string);
        await sleep(200);
        await cluster.resumeReplay('syd');
        expect((await readBack).text).toBe('from a read route');
      } finally {
        await cluster.resumeReplay('syd');
      }
      expect(listener.regional.stats().replays.writeInRead).toBe(0);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await listener.regional.close();
    }
  });
});

describe('when no primary-region instance answers', () => {
  /** An iad instance reachable from syd through its own route, which the test can take down. */
  async function doomedInstance(): Promise<{ app: App; url: string }> {
    const doomed = await app('iad', { listen: true });
    const port = await cluster.route({ from: 'syd', to: 'iad', port: doomed.port, name: 'doomed' });
    return { app: doomed, url: `http://127.0.0.1:${port}` };
  }

  it('with the fallback on, the call runs once over the direct connection', async () => {
    const { app: doomed, url } = await doomedInstance();
    await doomed.procedures.close(); // the instance is down
    const caller = await sydApp({ primaryUrl: url, fallback: 'direct', attempts: 2 });
    const body = `fallback-${randomUUID()}`;
    link().resetStats();
    const outcome = await caller.procedures.invoke('createPost', { topicId: 1, body });
    expect(outcome.via).toBe('fallback');
    expect(outcome.replayed).toBe(false);
    expect(await postsWithBody(body)).toHaveLength(1);
    expect(caller.procedures.stats().fallbacks).toBe(1);
    // Run from syd, each statement crossed the link.
    expect(link().stats('syd->iad postgres').roundTrips).toBeGreaterThanOrEqual(4);
    expect(caller.warnings.some((w) => /REGIONAL_RPC_FALLBACK=direct/.test(w))).toBe(true);
  });

  it('with the fallback off, a clear error and nothing ran', async () => {
    const { app: doomed, url } = await doomedInstance();
    await doomed.procedures.close();
    const caller = await sydApp({ primaryUrl: url, attempts: 2 });
    const body = `no-fallback-${randomUUID()}`;
    const error = await caller.procedures
      .call('createPost', { topicId: 1, body })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InstancesUnreachableError);
    const message = (error as Error).message;
    expect(message).toMatch(/No instance in iad \(primaryUrl=http:\/\/127\.0\.0\.1:\d+\)/);
    expect(message).toMatch(/after 2 attempts/);
    expect(message).toMatch(/set REGIONAL_RPC_FALLBACK=direct/);
    expect((error as InstancesUnreachableError).callId).toMatch(/^[0-9a-f-]{36}$/);
    expect(await postsWithBody(body)).toEqual([]);
  });

  it('an instance that committed and then went away: the fallback answers from the record, still once', async () => {
    const { app: doomed, url } = await doomedInstance();
    const caller = await sydApp({ primaryUrl: url, fallback: 'direct', attempts: 2 });
    const body = `committed-then-gone-${randomUUID()}`;
    const runsBefore = ran('createPost');
    hook = async () => {
      hook = null;
      await doomed.procedures.close(); // drops the connection in flight; the commit still happens
    };
    try {
      const outcome = await caller.procedures.invoke<{ token: string }>('createPost', {
        topicId: 1,
        body,
      });
      await expectRanOnce(body, outcome);
      expect(ran('createPost')).toBe(runsBefore + 1);
      expect(outcome).toMatchObject({ via: 'fallback', replayed: true });
    } finally {
      hook = null;
    }
  });
});

describe('several instances in the primary region', () => {
  it('an answer lost after the commit on one instance: the retry goes to the next one, which answers from the record', async () => {
    const a = await app('iad');
    const b = await app('iad');
    // Instance a commits, then its answer is lost: the connection drops instead.
    const lossy = http.createServer((req, res) => {
      res.end = (() => {
        req.socket.destroy();
        return res;
      }) as typeof res.end;
      a.procedures.middleware(req, res);
    });
    await new Promise<void>((resolve) => lossy.listen(0, '127.0.0.2', resolve));
    const port = (lossy.address() as { port: number }).port;
    const healthy = await b.procedures.listen(port, '127.0.0.3');
    try {
      const caller = await sydApp({
        primaryUrl: `http://iad.app.internal:${port}`,
        instances: { resolveHost: async () => ['127.0.0.2', '127.0.0.3'] },
      });
      const body = `two-instances-${randomUUID()}`;
      const outcome = await caller.procedures.invoke<{ token: string }>('createPost', {
        topicId: 1,
        body,
      });
      await expectRanOnce(body, outcome);
      expect(a.procedures.stats()).toMatchObject({ executed: 1, replayed: 0 });
      expect(b.procedures.stats()).toMatchObject({ executed: 0, replayed: 1 });
      expect(caller.procedures.stats().retries).toBe(0); // the same attempt moved on to b
    } finally {
      lossy.closeAllConnections();
      await new Promise((resolve) => lossy.close(resolve));
      healthy.closeAllConnections();
    }
  });
});
