import { describe, expect, it } from 'vitest';
import { ConfigError } from '../core/errors.js';
import { Keyring } from '../core/signing.js';
import { freePort } from '../testing/ports.js';
import { handleFetch } from './fetch.js';
import { RegionalHttp } from './regional-http.js';
import type { RequestView } from './request-state.js';
import { decodeToken, encodeToken } from './token.js';

const SECRET = 'e469510d32bf70170f9f515aab060069cedc4684b2b41a80e30c7b419bc96dce';
const keyring = new Keyring(SECRET);

function view(headers: Record<string, string> = {}, method = 'GET', path = '/'): RequestView {
  return { method, path, header: (name) => headers[name], https: false };
}

const inIad = (options = {}) =>
  new RegionalHttp({ primaryRegion: 'iad', region: 'iad', secret: SECRET, env: {}, ...options });

const tokenOf = (headers: [string, string][]) =>
  headers.find(([n]) => n === 'x-regional-token')?.[1];

describe('RegionalHttp settings', () => {
  it.each([
    [
      { PRIMARY_REGION: 'iad', REGION: 'syd' },
      /REGIONAL_SECRET: is not set, but PRIMARY_REGION is/,
    ],
    [{ PRIMARY_REGION: 'iad' }, /REGION: is not set \(nor FLY_REGION\)/],
    [
      { PRIMARY_REGION: 'iad', REGION: 'syd', REGIONAL_SECRET: SECRET },
      /REGIONAL_PRIMARY_URL: is not set/,
    ],
    [
      {
        PRIMARY_REGION: 'iad',
        REGION: 'syd',
        REGIONAL_SECRET: SECRET,
        REGIONAL_REPLAY_MODE: 'redirect',
      },
      /REGIONAL_REPLAY_MODE: must be "fly-replay" or "proxy", got "redirect"/,
    ],
    [
      {
        PRIMARY_REGION: 'iad',
        REGION: 'iad',
        REGIONAL_SECRET: SECRET,
        REGIONAL_LAG_POLICY: 'wait',
      },
      /REGIONAL_LAG_POLICY: must be "replay" or "primary" or "error"/,
    ],
    [
      {
        PRIMARY_REGION: 'iad',
        REGION: 'iad',
        REGIONAL_SECRET: SECRET,
        REGIONAL_MAX_WAIT_MS: 'soon',
      },
      /REGIONAL_MAX_WAIT_MS: must be a number >= 0, got "soon"/,
    ],
    [
      { PRIMARY_REGION: 'iad', REGION: 'iad', REGIONAL_SECRET: 'short' },
      /REGIONAL_SECRET: is 5 characters/,
    ],
    [{ PRIMARY_REGION: 'i a d', REGION: 'iad' }, /PRIMARY_REGION: "i a d" is not a region name/],
  ])('%j is refused with a message naming the variable', (env, message) => {
    expect(() => new RegionalHttp({ env })).toThrow(ConfigError);
    expect(() => new RegionalHttp({ env })).toThrow(message);
  });

  it('reads the environment: fly-replay on Fly.io, proxy elsewhere', () => {
    const base = { PRIMARY_REGION: 'iad', REGIONAL_SECRET: SECRET };
    const quiet = { onWarning: () => {} };
    expect(
      new RegionalHttp({ ...quiet, env: { ...base, FLY_REGION: 'syd', FLY_APP_NAME: 'app' } })
        .settings,
    ).toMatchObject({ mode: 'fly-replay', region: 'syd', isPrimaryRegion: false, instances: null });
    const proxy = new RegionalHttp({
      ...quiet,
      env: { ...base, REGION: 'syd', REGIONAL_PRIMARY_URL: 'http://iad.app.internal:8080' },
    });
    expect(proxy.settings.mode).toBe('proxy');
    expect(proxy.settings.instances?.url.host).toBe('iad.app.internal:8080');
    expect(new RegionalHttp({ env: {} }).settings).toMatchObject({
      primaryRegion: null,
      isPrimaryRegion: true,
    });
  });

  it('refuses sources that are not replicated sources, and bad options, naming them', () => {
    expect(() => inIad({ sources: [{}] })).toThrow(/sources\[0\]: is not a replicated source/);
    expect(() => inIad({ readRoutes: ['search'] })).toThrow(/readRoutes: "search" is not a route/);
    expect(() => inIad({ secret: 'short' })).toThrow(/secret: is 5 characters/);
  });
});

describe('tokens across requests', () => {
  it('only move forward: positions merge by the highest per source, unknown sources are carried on', async () => {
    const http = inIad();
    const cookie = encodeToken(
      keyring,
      [
        ['pg:1', 500n],
        ['redis:abc', 7n],
      ],
      600,
    );
    const header = encodeToken(keyring, [['pg:1', 900n]], 600);
    const state = await http.begin(
      view({ cookie: `regional_token=${cookie}`, 'x-regional-token': header }),
    );
    expect(state.context.position('pg:1')).toBe(900n);
    expect(state.context.position('redis:abc')).toBe(7n);
    // A write that committed below what the client already saw: nothing moves, no token.
    state.context.observe('pg:1', 800n);
    expect(tokenOf(http.responseHeaders(state))).toBeUndefined();
    state.context.observe('pg:1', 1000n);
    const issued = tokenOf(http.responseHeaders(state)) as string;
    expect(decodeToken(keyring, issued)).toEqual({
      positions: [
        ['pg:1', 1000n],
        ['redis:abc', 7n],
      ],
    });
    expect(http.stats().tokensIssued).toBe(1);
  });

  it('on read responses only when asked (tokensOnReads), with what the client already holds', async () => {
    const held = encodeToken(keyring, [['pg:1', 42n]], 600);
    for (const tokensOnReads of [false, true]) {
      const http = inIad({ tokensOnReads });
      const state = await http.begin(view({ 'x-regional-token': held }));
      const token = tokenOf(http.responseHeaders(state));
      if (!tokensOnReads) expect(token).toBeUndefined();
      else expect(decodeToken(keyring, token as string)).toEqual({ positions: [['pg:1', 42n]] });
    }
  });

  it('a bad token is counted by why and adds nothing', async () => {
    const http = inIad();
    const state = await http.begin(view({ 'x-regional-token': 't1.nope' }));
    expect(state.context.entries()).toEqual([]);
    expect(http.stats().tokensIgnored).toEqual({
      malformed: 1,
      forged: 0,
      unknownKey: 0,
      expired: 0,
    });
  });

  it('the cookie is Secure when the request came over https through a proxy', async () => {
    const http = inIad();
    const state = await http.begin({ ...view({ 'x-forwarded-proto': 'https' }), https: true });
    state.context.observe('pg:1', 1n);
    const cookie = http.responseHeaders(state).find(([n]) => n === 'set-cookie')?.[1];
    expect(cookie).toMatch(
      /^regional_token=t1\.[^;]+; Path=\/; Max-Age=600; HttpOnly; SameSite=Lax; Secure$/,
    );
  });

  it('every response names the region and the time waited; single-region mode issues no tokens', async () => {
    const single = new RegionalHttp({ region: 'dev', env: {} });
    const state = await single.begin(view({}, 'POST', '/posts'));
    expect(state.action).toBe('run');
    state.context.observe('pg:1', 5n);
    expect(single.responseHeaders(state)).toEqual([
      ['x-regional-region', 'dev'],
      ['server-timing', 'regional-wait;dur=0.0;desc="dev"'],
    ]);
  });
});

describe('fly-replay answers', () => {
  const inSyd = (options = {}) =>
    new RegionalHttp({
      primaryRegion: 'iad',
      region: 'syd',
      mode: 'fly-replay',
      secret: SECRET,
      env: {},
      primaryOnlyPaths: ['/api/topics/*/posts'],
      ...options,
    });
  const send = (http: RegionalHttp, method: string, path: string) =>
    handleFetch(
      http,
      new Request(`http://forum.test:8080${path}`, {
        method,
        body: method === 'GET' ? null : '{}',
      }),
      () => new Response('ran here'),
    );

  it('ask Fly.io to cache the replay for primaryOnlyPaths, and only there', async () => {
    const http = inSyd();
    const post = await send(http, 'POST', '/api/topics/7/posts?draft=0');
    expect(post.status).toBe(409);
    expect(post.headers.get('fly-replay')).toMatch(/^region=iad;state=/);
    expect(post.headers.get('fly-replay-cache')).toBe('forum.test/api/topics/*/posts');
    expect(post.headers.get('fly-replay-cache-ttl-secs')).toBe('60');
    // Every request under such a path writes, whatever its method.
    const get = await send(http, 'GET', '/api/topics/7/posts');
    expect(get.status).toBe(409);
    expect(get.headers.get('fly-replay-cache')).toBe('forum.test/api/topics/*/posts');
    // Elsewhere a write is replayed without caching, and a read runs here.
    const topic = await send(http, 'POST', '/api/topics');
    expect(topic.status).toBe(409);
    expect(topic.headers.get('fly-replay-cache')).toBeNull();
    expect(await (await send(http, 'GET', '/api/topics')).text()).toBe('ran here');
    expect(
      (
        await send(inSyd({ primaryOnlyCacheSeconds: 300 }), 'PUT', '/api/topics/1/posts')
      ).headers.get('fly-replay-cache-ttl-secs'),
    ).toBe('300');
  });

  it("never put a client's Host header in the cache pattern unless it is a plain host name", async () => {
    const http = inSyd();
    const cacheFor = async (host: string) => {
      const state = await http.begin(view({ host }, 'POST', '/api/topics/7/posts'));
      expect(state.action).toBe('replay');
      const answer = await http.replay(state, { headers: [], body: () => null });
      expect(answer.status).toBe(409);
      return answer.headers.find(([name]) => name === 'fly-replay-cache')?.[1];
    };
    // `*` in the host would make the pattern cover every host; runs of `*` slow the matching.
    for (const host of ['*', '*.*', 'forum*.test', `${'*'.repeat(40)}x`, 'a b', 'forum.test/x'])
      expect(await cacheFor(host)).toBeUndefined();
    expect(await cacheFor('Forum.Test:443')).toBe('forum.test/api/topics/*/posts');
  });

  it('refuse a primaryOnlyPaths pattern Fly.io could not use, and a lifetime under its minimum', () => {
    expect(() => inSyd({ primaryOnlyPaths: ['/api/topics/:id/posts'] })).toThrow(
      /primaryOnlyPaths: "\/api\/topics\/:id\/posts" is not a path pattern; write a path starting with "\/"/,
    );
    expect(() => inSyd({ primaryOnlyPaths: ['api/posts'] })).toThrow(/primaryOnlyPaths/);
    expect(() => inSyd({ primaryOnlyCacheSeconds: 5 })).toThrow(
      /primaryOnlyCacheSeconds: must be a whole number of seconds, at least 10/,
    );
  });
});

describe('proxy replays', () => {
  it('answer 503 with a clear message, counted and logged, when no primary-region instance answers', async () => {
    const port = await freePort(); // nothing listens there
    const warnings: string[] = [];
    const http = new RegionalHttp({
      primaryRegion: 'iad',
      region: 'syd',
      mode: 'proxy',
      primaryUrl: `http://127.0.0.1:${port}`,
      secret: SECRET,
      onWarning: (message) => warnings.push(message),
    });
    try {
      const response = await handleFetch(
        http,
        new Request('http://app.test/posts', { method: 'POST', body: '{}' }),
        () => new Response('ran here'),
      );
      // Nothing was sent: safe to retry. The client is not told where the instances are.
      expect(response.status).toBe(503);
      expect(response.headers.get('retry-after')).toBe('1');
      expect(response.headers.get('x-regional-region')).toBe('syd');
      expect(await response.json()).toEqual({
        error: {
          code: 'REGIONAL_PRIMARY_REGION_UNAVAILABLE',
          message:
            'The primary region (iad) cannot be reached right now; nothing was sent there. Retry shortly.',
        },
      });
      // The operator is.
      expect(warnings.join('\n')).toContain(`http://127.0.0.1:${port}`);
      expect(http.stats()).toMatchObject({ replays: { write: 1 }, replayFailures: 1 });
    } finally {
      await http.close();
    }
  });
});
