import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { configError } from '../../test/support/errors.js';
import { ConfigError } from './errors.js';
import { estimateSecretBits, Keyring, RequestVerifier, signRequest } from './signing.js';

const OLD = '3dda22f6dc98abb9d1fcca3bc32f168a7818511ca76465d4e27f8806ea699c16';
const NEW = '3e7951667567aa1f0c050ff067f426642c4b03f9c0fc35e1dab7aaa47a646837';
const parts = { method: 'POST', path: '/_regional/rpc/createPost', body: '{"title":"hi"}' };

describe('Keyring', () => {
  it('signs with the current key and verifies with any accepted one', () => {
    const old = new Keyring(OLD);
    const rotated = new Keyring(NEW, [OLD]);
    const signedByOld = old.sign('data');
    expect(rotated.verify(signedByOld.keyId, 'data', signedByOld.mac)).toBe(true);
    expect(rotated.sign('data').keyId).not.toBe(signedByOld.keyId);
    expect(old.verify(rotated.sign('data').keyId, 'data', rotated.sign('data').mac)).toBe(false);
    expect(rotated.verify(signedByOld.keyId, 'other data', signedByOld.mac)).toBe(false);
  });

  it('reads REGIONAL_SECRET and REGIONAL_SECRET_PREVIOUS', () => {
    expect(Keyring.fromEnv({})).toBeNull();
    const keyring = Keyring.fromEnv({
      REGIONAL_SECRET: NEW,
      REGIONAL_SECRET_PREVIOUS: `${OLD}, ${randomBytes(32).toString('base64')}`,
    });
    expect(keyring?.keyIds).toHaveLength(3);
  });

  it('refuses short secrets, naming the variable', () => {
    expect(() => Keyring.fromEnv({ REGIONAL_SECRET: 'short' })).toThrow(ConfigError);
    expect(() => Keyring.fromEnv({ REGIONAL_SECRET: 'short' })).toThrow(
      /REGIONAL_SECRET: is 5 characters; use at least 32/,
    );
    expect(() => Keyring.fromEnv({ REGIONAL_SECRET: NEW, REGIONAL_SECRET_PREVIOUS: 'x' })).toThrow(
      /REGIONAL_SECRET_PREVIOUS/,
    );
  });

  // Every client receives tokens signed with the secret: a guessable one can be found offline.
  const weak = [
    'a'.repeat(32),
    'abcd'.repeat(8),
    '0123456789abcdef'.repeat(2),
    'password'.repeat(4),
    'abcdefghijklmnopqrstuvwxyz012345',
    `${randomBytes(8).toString('hex')}${'x'.repeat(48)}`, // 64 bits of randomness, then a run
    `${randomBytes(6).toString('hex')}`.repeat(4),
  ];

  it.each(weak)('refuses a predictable secret without printing it: %s', (secret) => {
    expect(estimateSecretBits(secret)).toBeLessThan(128);
    for (const [build, variable] of [
      [() => Keyring.fromEnv({ REGIONAL_SECRET: secret }), 'REGIONAL_SECRET'],
      [
        () => Keyring.fromEnv({ REGIONAL_SECRET: NEW, REGIONAL_SECRET_PREVIOUS: secret }),
        'REGIONAL_SECRET_PREVIOUS',
      ],
      // As the `secret` option of the middleware and of procedures makes it.
      [() => new Keyring(secret, [], { current: 'secret', previous: 'secret' }), 'secret'],
    ] as const) {
      const error = configError(build);
      expect(error.variable).toBe(variable);
      expect(error.message).toMatch(/too predictable .* at least 128 .*`openssl rand -hex 32`/);
      expect(error.message).not.toContain(secret);
      expect(error.message).not.toContain(secret.slice(0, 8));
    }
  });

  it.each([
    ['openssl rand -hex 32', () => randomBytes(32).toString('hex')],
    ['openssl rand -base64 32', () => randomBytes(32).toString('base64')],
    ['randomBytes(32).toString("base64url")', () => randomBytes(32).toString('base64url')],
  ])('accepts every secret made by %s (10,000 samples)', (_, generate) => {
    for (let i = 0; i < 10_000; i++) {
      const secret = generate();
      if (estimateSecretBits(secret) < 128) throw new Error(`refused ${secret}`);
    }
    expect(() => new Keyring(generate())).not.toThrow();
  });
});

describe('request signatures', () => {
  it('accepts a fresh signature once, then refuses it as replayed', () => {
    const keyring = new Keyring(NEW);
    const verifier = new RequestVerifier(keyring);
    const header = signRequest(keyring, parts);
    expect(verifier.verify(header, parts)).toBeNull();
    expect(verifier.verify(header, parts)).toBe('replayed');
  });

  it('gives every signature its own 16-byte nonce, also across batches of random bytes', () => {
    const keyring = new Keyring(NEW);
    const verifier = new RequestVerifier(keyring);
    const nonces = new Set<string>();
    // Nonces are drawn from batches of 256: 1,000 signatures span several refills.
    for (let i = 0; i < 1000; i++) {
      const signature = signRequest(keyring, parts);
      const nonce = /nonce=([\w-]+)/.exec(signature)?.[1] as string;
      expect(Buffer.from(nonce, 'base64url')).toHaveLength(16);
      nonces.add(nonce);
      expect(verifier.verify(signature, parts)).toBeNull();
    }
    expect(nonces.size).toBe(1000);
  });

  it('accepts signatures by a previous secret during rotation', () => {
    const header = signRequest(new Keyring(OLD), parts);
    expect(new RequestVerifier(new Keyring(NEW, [OLD])).verify(header, parts)).toBeNull();
    expect(
      new RequestVerifier(new Keyring(NEW)).verify(signRequest(new Keyring(OLD), parts), parts),
    ).toBe('unknown-key');
  });

  it('refuses stale, tampered, malformed and missing signatures', () => {
    const keyring = new Keyring(NEW);
    const verifier = new RequestVerifier(keyring, { maxSkewSeconds: 30 });
    expect(verifier.verify(signRequest(keyring, parts, Date.now() - 60_000), parts)).toBe('stale');
    expect(verifier.verify(signRequest(keyring, parts, Date.now() + 60_000), parts)).toBe('stale');
    expect(
      verifier.verify(signRequest(keyring, parts), { ...parts, body: '{"title":"evil"}' }),
    ).toBe('bad-mac');
    expect(
      verifier.verify(signRequest(keyring, parts), { ...parts, path: '/_regional/rpc/deleteAll' }),
    ).toBe('bad-mac');
    expect(verifier.verify(signRequest(keyring, parts), { ...parts, method: 'GET' })).toBe(
      'bad-mac',
    );
    expect(verifier.verify('v1 key=zz', parts)).toBe('malformed');
    expect(verifier.verify(undefined, parts)).toBe('missing');
    const forged = signRequest(keyring, parts).replace(/mac=\S+/, `mac=${'A'.repeat(43)}`);
    expect(verifier.verify(forged, parts)).toBe('bad-mac');
  });

  it('signatures that leave a streamed body out are accepted only where allowed', () => {
    const keyring = new Keyring(NEW);
    const streamed = { ...parts, body: null };
    expect(new RequestVerifier(keyring).verify(signRequest(keyring, streamed), streamed)).toBe(
      'body-unsigned',
    );
    expect(
      new RequestVerifier(keyring, { allowUnsignedBody: true }).verify(
        signRequest(keyring, streamed),
        parts,
      ),
    ).toBeNull();
    // Claiming "unsigned" for a signature that covered the body does not verify.
    const signed = signRequest(keyring, parts).replace('body=signed', 'body=unsigned');
    expect(new RequestVerifier(keyring, { allowUnsignedBody: true }).verify(signed, parts)).toBe(
      'bad-mac',
    );
  });
});
