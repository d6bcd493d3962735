import type { Keyring } from '../core/signing.js';

/**
 * Consistency tokens: what a client carries between requests so that a later request, in any
 * region, reads at least what the client wrote or saw. A token holds positions per source —
 * commit LSNs under `pg:<system identifier>`, replication offsets under a Redis source's key,
 * anything a {@link ReplicatedSource} names — an expiry, and an HMAC by a named key.
 *
 * Text form: `t1.<payload>.<key id>.<mac>`, where payload is base64url JSON
 * `{"p":[[source, "decimal position"], …],"x":<expiry, unix seconds>}`.
 */

/** Why a token was ignored. */
export type TokenFailure = 'malformed' | 'forged' | 'unknown-key' | 'expired';

export type Positions = [string, bigint][];

const PREFIX = 't1';
const MAX_TOKEN_LENGTH = 3000;
const MAX_SOURCES = 16;
const MAX_SOURCE_KEY_LENGTH = 200;
const MAX_POSITION = (1n << 64n) - 1n;
const DECIMAL = /^(0|[1-9][0-9]{0,19})$/;
const KEY_ID = /^[0-9a-f]{8}$/;

const macInput = (payload: string) => `regional-token-v1\n${payload}`;

/**
 * Tokens this process signed or verified lately, per keyring: a client sends the same token
 * with every request until its next write, and its HMAC need not be checked each time. Only
 * valid tokens are kept (by their full text, MAC included), their expiry is checked on every
 * use, and the oldest go first past {@link MAX_KNOWN_TOKENS}.
 */
const knownTokens = new WeakMap<Keyring, Map<string, { positions: Positions; expires: number }>>();
const MAX_KNOWN_TOKENS = 1000;

function remember(keyring: Keyring, token: string, positions: Positions, expires: number): void {
  let known = knownTokens.get(keyring);
  if (!known) {
    known = new Map();
    knownTokens.set(keyring, known);
  }
  if (known.size >= MAX_KNOWN_TOKENS) known.delete(known.keys().next().value as string);
  // Shared by every request that carries the token: nobody may change it.
  for (const entry of positions) Object.freeze(entry);
  known.set(token, { positions: Object.freeze(positions) as Positions, expires });
}

/**
 * Signs `positions` into a token that expires `ttlSeconds` from `now`.
 *
 * @example
 * const token = encodeToken(keyring, [['pg:7301', 0x16b374d848n]], 600);
 */
export function encodeToken(
  keyring: Keyring,
  positions: Iterable<readonly [string, bigint]>,
  ttlSeconds: number,
  now = Date.now(),
): string {
  const p: [string, string][] = [];
  const kept: Positions = [];
  for (const [source, position] of positions) {
    p.push([source, position.toString()]);
    kept.push([source, position]);
  }
  const expires = Math.floor(now / 1000) + ttlSeconds;
  const payload = Buffer.from(JSON.stringify({ p, x: expires })).toString('base64url');
  const { keyId, mac } = keyring.sign(macInput(payload));
  const token = `${PREFIX}.${payload}.${keyId}.${mac}`;
  remember(keyring, token, kept, expires);
  return token;
}

/**
 * Checks a token and returns its positions (shared and frozen: do not change them), or why it
 * must be ignored. Never throws: a token comes from a client and may be anything. A token this
 * process signed or already verified is not verified again, only checked for expiry.
 *
 * @example
 * const result = decodeToken(keyring, request.headers.get('x-regional-token'));
 * if ('positions' in result) for (const [source, position] of result.positions) …
 */
export function decodeToken(
  keyring: Keyring,
  token: string,
  now = Date.now(),
): { positions: Positions } | { failure: TokenFailure } {
  if (token.length > MAX_TOKEN_LENGTH) return { failure: 'malformed' };
  const known = knownTokens.get(keyring)?.get(token);
  if (known) {
    if (known.expires * 1000 > now) return { positions: known.positions };
    knownTokens.get(keyring)?.delete(token);
    return { failure: 'expired' };
  }
  const parts = token.split('.');
  if (parts.length !== 4 || parts[0] !== PREFIX) return { failure: 'malformed' };
  const [, payload, keyId, mac] = parts as [string, string, string, string];
  if (!KEY_ID.test(keyId) || payload === '' || mac === '') return { failure: 'malformed' };
  if (!keyring.keyIds.includes(keyId)) return { failure: 'unknown-key' };
  if (!keyring.verify(keyId, macInput(payload), mac)) return { failure: 'forged' };
  // Signed by us, so well-formed unless a bug wrote it; still checked, never trusted blindly.
  const body = parsePayload(payload);
  if (!body) return { failure: 'malformed' };
  if (body.expires * 1000 <= now) return { failure: 'expired' };
  remember(keyring, token, body.positions, body.expires);
  return { positions: body.positions };
}

function parsePayload(payload: string): { positions: Positions; expires: number } | null {
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
  } catch {
    return null;
  }
  if (typeof json !== 'object' || json === null) return null;
  const { p, x } = json as { p?: unknown; x?: unknown };
  if (!Array.isArray(p) || p.length > MAX_SOURCES || typeof x !== 'number') return null;
  const positions: Positions = [];
  for (const entry of p) {
    if (!Array.isArray(entry) || entry.length !== 2) return null;
    const [source, position] = entry as [unknown, unknown];
    if (typeof source !== 'string' || source.length === 0 || source.length > MAX_SOURCE_KEY_LENGTH)
      return null;
    if (typeof position !== 'string' || !DECIMAL.test(position)) return null;
    const value = BigInt(position);
    if (value > MAX_POSITION) return null;
    positions.push([source, value]);
  }
  return { positions, expires: x };
}
