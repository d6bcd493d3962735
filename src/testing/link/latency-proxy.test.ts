import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { LatencyProxy } from './latency-proxy.js';

/** An echo server that answers each chunk at once. */
async function echoServer(): Promise<net.Server & { port: number }> {
  const server = net.createServer((socket) => {
    socket.setNoDelay(true);
    socket.on('error', () => {});
    socket.pipe(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return Object.assign(server, { port: (server.address() as net.AddressInfo).port });
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1', noDelay: true }, () => resolve(socket));
    socket.once('error', reject);
  });
}

/** Sends `payload` and resolves with the milliseconds until it has all come back. */
function roundTrip(socket: net.Socket, payload: Buffer): Promise<{ ms: number; echoed: Buffer }> {
  return new Promise((resolve) => {
    const started = performance.now();
    const parts: Buffer[] = [];
    let received = 0;
    const onData = (chunk: Buffer) => {
      parts.push(chunk);
      received += chunk.length;
      if (received >= payload.length) {
        socket.off('data', onData);
        resolve({ ms: performance.now() - started, echoed: Buffer.concat(parts) });
      }
    };
    socket.on('data', onData);
    socket.write(payload);
  });
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function setup(oneWayMs: number) {
  const echo = await echoServer();
  const proxy = new LatencyProxy({ name: 'test', targetPort: echo.port, oneWayMs });
  await proxy.listen();
  cleanups.push(() => new Promise<void>((resolve) => echo.close(() => resolve())));
  cleanups.push(() => proxy.close());
  return { echo, proxy };
}

describe('LatencyProxy', () => {
  it('delays each direction by the one-way time, and the first exchange by the handshake too', async () => {
    const { proxy } = await setup(30);
    const socket = await connect(proxy.port);
    cleanups.push(() => void socket.destroy());
    const first = await roundTrip(socket, Buffer.from('hello'));
    // A new connection pays the TCP handshake round trip before its first request crosses.
    expect(first.ms).toBeGreaterThanOrEqual(4 * 30 - 1);
    const second = await roundTrip(socket, Buffer.from('again'));
    expect(second.ms).toBeGreaterThanOrEqual(2 * 30 - 1);
    expect(second.echoed.toString()).toBe('again');
  });

  it('keeps large transfers intact and in order', async () => {
    const { proxy } = await setup(5);
    const socket = await connect(proxy.port);
    cleanups.push(() => void socket.destroy());
    const payload = randomBytes(12 * 1024 * 1024);
    const { echoed } = await roundTrip(socket, payload);
    expect(echoed.equals(payload)).toBe(true);
  });

  it('applies a changed delay to traffic from then on', async () => {
    const { proxy } = await setup(5);
    const socket = await connect(proxy.port);
    cleanups.push(() => void socket.destroy());
    await roundTrip(socket, Buffer.from('warm up'));
    proxy.setDelay(60);
    const slow = await roundTrip(socket, Buffer.from('x'));
    expect(slow.ms).toBeGreaterThanOrEqual(2 * 60 - 1);
  });

  it('counts round trips: one per request flight, however many chunks it has', async () => {
    const { proxy } = await setup(1);
    const socket = await connect(proxy.port);
    cleanups.push(() => void socket.destroy());
    for (let i = 0; i < 5; i++) await roundTrip(socket, Buffer.from(`request ${i}`));
    expect(proxy.stats().roundTrips).toBe(5);
    expect(proxy.stats().connections).toBe(1);
    proxy.resetStats();
    expect(proxy.stats().roundTrips).toBe(0);
  });

  it('hang cut: nothing crosses until restored, then held traffic is delivered', async () => {
    const { proxy } = await setup(1);
    const socket = await connect(proxy.port);
    cleanups.push(() => void socket.destroy());
    await roundTrip(socket, Buffer.from('before'));
    await proxy.cut('hang');
    let answered = false;
    const pending = roundTrip(socket, Buffer.from('during')).then((r) => {
      answered = true;
      return r;
    });
    // A new connection is accepted but hangs too.
    const late = await connect(proxy.port);
    cleanups.push(() => void late.destroy());
    const latePending = roundTrip(late, Buffer.from('late'));
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(answered).toBe(false);
    await proxy.restore();
    expect((await pending).echoed.toString()).toBe('during');
    expect((await latePending).echoed.toString()).toBe('late');
  });

  it('refuse cut: open connections are reset, new ones refused; restore accepts again', async () => {
    const { proxy } = await setup(1);
    const socket = await connect(proxy.port);
    const closed = new Promise<string>((resolve) => {
      socket.on('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? 'error'));
      socket.on('close', () => resolve('closed'));
    });
    await proxy.cut('refuse');
    expect(await closed).toBe('ECONNRESET');
    await expect(connect(proxy.port)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    await proxy.restore();
    const again = await connect(proxy.port);
    cleanups.push(() => void again.destroy());
    expect((await roundTrip(again, Buffer.from('back'))).echoed.toString()).toBe('back');
  });

  it('passes a close through after the data sent before it', async () => {
    const { proxy } = await setup(20);
    const socket = await connect(proxy.port);
    const received: Buffer[] = [];
    const ended = new Promise<void>((resolve) => socket.on('end', resolve));
    socket.on('data', (chunk: Buffer) => received.push(chunk));
    socket.end('last words');
    await ended;
    expect(Buffer.concat(received).toString()).toBe('last words');
  });

  it('rejects a negative delay', () => {
    expect(() => new LatencyProxy({ name: 'bad', targetPort: 1, oneWayMs: -1 })).toThrow(
      /oneWayMs must be/,
    );
  });
});
