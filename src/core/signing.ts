import { createHash, createHmac, randomFillSync, timingSafeEqual } from 'node:crypto';
import { ConfigError } from './errors.js';

/**
 * Shared-secret signing for everything that crosses between instances or reaches clients:
 * calls between regions (signed, timestamped, never accepted twice) and client tokens
 * (signed, so a client cannot forge a huge LSN to make every request wait).
 *
 * Secrets rotate: `REGIONAL_SECRET` signs, and it or any of `REGIONAL_SECRET_PREVIOUS`
 * (comma-separated) verifies. Deploy the new secret as current with the old one as previous
 * everywhere, then drop the old one.
 */

/** Shortest accepted secret, in characters. `openssl rand -hex 32` gives 64. */
export const MIN_SECRET_LENGTH = 32;

/** Least estimated entropy of an accepted secret, in bits (see {@link estimateSecretBits}). */
export const MIN_SECRET_BITS = 128;

export interface SigningKey {
  /** Names the key without revealing it: the first 8 hex digits of a hash of the secret. */
  readonly id: string;
  readonly secret: Buffer;
}

const HOW_TO_GENERATE =
  'generate one with `openssl rand -hex 32` (or `openssl rand -base64 32`) and set the same on every instance';

/**
 * A cautious estimate of a secret's entropy, in bits: the number of characters that are not
 * predictable from the ones before times the Shannon entropy of the secret's character
 * distribution (what each costs to guess for someone who knows which characters it uses and
 * how often). A character is predictable when it continues an arithmetic run of character
 * codes (`aaa`, `abc`, `987`) or ends a 4-character sequence seen earlier in the secret (a
 * repeat, of any period). Random output scores a little under its real size (`openssl rand
 * -hex 32`: ~240 of 256 bits, never seen below 200; `-base64 32`: ~210, never below 175), so
 * 16 random bytes (exactly 128 bits) are usually refused; `'abcd'.repeat(8)` scores 8 and
 * `'0123456789abcdef'.repeat(2)` 24. Text such as a passphrase can score above its real
 * entropy: this catches weak patterns, it does not prove strength.
 */
export function estimateSecretBits(secret: string): number {
  const chars = Array.from(secret);
  const counts = new Map<string, number>();
  for (const c of chars) counts.set(c, (counts.get(c) ?? 0) + 1);
  let bitsPerChar = 0;
  for (const count of counts.values()) {
    const p = count / chars.length;
    bitsPerChar -= p * Math.log2(p);
  }
  const code = (i: number) => chars[i]?.codePointAt(0) ?? 0;
  const seen = new Set<string>();
  let unpredictable = 0;
  for (let i = 0; i < chars.length; i++) {
    const run = i >= 2 && code(i) - code(i - 1) === code(i - 1) - code(i - 2);
    const gram = i >= 3 ? chars.slice(i - 3, i + 1).join('') : null;
    const repeat = gram !== null && seen.has(gram);
    if (gram !== null) seen.add(gram);
    if (!run && !repeat) unpredictable++;
  }
  return unpredictable * bitsPerChar;
}

function keyFor(variable: string, secret: string): SigningKey {
  // Never quote the secret: only its length, and an estimate of its strength.
  if (secret.length < MIN_SECRET_LENGTH) {
    throw new ConfigError(
      variable,
      `is ${secret.length} characters; use at least ${MIN_SECRET_LENGTH} random characters: ${HOW_TO_GENERATE}`,
    );
  }
  const bits = estimateSecretBits(secret);
  if (bits < MIN_SECRET_BITS) {
    throw new ConfigError(
      variable,
      `is too predictable (about ${Math.floor(bits)} bits of entropy by an estimate that counts repeats and runs once; at least ${MIN_SECRET_BITS} needed): every client receives tokens signed with it, so a weak one can be guessed offline; ${HOW_TO_GENERATE}`,
    );
  }
  const id = createHash('sha256').update(`regional-key-id\0${secret}`).digest('hex').slice(0, 8);
  return { id, secret: Buffer.from(secret, 'utf8') };
}

const base64url = (buffer: Buffer) => buffer.toString('base64url');

/**
 * Random bytes for nonces, drawn a batch at a time (as Node's own `randomUUID` does): one call
 * into the CSPRNG per 256 nonces instead of one per signature, which on a machine where the
 * code has gone cold costs about 50 µs each. Every nonce gets bytes no other one had.
 */
const NONCE_BYTES = 16;
const noncePool = Buffer.alloc(NONCE_BYTES * 256);
let noncePoolOffset = noncePool.length;

function randomNonce(): string {
  if (noncePoolOffset === noncePool.length) {
    randomFillSync(noncePool);
    noncePoolOffset = 0;
  }
  const start = noncePoolOffset;
  noncePoolOffset += NONCE_BYTES;
  return base64url(noncePool.subarray(start, noncePoolOffset));
}

/**
 * The current signing key and the previous ones still accepted.
 *
 * @example
 * const keyring = Keyring.fromEnv(); // REGIONAL_SECRET, REGIONAL_SECRET_PREVIOUS
 * const { keyId, mac } = keyring.sign('payload');
 * keyring.verify(keyId, 'payload', mac); // true
 */
export class Keyring {
  readonly current: SigningKey;
  private readonly keys: ReadonlyMap<string, SigningKey>;

  constructor(
    current: string,
    previous: readonly string[] = [],
    variables = { current: 'REGIONAL_SECRET', previous: 'REGIONAL_SECRET_PREVIOUS' },
  ) {
    this.current = keyFor(variables.current, current);
    const keys = new Map([[this.current.id, this.current]]);
    for (const secret of previous) {
      const key = keyFor(variables.previous, secret);
      keys.set(key.id, key);
    }
    this.keys = keys;
  }

  /**
   * The keyring from `REGIONAL_SECRET` (required) and `REGIONAL_SECRET_PREVIOUS` (optional,
   * comma-separated); `null` if `REGIONAL_SECRET` is not set.
   */
  static fromEnv(env: Readonly<Record<string, string | undefined>> = process.env): Keyring | null {
    const current = env.REGIONAL_SECRET;
    if (!current) return null;
    const previous = (env.REGIONAL_SECRET_PREVIOUS ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
    return new Keyring(current, previous);
  }

  /** Ids of every accepted key, the current first. */
  get keyIds(): string[] {
    return [...this.keys.keys()];
  }

  /** HMAC-SHA256 of `data` with the current key. */
  sign(data: string | Buffer): { keyId: string; mac: string } {
    return {
      keyId: this.current.id,
      mac: base64url(createHmac('sha256', this.current.secret).update(data).digest()),
    };
  }

  /** True if `mac` is `data` signed by any accepted key named `keyId` (constant-time compare). */
  verify(keyId: string, data: string | Buffer, mac: string): boolean {
    const key = this.keys.get(keyId);
    if (!key) return false;
    const expected = createHmac('sha256', key.secret).update(data).digest();
    let given: Buffer;
    try {
      given = Buffer.from(mac, 'base64url');
    } catch {
      return false;
    }
    return given.length === expected.length && timingSafeEqual(given, expected);
  }
}

/** Header that carries a request signature. */
export const SIGNATURE_HEADER = 'x-regional-signature';

/**
 * Header that carries the SHA-256 (lowercase hex) of a request's body, which the signature
 * covers (sign with `body: { sha256 }`): the receiver checks the signature from the headers
 * alone, before reading any of the body, then checks the body against this digest.
 */
export const BODY_DIGEST_HEADER = 'x-regional-body-sha256';

/** The SHA-256 of `body` in lowercase hex, as {@link BODY_DIGEST_HEADER} carries it. */
export const sha256Hex = (body: string | Uint8Array): string =>
  createHash('sha256').update(body).digest('hex');

/** What a request signature covers. */
export interface SignedRequestParts {
  method: string;
  /** Path and query string, e.g. `/_regional/rpc/createPost?x=1`. */
  path: string;
  /**
   * The body, or its SHA-256 in hex, or `null` for a body that is streamed and so not covered
   * (the signature still covers method, path, time and nonce).
   */
  body: string | Buffer | { sha256: string } | null;
}

const UNSIGNED_BODY = 'UNSIGNED-BODY';

function bodyDigest(body: SignedRequestParts['body']): string {
  if (body === null) return UNSIGNED_BODY;
  if (typeof body === 'object' && !Buffer.isBuffer(body)) return body.sha256;
  return sha256Hex(body);
}

const canonical = (parts: SignedRequestParts, timestamp: number, nonce: string) =>
  `regional-request-v1\n${parts.method.toUpperCase()}\n${parts.path}\n${timestamp}\n${nonce}\n${bodyDigest(parts.body)}`;

/**
 * Signs a request: returns the value of the {@link SIGNATURE_HEADER} header, covering method,
 * path, the time, a random nonce and the body.
 *
 * @example
 * const headers = { [SIGNATURE_HEADER]: signRequest(keyring, { method: 'POST', path: '/_regional/rpc/x', body }) };
 */
export function signRequest(keyring: Keyring, parts: SignedRequestParts, now = Date.now()): string {
  const timestamp = Math.floor(now / 1000);
  const nonce = randomNonce();
  const { keyId, mac } = keyring.sign(canonical(parts, timestamp, nonce));
  return `v1 key=${keyId} ts=${timestamp} nonce=${nonce} body=${parts.body === null ? 'unsigned' : 'signed'} mac=${mac}`;
}

/** Why a signature was refused. */
export type SignatureFailure =
  | 'missing'
  | 'malformed'
  | 'unknown-key'
  | 'stale'
  | 'replayed'
  | 'bad-mac'
  | 'body-unsigned';

export interface VerifierOptions {
  /** Accepted clock difference between instances, in seconds (default 30). */
  maxSkewSeconds?: number;
  /** Accept signatures that do not cover the body (streamed bodies). Default false. */
  allowUnsignedBody?: boolean;
}

/**
 * Verifies request signatures and remembers nonces for the accepted time window, so a
 * captured request cannot be played again within it (nor outside it: then it is stale).
 */
export class RequestVerifier {
  private readonly seen = new Map<string, number>();
  private readonly maxSkew: number;
  private readonly allowUnsignedBody: boolean;
  private lastSweep = 0;

  constructor(
    private readonly keyring: Keyring,
    options: VerifierOptions = {},
  ) {
    this.maxSkew = options.maxSkewSeconds ?? 30;
    this.allowUnsignedBody = options.allowUnsignedBody ?? false;
  }

  /** `null` if the signature is good (and records its nonce), else why it is refused. */
  verify(
    header: string | undefined | null,
    parts: SignedRequestParts,
    now = Date.now(),
  ): SignatureFailure | null {
    if (!header) return 'missing';
    const match =
      /^v1 key=([0-9a-f]{8}) ts=(\d{1,12}) nonce=([A-Za-z0-9_-]{16,64}) body=(signed|unsigned) mac=([A-Za-z0-9_-]{20,100})$/.exec(
        header.trim(),
      );
    if (!match) return 'malformed';
    const [, keyId, ts, nonce, bodyMode, mac] = match as unknown as [
      string,
      string,
      string,
      string,
      string,
      string,
    ];
    const timestamp = Number(ts);
    if (Math.abs(now / 1000 - timestamp) > this.maxSkew) return 'stale';
    if (bodyMode === 'unsigned' && !this.allowUnsignedBody) return 'body-unsigned';
    const covered = bodyMode === 'unsigned' ? { ...parts, body: null } : parts;
    if (!this.keyring.keyIds.includes(keyId)) return 'unknown-key';
    if (!this.keyring.verify(keyId, canonical(covered, timestamp, nonce), mac)) return 'bad-mac';
    this.sweep(now);
    if (this.seen.has(nonce)) return 'replayed';
    this.seen.set(nonce, now + (this.maxSkew * 2 + 1) * 1000);
    return null;
  }

  /** Forgets nonces older than the window: their requests are stale now anyway. */
  private sweep(now: number): void {
    if (now - this.lastSweep < 1000) return;
    this.lastSweep = now;
    for (const [nonce, expires] of this.seen) if (expires < now) this.seen.delete(nonce);
  }
}
