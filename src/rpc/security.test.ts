import { randomBytes, randomUUID } from 'node:crypto';
import net from 'node:net';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  BODY_DIGEST_HEADER,
  Keyring,
  RequestVerifier,
  SIGNATURE_HEADER,
  sha256Hex,
  signRequest,
} from '../core/signing.js';
import type { LocalCluster } from '../testing/cluster.js';
import { encodeValue } from './codec.js';
import { ProtocolVersionError } from './errors.js';
import type { Procedures } from './procedures.js';
import { CallServer } from './server.js';
import { type App, type AppOptions, SECRET, startApp, startCluster } from './test-support/apps.js';

// 20 ms each way between iad (primary) and syd.
const RTT_MS = 40;
const MAX_BODY = 4096;

let cluster: LocalCluster;
let iad: App;
let rpcPort: number;
const apps: App[] = [];
const keyring = new Keyring(SECRET);
let runs = 0;

function define(procedures: Procedures) {
  procedures.define('addNote', async (tx, input: { body: string }) => {
    runs++;
    await tx.query('INSERT INTO notes (body) VALUES ($1)', [input.body]);
    return input.body;
  });
}

async function app(region: string, options: AppOptions = {}): Promise<App> {
  const started = await startApp(cluster, region, { define, ...options });
  apps.push(started);
  return started;
}

const notes = async () =>
  Number((await cluster.query('iad', 'SELECT count(*) AS n FROM notes')).rows[0]?.n);

/** A call envelope of protocol 1 for `addNote`. */
function envelope(overrides: Record<string, unknown> = {}): string {
  return JSON.stringify({
    v: 1,
    id: randomUUID(),
    at: Date.now(),
    region: 'iad',
    input: encodeValue({ body: `note-${randomUUID()}` }, 'input'),
    ...overrides,
  });
}

const PATH = '/_regional/rpc/addNote';

/** Sends a request from syd to the iad instance through the link. */
async function send(
  body: string | Buffer | AsyncIterable<Buffer>,
  headers: Record<string, string>,
  path = PATH,
  method: 'POST' | 'GET' = 'POST',
): Promise<{ status: number; json: { error?: { code: string; reason?: string } } }> {
  const response = await request(`http://127.0.0.1:${rpcPort}${path}`, {
    method,
    headers: { 'content-type': 'application/json', ...headers },
    body:
      method === 'GET'
        ? null
        : typeof body === 'string' || Buffer.isBuffer(body)
          ? body
          : Readable.from(body),
  });
  const text = await response.body.text();
  return { status: response.statusCode, json: text ? JSON.parse(text) : {} };
}

/** A caller's headers: the body's SHA-256, and a signature over it. */
const signed = (body: string, signer = keyring, now = Date.now(), path = PATH) => {
  const sha256 = sha256Hex(body);
  return {
    [BODY_DIGEST_HEADER]: sha256,
    [SIGNATURE_HEADER]: signRequest(signer, { method: 'POST', path, body: { sha256 } }, now),
  };
};

/** Asserts a refusal with `status` (and reason) that ran nothing. */
async function expectRefused(
  call: Promise<Awaited<ReturnType<typeof send>>>,
  status: number,
  reason?: string,
): Promise<void> {
  const before = { runs, notes: await notes() };
  const { status: got, json } = await call;
  expect(got).toBe(status);
  if (reason) expect(json.error?.reason).toBe(reason);
  expect({ runs, notes: await notes() }).toEqual(before);
}

beforeAll(async () => {
  cluster = await startCluster(
    RTT_MS,
    'CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL)',
  );
  iad = await app('iad', { listen: true, procedures: { maxBodyBytes: MAX_BODY } });
  rpcPort = await cluster.route({ from: 'syd', to: 'iad', port: iad.port, name: 'rpc' });
});

afterAll(async () => {
  await Promise.all(apps.map((a) => a.close()));
  await cluster?.stop();
});

describe('who may call (from syd, through the link)', () => {
  it('a correctly signed call runs (the baseline the refusals are measured against)', async () => {
    const before = { runs, notes: await notes() };
    const body = envelope();
    const { status } = await send(body, signed(body));
    expect(status).toBe(200);
    expect({ runs, notes: await notes() }).toEqual({
      runs: before.runs + 1,
      notes: before.notes + 1,
    });
  });

  it('forged signatures get 401 and run nothing', async () => {
    const body = envelope();
    const headers = signed(body);
    const header = headers[SIGNATURE_HEADER];
    const mac = header.slice(header.indexOf('mac=') + 4);
    const forged = header.replace(mac, randomBytes(32).toString('base64url'));
    await expectRefused(send(body, { ...headers, [SIGNATURE_HEADER]: forged }), 401, 'bad-mac');
    // A real signature over another body, sent with this body's digest:
    const other = envelope();
    await expectRefused(
      send(other, { ...signed(body), [BODY_DIGEST_HEADER]: sha256Hex(other) }),
      401,
      'bad-mac',
    );
    await expectRefused(send(body, {}), 401, 'missing');
    await expectRefused(
      send(body, { ...headers, [SIGNATURE_HEADER]: 'v1 nonsense' }),
      401,
      'malformed',
    );
    // A signature without the digest it covers:
    await expectRefused(
      send(body, { [SIGNATURE_HEADER]: signed(body)[SIGNATURE_HEADER] }),
      401,
      'body-digest-missing',
    );
  });

  it('a correctly signed digest with another body gets 400 and runs nothing', async () => {
    const body = envelope();
    const tampered = body.replace(/note-/, 'evil-');
    const before = { runs, notes: await notes() };
    const { status, json } = await send(tampered, signed(body));
    expect(status).toBe(400);
    expect(json.error?.code).toBe('REGIONAL_BODY_MISMATCH');
    expect({ runs, notes: await notes() }).toEqual(before);
  });

  it('expired signatures get 401 and run nothing', async () => {
    const body = envelope();
    await expectRefused(send(body, signed(body, keyring, Date.now() - 120_000)), 401, 'stale');
  });

  it('a replayed request gets 401 and runs nothing', async () => {
    const body = envelope();
    const headers = signed(body);
    expect((await send(body, headers)).status).toBe(200);
    const served = iad.procedures.stats();
    await expectRefused(send(body, headers), 401, 'replayed');
    // Not even looked up in the call records: nothing ran.
    const after = iad.procedures.stats();
    expect([after.executed, after.replayed]).toEqual([served.executed, served.replayed]);
  });

  it('a wrong secret gets 401 and runs nothing', async () => {
    const body = envelope();
    const stranger = new Keyring(randomBytes(32).toString('hex'));
    await expectRefused(send(body, signed(body, stranger)), 401, 'unknown-key');
  });

  it('an unregistered name gets 404 and runs nothing', async () => {
    const path = '/_regional/rpc/dropAllTables';
    const body = envelope();
    const before = { runs, notes: await notes() };
    const { status, json } = await send(body, signed(body, keyring, Date.now(), path), path);
    expect(status).toBe(404);
    expect(json.error?.code).toBe('REGIONAL_PROCEDURE_NOT_FOUND');
    expect({ runs, notes: await notes() }).toEqual(before);
  });

  it('an oversized body gets 413 and runs nothing, declared or streamed', async () => {
    const big = envelope({ input: encodeValue({ body: 'x'.repeat(MAX_BODY) }, 'input') });
    await expectRefused(send(big, signed(big)), 413);
    // Streamed without a length: counted as it arrives.
    const half = 'x'.repeat(MAX_BODY / 2);
    async function* chunks() {
      for (let i = 0; i < 4; i++) yield Buffer.from(half);
    }
    await expectRefused(send(chunks(), signed(half.repeat(4))), 413);
  });

  it('the handler stops reading a body once it is over the limit', async () => {
    let pulled = 0;
    const chunk = new Uint8Array(1024);
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        pulled += chunk.byteLength;
        controller.enqueue(chunk);
        if (pulled >= 1024 * 1024) controller.close(); // a 1 MiB body, if anyone read it all
      },
    });
    const response = await iad.procedures.handler(
      new Request(`http://iad.internal${PATH}`, {
        method: 'POST',
        body: stream,
        headers: signed('the 1 MiB body'),
        duplex: 'half',
      } as RequestInit),
    );
    expect(response?.status).toBe(413);
    expect(pulled).toBeLessThanOrEqual(MAX_BODY + 2 * chunk.byteLength);
  });

  it('a call older than half the retention gets 410 and runs nothing', async () => {
    const body = envelope({ at: Date.now() - 13 * 3600_000 });
    await expectRefused(send(body, signed(body)), 410);
  });

  it('malformed envelopes get 400, other methods 405; nothing runs', async () => {
    const body = '{"v":1,"id":"x"}';
    await expectRefused(send(body, signed(body)), 400);
    const notJson = 'hello';
    await expectRefused(send(notJson, signed(notJson)), 400);
    await expectRefused(send('', {}, PATH, 'GET'), 405);
  });

  it('secrets rotate: an instance accepts its previous secret too, in either order of the deploy', async () => {
    const a = randomBytes(32).toString('hex');
    const b = randomBytes(32).toString('hex');
    const call = async (server: App, signer: Keyring) => {
      const body = envelope();
      const response = await server.procedures.handler(
        new Request(`http://iad.internal${PATH}`, {
          method: 'POST',
          body,
          headers: signed(body, signer),
        }),
      );
      return response?.status;
    };
    // Step 1: accept the new secret everywhere while still signing with the old one.
    const step1 = await app('iad', { procedures: { secret: a, previousSecrets: [b] } });
    // Step 2: sign with the new one, still accepting the old one.
    const step2 = await app('iad', { procedures: { secret: b, previousSecrets: [a] } });
    expect(await call(step1, new Keyring(b))).toBe(200);
    expect(await call(step2, new Keyring(a))).toBe(200);
    // Step 3: the old secret dropped, it is refused.
    const step3 = await app('iad', { procedures: { secret: b } });
    expect(await call(step3, new Keyring(a))).toBe(401);
  });

  it('only its own paths are answered: anything else is left to the app', async () => {
    const response = await iad.procedures.handler(new Request('http://iad.internal/posts/1'));
    expect(response).toBeNull();
    const other = await request(`http://127.0.0.1:${iad.port}/_regional/other`);
    expect(other.statusCode).toBe(404);
    await other.body.dump();
  });
});

describe('the body is read only after the signature is checked', () => {
  /**
   * A raw call that declares a `length`-byte body but sends its headers and only the first
   * bytes of it, as a slow (or hostile) client does; `answered` resolves with the status once
   * one arrives, and how many body bytes had been sent by then.
   */
  function slowCall(port: number, headers: Record<string, string>, length: number) {
    const socket = net.connect(port, '127.0.0.1');
    socket.on('error', () => {}); // the server closes while the body is unsent
    const head = Object.entries({
      host: 'iad.internal',
      'content-type': 'application/json',
      'content-length': String(length),
      ...headers,
    })
      .map(([name, value]) => `${name}: ${value}\r\n`)
      .join('');
    socket.write(`POST ${PATH} HTTP/1.1\r\n${head}\r\n`);
    let sent = 0;
    const write = (bytes: Buffer) => {
      sent += bytes.length;
      socket.write(bytes);
    };
    write(Buffer.from('{"v":1,'));
    let text = '';
    const answered = new Promise<{ status: number; reason?: string; bodySent: number } | null>(
      (resolve) => {
        socket.on('data', (data) => {
          text += data;
          const status = /^HTTP\/1\.1 (\d{3})/.exec(text)?.[1];
          const reason = /"reason":"([^"]*)"/.exec(text)?.[1];
          if (status && reason) resolve({ status: Number(status), reason, bodySent: sent });
        });
        socket.on('close', () => resolve(null));
      },
    );
    return {
      answered,
      sendRest: () => write(Buffer.alloc(length - sent, 0x20)),
      close: () => socket.destroy(),
    };
  }

  it('64 unsigned or forged calls declaring 1 MiB bodies sent slowly get 401 before their bodies arrive', async () => {
    const server = await app('iad', { listen: true }); // the default limit, 1 MiB
    const sockets: net.Socket[] = [];
    server.server?.on('connection', (socket) => sockets.push(socket));
    const declared = 1024 * 1024;
    const stranger = new Keyring(randomBytes(32).toString('hex'));
    const calls = Array.from({ length: 64 }, (_, i) =>
      slowCall(server.port, i % 2 ? signed('a body never sent', stranger) : {}, declared),
    );
    try {
      // Every call has sent a few bytes of its body. Once all are answered (or after 5 s, when
      // the server waits for the bodies), the unanswered ones send the rest, so the test ends.
      const early = await Promise.all(
        calls.map((call) => Promise.race([call.answered, sleep(5000).then(() => null)])),
      );
      for (const [i, answer] of early.entries()) if (!answer) calls[i]?.sendRest();
      expect(early).toEqual(
        calls.map((_, i) => ({
          status: 401,
          reason: i % 2 ? 'unknown-key' : 'missing',
          bodySent: '{"v":1,'.length,
        })),
      );
      // Nothing like a body was read: well under a kilobyte per call, headers included.
      const read = sockets.reduce((sum, socket) => sum + socket.bytesRead, 0);
      expect(read).toBeLessThan(64 * 1024);
      expect(server.procedures.stats().refused).toEqual({ 401: 64 });
    } finally {
      for (const call of calls) call.close();
    }
  });

  it('a signed body that does not arrive within the read deadline gets 408', async () => {
    const server = new CallServer(
      {
        basePath: '/_regional',
        maxBodyBytes: MAX_BODY,
        retentionMs: 86_400_000,
        debug: false,
        protocol: { min: 1, max: 1 },
        verifier: new RequestVerifier(keyring),
        bodyTimeoutMs: 50,
      },
      {
        region: 'iad',
        has: () => true,
        runProcedure: () => Promise.reject(new Error('must not run')),
        runStatement: null,
        sourceKey: async () => 'pg:1',
        refused: () => {},
      },
    );
    const headers = signed(envelope());
    // Bounded, so a server without a deadline fails the test rather than hanging it.
    const answer = await Promise.race([
      sleep(5000).then(() => null),
      server.handle({
        method: 'POST',
        path: PATH,
        header: (name) => headers[name as keyof typeof headers] ?? null,
        body: (async function* () {
          yield Buffer.from('{"v":1,');
          await new Promise(() => {}); // the rest never comes
        })(),
      }),
    ]);
    expect(answer?.status).toBe(408);
    expect(JSON.parse(answer?.body ?? '{}').error.code).toBe('REGIONAL_BODY_TIMEOUT');
  });
});

describe('rolling deploys: protocol versions', () => {
  /** An iad instance speaking `min`–`max`, and a syd caller speaking `callerMin`–`callerMax`. */
  async function pair(server: { min: number; max: number }, caller: { min: number; max: number }) {
    const instance = await app('iad', { listen: true, procedures: { protocol: server } });
    const port = await cluster.route({
      from: 'syd',
      to: 'iad',
      port: instance.port,
      name: `v${server.min}${server.max}`,
    });
    const client = await app('syd', {
      procedures: { protocol: caller, primaryUrl: `http://127.0.0.1:${port}` },
    });
    return { instance, client };
  }

  it('a newer caller talks to an older instance in the version both speak (one extra round trip, once)', async () => {
    const { instance, client } = await pair({ min: 1, max: 1 }, { min: 1, max: 2 });
    expect(await client.procedures.call('addNote', { body: 'new-to-old' })).toBe('new-to-old');
    expect(await client.procedures.call('addNote', { body: 'new-to-old-2' })).toBe('new-to-old-2');
    expect(instance.procedures.stats().refused).toEqual({ 400: 1 });
  });

  it('an older caller talks to a newer instance that still speaks its version', async () => {
    const { instance, client } = await pair({ min: 1, max: 2 }, { min: 1, max: 1 });
    expect(await client.procedures.call('addNote', { body: 'old-to-new' })).toBe('old-to-new');
    expect(instance.procedures.stats().refused).toEqual({});
  });

  it('versions that share nothing: a clear error naming both, and nothing ran', async () => {
    const before = { runs, notes: await notes() };
    const newer = await pair({ min: 1, max: 1 }, { min: 2, max: 2 });
    const error = await newer.client.procedures
      .call('addNote', { body: 'x' })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ProtocolVersionError);
    expect((error as Error).message).toMatch(
      /This instance speaks procedure protocol 2; the instance in iad .* speaks 1\./,
    );

    const older = await pair({ min: 2, max: 3 }, { min: 1, max: 1 });
    const error2 = await older.client.procedures
      .call('addNote', { body: 'y' })
      .catch((e: unknown) => e);
    expect((error2 as Error).message).toMatch(
      /speaks procedure protocol 1; the instance in iad .* speaks 2–3\./,
    );
    expect({ runs, notes: await notes() }).toEqual(before);
  });
});
