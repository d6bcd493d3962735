import { describe, expect, it, vi } from 'vitest';
import { Keyring } from '../core/signing.js';
import { cookieSettings, readCookie, tokenCookie } from './cookie.js';
import { RouteRules } from './routes.js';
import { decodeToken, encodeToken } from './token.js';

const SECRET = 'e469510d32bf70170f9f515aab060069cedc4684b2b41a80e30c7b419bc96dce';
const OTHER = '289f3b097007a46452ac56eea0a4634b134254c24a923eb373e5716181b09be6';
const PREVIOUS = 'f069e1bbe605606e66cb2b32b04c6b1ca9bcbd23ea22b4fd2ba6c8d4e98d73e1';
const STRANGER = '2766e756029735ce10f045035e826200d6580e5d85658e84c35a53147d826399';
const keyring = new Keyring(SECRET);
const positions: [string, bigint][] = [
  ['pg:7301234567890', 0x16b374d848n],
  ['redis:5f2c', 123456789n],
];

const payloadOf = (json: unknown) => Buffer.from(JSON.stringify(json)).toString('base64url');
/** A token over any payload, correctly signed: what a bug (not a client) could produce. */
function signed(json: unknown): string {
  const payload = payloadOf(json);
  const { keyId, mac } = keyring.sign(`regional-token-v1\n${payload}`);
  return `t1.${payload}.${keyId}.${mac}`;
}

describe('consistency tokens', () => {
  it('carry every source position, exactly, until they expire', () => {
    const token = encodeToken(keyring, positions, 600);
    expect(decodeToken(keyring, token)).toEqual({ positions });
    expect(decodeToken(keyring, token, Date.now() + 599_000)).toEqual({ positions });
    expect(decodeToken(keyring, token, Date.now() + 601_000)).toEqual({ failure: 'expired' });
  });

  it('are verified once per process: a known one skips the HMAC but still expires', () => {
    const ring = new Keyring(OTHER);
    // Same secret, another keyring: what another region's instance signs.
    const elsewhere = new Keyring(OTHER);
    const verify = vi.spyOn(ring, 'verify');
    const token = encodeToken(elsewhere, positions, 600);
    expect(decodeToken(ring, token)).toEqual({ positions });
    expect(decodeToken(ring, token)).toEqual({ positions });
    expect(verify).toHaveBeenCalledTimes(1);
    // Signed here: never verified at all.
    const own = encodeToken(ring, positions, 600);
    const ownResult = decodeToken(ring, own);
    expect(ownResult).toEqual({ positions });
    expect(verify).toHaveBeenCalledTimes(1);
    // Shared by every request carrying it, so nobody can change it for the next one.
    const shared = 'positions' in ownResult ? ownResult.positions : [];
    expect(Object.isFrozen(shared) && Object.isFrozen(shared[0])).toBe(true);
    expect(decodeToken(ring, token, Date.now() + 601_000)).toEqual({ failure: 'expired' });
    // A forged token is checked every time, never remembered.
    const forged = `${own.slice(0, -2)}AA`;
    expect(decodeToken(ring, forged)).toEqual({ failure: 'forged' });
    expect(decodeToken(ring, forged)).toEqual({ failure: 'forged' });
    expect(verify).toHaveBeenCalledTimes(3);
    // Bounded: after a thousand other tokens, the first is verified again.
    for (let i = 0; i < 1000; i++) encodeToken(ring, [['pg:1', BigInt(i)]], 600);
    expect(decodeToken(ring, own)).toEqual({ positions });
    expect(verify).toHaveBeenCalledTimes(4);
  });

  it('are refused when forged, signed by another secret, or malformed', () => {
    const token = encodeToken(keyring, positions, 600);
    const [, , keyId, mac] = token.split('.');
    const bigger = payloadOf({ p: [['pg:7301234567890', '999999999999']], x: 9e9 });
    expect(decodeToken(keyring, `t1.${bigger}.${keyId}.${mac}`)).toEqual({ failure: 'forged' });
    expect(decodeToken(keyring, `${token.slice(0, -2)}AA`)).toEqual({ failure: 'forged' });
    const other = encodeToken(new Keyring(STRANGER), positions, 600);
    expect(decodeToken(keyring, other)).toEqual({ failure: 'unknown-key' });
    for (const bad of [
      '',
      'garbage',
      't1.a.b',
      't2.a.0123abcd.m',
      `t1..${keyId}.${mac}`,
      'x'.repeat(5000),
    ]) {
      expect(decodeToken(keyring, bad), bad).toEqual({ failure: 'malformed' });
    }
  });

  it('even correctly signed, an impossible payload is refused, never thrown', () => {
    for (const json of [
      null,
      [],
      { p: 'x', x: 9e9 },
      { p: [['pg:1', '-5']], x: 9e9 },
      { p: [['pg:1', '1e3']], x: 9e9 },
      { p: [['pg:1', (1n << 64n).toString()]], x: 9e9 },
      { p: [['', '5']], x: 9e9 },
      { p: [['pg:1', 5]], x: 9e9 },
      { p: [['pg:1', '5']] },
      { p: Array.from({ length: 17 }, (_, i) => [`s${i}`, '1']), x: 9e9 },
    ]) {
      expect(decodeToken(keyring, signed(json)), JSON.stringify(json)).toEqual({
        failure: 'malformed',
      });
    }
    expect(decodeToken(keyring, signed({ p: [['pg:1', '18446744073709551615']], x: 9e9 }))).toEqual(
      { positions: [['pg:1', (1n << 64n) - 1n]] },
    );
  });

  it('signed before a secret rotation are still honoured', () => {
    const token = encodeToken(new Keyring(PREVIOUS), positions, 600);
    expect(decodeToken(new Keyring(SECRET, [PREVIOUS]), token)).toEqual({ positions });
  });
});

describe('the token cookie', () => {
  it('is HttpOnly and SameSite=Lax, Secure on https', () => {
    const settings = cookieSettings();
    expect(tokenCookie(settings, 't1.x', 600, false)).toBe(
      'regional_token=t1.x; Path=/; Max-Age=600; HttpOnly; SameSite=Lax',
    );
    expect(tokenCookie(settings, 't1.x', 600, true)).toMatch(/; Secure$/);
    expect(
      tokenCookie(cookieSettings({ secure: true, domain: 'example.com' }), 't', 1, false),
    ).toBe(
      'regional_token=t; Path=/; Domain=example.com; Max-Age=1; HttpOnly; SameSite=Lax; Secure',
    );
    expect(() => cookieSettings({ name: 'bad name' })).toThrow(/cookie.name: "bad name"/);
  });

  it('is read from a Cookie header without being fooled by similar names or values', () => {
    expect(readCookie('regional_token=abc', 'regional_token')).toBe('abc');
    expect(readCookie('a=1; regional_token=abc; b=2', 'regional_token')).toBe('abc');
    expect(readCookie('xregional_token=no; a=regional_token=no', 'regional_token')).toBeUndefined();
    expect(readCookie('xregional_token=no;regional_token=yes', 'regional_token')).toBe('yes');
    expect(readCookie(undefined, 'regional_token')).toBeUndefined();
  });
});

describe('route rules', () => {
  it('writing methods write, unless in readRoutes; reading methods read, unless in writeRoutes', () => {
    const rules = new RouteRules(
      ['POST /search', '/graphql', /^PUT \/drafts\//],
      ['GET /logout', 'GET /posts/:id/visit', 'GET /admin/*', (_method, path) => path === '/fn'],
    );
    expect(rules.isWrite('POST', '/posts')).toBe(true);
    expect(rules.isWrite('DELETE', '/posts/1')).toBe(true);
    expect(rules.isWrite('POST', '/search?q=x')).toBe(false);
    expect(rules.isWrite('POST', '/graphql')).toBe(false);
    expect(rules.isWrite('PUT', '/drafts/9')).toBe(false);
    expect(rules.isWrite('GET', '/posts/1')).toBe(false);
    expect(rules.isWrite('GET', '/logout')).toBe(true);
    expect(rules.isWrite('GET', '/posts/7/visit')).toBe(true);
    expect(rules.isWrite('GET', '/posts/7/8/visit')).toBe(false);
    expect(rules.isWrite('GET', '/admin/a/b')).toBe(true);
    expect(rules.isWrite('HEAD', '/fn')).toBe(true);
    expect(rules.isWrite('GET', '/search.x')).toBe(false);
    // A framework's own route marking wins.
    expect(rules.isWrite('GET', '/posts/1', 'write')).toBe(true);
    expect(rules.isWrite('POST', '/posts', 'read')).toBe(false);
  });

  it('refuses a route it cannot read, naming the option', () => {
    expect(() => new RouteRules(['search'])).toThrow(/readRoutes: "search" is not a route/);
    expect(() => new RouteRules([], ['GET  '])).toThrow(/writeRoutes:/);
  });
});
