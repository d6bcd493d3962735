import { type Context, Hono } from 'hono';
import { getCookie, setCookie } from 'hono/cookie';
import type { ForumStore } from './store.js';
import { escapeHtml, page } from './views.js';

/** Where sessions live and how the forum's writes-on-reads are done, per deployment. */
export interface ForumServices {
  store: ForumStore;
  /** The region this instance runs in (named on every response). */
  region: string;
  /** Session tokens: in the shared Redis store where there is one, else in Postgres. */
  sessions: {
    create(userId: number, token: string): Promise<void>;
    userId(token: string): Promise<number | null>;
  };
  /**
   * Counts a request and records "last seen": writes on every read, done in the background
   * (nobody reads them back at once), so a read never waits for the primary.
   */
  recordVisit(path: string, userId: number | null): void;
  /**
   * The topic list, cached per region where a cache exists. Replies change its counts and
   * order; it may show those a few seconds late (the cache's lifetime), as forums do.
   */
  topicList(load: () => Promise<unknown>): Promise<unknown>;
  /** Called after a new topic: purges the topic list everywhere, so the topic shows at once. */
  topicCreated(): Promise<void>;
}

const SESSION_COOKIE = 'forum_session';
const positiveId = (text: string | undefined) =>
  text && /^[1-9]\d{0,9}$/.test(text) ? Number(text) : null;

async function jsonBody(c: {
  req: { json(): Promise<unknown> };
}): Promise<Record<string, unknown> | null> {
  try {
    const body = await c.req.json();
    return body && typeof body === 'object' ? (body as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

async function formBody(c: {
  req: { parseBody(): Promise<Record<string, unknown>> };
}): Promise<Record<string, string>> {
  const body = await c.req.parseBody();
  return Object.fromEntries(
    Object.entries(body).map(([k, v]) => [k, typeof v === 'string' ? v : '']),
  );
}

/**
 * The forum: a JSON API and HTML pages. The same app runs in every deployment of the demo;
 * only its services (and, with Regional, the middleware in front) differ.
 *
 * API:
 * - `GET /api/topics` → `{ topics: [{ id, title, postCount }] }`
 * - `GET /api/topics/:id` → `{ id, title, posts: [{ id, body, createdAt }] }`
 * - `POST /api/topics` `{ title }` → 201 `{ id }`
 * - `POST /api/topics/:id/posts` `{ body }` → 201 `{ id }`
 * - `POST /api/session` `{ name }` → `{ userId }` and a session cookie (signing in rotates it)
 */
type Env = {
  Variables: {
    /**
     * The signed-in user's id (`null` if signed out), looked up on the first call: a page that
     * does not need the user sends its own queries without waiting for the session store.
     */
    userId: () => Promise<number | null>;
  };
};

export function forumApp(services: ForumServices): Hono<Env> {
  const app = new Hono<Env>();
  const { store } = services;

  app.use(async (c, next) => {
    const token = getCookie(c, SESSION_COOKIE);
    let lookup: Promise<number | null> | undefined;
    const userId = () => {
      lookup ??= token ? services.sessions.userId(token) : Promise.resolve(null);
      return lookup;
    };
    c.set('userId', userId);
    // Anything but a GET may write and record who wrote: look the user up while the body
    // arrives. A handler that answers before asking (a bad request) leaves it unawaited.
    if (c.req.method !== 'GET') userId().catch(() => {});
    // Set before the handler answers: Hono merges it into the answer as it is made. Set after,
    // it would make Hono rebuild the finished answer as a stream (slower to build and to send).
    c.header('x-forum-region', services.region);
    await next();
    if (c.req.method === 'GET') {
      // Counted per route, not per topic: /api/topics/17 counts as /api/topics/:id.
      const path = c.req.path.replace(/\/\d+/g, '/:id');
      // Once the answer has gone out (Hono's adapter writes it before the next event-loop
      // phase): recording a visit, and the session lookup it needs, never hold up a page.
      setImmediate(() =>
        userId().then(
          (id) => services.recordVisit(path, id),
          (error: Error) =>
            console.warn(`[forum ${services.region}] session lookup failed:`, error.message),
        ),
      );
    }
  });

  app.onError((error, c) => {
    console.error(`[forum ${services.region}]`, error);
    // Regional's own errors (e.g. a write that can no longer be replayed) say what happened.
    const code = (error as { code?: string }).code;
    return c.json({ error: { code: code ?? 'INTERNAL', message: error.message } }, 500);
  });

  const signIn = async (name: string, c: Context<Env>) => {
    const { userId, token } = await store.signIn(name);
    await services.sessions.create(userId, token);
    setCookie(c, SESSION_COOKIE, token, { httpOnly: true, sameSite: 'Lax', path: '/' });
    return userId;
  };

  // JSON API
  app.get('/api/topics', async (c) =>
    c.json({ topics: await services.topicList(() => store.listTopics()) }),
  );

  app.get('/api/topics/:id', async (c) => {
    const id = positiveId(c.req.param('id'));
    const topic = id === null ? null : await store.topic(id);
    return topic
      ? c.json(topic)
      : c.json({ error: { code: 'NOT_FOUND', message: 'no such topic' } }, 404);
  });

  app.post('/api/topics', async (c) => {
    const title = (await jsonBody(c))?.title;
    if (typeof title !== 'string' || title.trim() === '' || title.length > 200) {
      return c.json(
        { error: { code: 'BAD_REQUEST', message: 'title: a string of 1 to 200 characters' } },
        400,
      );
    }
    const id = await store.createTopic(title.trim(), await c.get('userId')());
    await services.topicCreated();
    return c.json({ id }, 201);
  });

  app.post('/api/topics/:id/posts', async (c) => {
    const topicId = positiveId(c.req.param('id'));
    const body = (await jsonBody(c))?.body;
    if (typeof body !== 'string' || body.trim() === '' || body.length > 10_000) {
      return c.json(
        { error: { code: 'BAD_REQUEST', message: 'body: a string of 1 to 10000 characters' } },
        400,
      );
    }
    const id =
      topicId === null ? null : await store.createPost(topicId, body, await c.get('userId')());
    if (id === null) return c.json({ error: { code: 'NOT_FOUND', message: 'no such topic' } }, 404);
    return c.json({ id }, 201);
  });

  app.post('/api/session', async (c) => {
    const name = (await jsonBody(c))?.name;
    if (typeof name !== 'string' || !/^[\w.-]{1,40}$/.test(name)) {
      return c.json(
        {
          error: { code: 'BAD_REQUEST', message: 'name: 1 to 40 letters, digits, "_", "." or "-"' },
        },
        400,
      );
    }
    return c.json({ userId: await signIn(name, c) });
  });

  // HTML pages, for a person to click through.
  app.get('/', async (c) => {
    const [topics, userId] = await Promise.all([
      services.topicList(() => store.listTopics()) as ReturnType<ForumStore['listTopics']>,
      c.get('userId')(),
    ]);
    const items = topics
      .map(
        (t) =>
          `<li><a href="/t/${t.id}">${escapeHtml(t.title)}</a> <small>${t.postCount} posts</small></li>`,
      )
      .join('');
    return c.html(
      page(
        services.region,
        'Topics',
        `${userId ? '' : '<form method="post" action="/session"><input name="name" placeholder="your name" required> <button>Sign in</button></form>'}
        <form method="post" action="/topics"><input name="title" placeholder="New topic" required maxlength="200"> <button>Create</button></form>
        <ul>${items}</ul>`,
      ),
    );
  });

  app.get('/t/:id', async (c) => {
    const id = positiveId(c.req.param('id'));
    const topic = id === null ? null : await store.topic(id);
    if (!topic) return c.html(page(services.region, 'Not found', '<p>No such topic.</p>'), 404);
    const posts = topic.posts
      .map((p) => `<li><p>${escapeHtml(p.body)}</p><small>${p.createdAt}</small></li>`)
      .join('');
    return c.html(
      page(
        services.region,
        escapeHtml(topic.title),
        `<p><a href="/">All topics</a></p>
        <form method="post" action="/t/${topic.id}/posts"><textarea name="body" required maxlength="10000"></textarea> <button>Reply</button></form>
        <ol reversed>${posts}</ol>`,
      ),
    );
  });

  app.post('/topics', async (c) => {
    const { title = '' } = await formBody(c);
    if (title.trim() === '') return c.redirect('/', 303);
    const id = await store.createTopic(title.trim().slice(0, 200), await c.get('userId')());
    await services.topicCreated();
    return c.redirect(`/t/${id}`, 303);
  });

  app.post('/t/:id/posts', async (c) => {
    const topicId = positiveId(c.req.param('id'));
    const { body = '' } = await formBody(c);
    if (topicId !== null && body.trim() !== '') {
      await store.createPost(topicId, body.slice(0, 10_000), await c.get('userId')());
    }
    return c.redirect(`/t/${topicId ?? ''}`, 303);
  });

  app.post('/session', async (c) => {
    const { name = '' } = await formBody(c);
    if (/^[\w.-]{1,40}$/.test(name)) await signIn(name, c);
    return c.redirect('/', 303);
  });

  return app;
}
