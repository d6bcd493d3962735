import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { ReplicationTimeoutError, ReplicaUnavailableError } from './errors.js';
import { ReplayTracker } from './tracker.js';

/** A replica stand-in whose replay position the test moves by hand (the tracker is generic). */
function replica(start = 0n) {
  const state = { position: start, polls: 0, fail: null as Error | null, hang: false };
  const poll = async (signal: AbortSignal) => {
    state.polls++;
    if (state.hang) {
      await new Promise((_, reject) =>
        signal.addEventListener('abort', () => reject(new Error('aborted'))),
      );
    }
    if (state.fail) throw state.fail;
    return state.position;
  };
  return { state, poll };
}

describe('ReplayTracker', () => {
  it('does not poll while nobody waits, and stops once every waiter is satisfied', async () => {
    const r = replica();
    const tracker = new ReplayTracker({ name: 'test', poll: r.poll });
    await sleep(30);
    expect(r.state.polls).toBe(0);
    const waiting = tracker.waitFor(5n, 1000);
    await sleep(20);
    r.state.position = 5n;
    expect(await waiting).toBeGreaterThan(0);
    const pollsAfter = r.state.polls;
    await sleep(30);
    expect(r.state.polls).toBe(pollsAfter);
  });

  it('resolves every waiter at or below the replayed position from one poll', async () => {
    const r = replica();
    const tracker = new ReplayTracker({ name: 'test', poll: r.poll, minIntervalMs: 20 });
    const order: bigint[] = [];
    const waits = [3n, 1n, 2n, 10n].map((target) =>
      tracker.waitFor(target, 2000).then(() => order.push(target)),
    );
    await sleep(5);
    r.state.position = 3n;
    const pollsBefore = r.state.polls;
    while (order.length < 3) await sleep(1);
    expect(r.state.polls - pollsBefore).toBe(1);
    expect(order.sort()).toEqual([1n, 2n, 3n]);
    r.state.position = 10n;
    await Promise.all(waits);
    expect(tracker.stats()).toMatchObject({
      waits: 4,
      resolved: 4,
      timeouts: 0,
      waiting: 0,
      maxWaiting: 4,
    });
  });

  it('ten thousand waiters cost what one does: one poll resolves them all', async () => {
    const r = replica();
    const tracker = new ReplayTracker({ name: 'test', poll: r.poll });
    const waits = Array.from({ length: 10_000 }, (_, i) => tracker.waitFor(BigInt(i % 100), 5000));
    await sleep(10);
    const pollsBefore = r.state.polls;
    r.state.position = 100n;
    await Promise.all(waits);
    expect(r.state.polls - pollsBefore).toBeLessThanOrEqual(1);
    expect(tracker.stats().maxWaiting).toBe(10_000);
  });

  it('answers at once, without polling, what it already knows is replayed', async () => {
    const r = replica(50n);
    const tracker = new ReplayTracker({ name: 'test', poll: r.poll });
    await tracker.waitFor(50n, 1000);
    const polls = r.state.polls;
    expect(tracker.hasReplayed(40n)).toBe(true);
    expect(await tracker.waitFor(40n, 1000)).toBe(0);
    expect(r.state.polls).toBe(polls);
    expect(tracker.stats().immediate).toBe(1);
  });

  it('learns positions seen elsewhere: later checks need no poll, and waiters at or below them resolve', async () => {
    const r = replica();
    // Polls far apart, so only observe() can resolve the first waiter in time.
    const tracker = new ReplayTracker({ name: 'test', poll: r.poll, minIntervalMs: 5_000 });
    const low = tracker.waitFor(4n, 2000);
    const high = tracker.waitFor(9n, 2000);
    let highDone = false;
    void high.then(() => (highDone = true));
    await sleep(5);
    tracker.observe(5n);
    expect(await low).toBeGreaterThanOrEqual(0);
    expect(highDone).toBe(false);
    expect(tracker.hasReplayed(5n)).toBe(true);
    expect(tracker.hasReplayed(6n)).toBe(false);
    tracker.observe(3n); // an older sighting changes nothing
    expect(tracker.known).toBe(5n);
    tracker.observe(9n);
    await high;
    expect(tracker.stats()).toMatchObject({ resolved: 2, timeouts: 0, waiting: 0 });
  });

  it('gives each waiter its own deadline', async () => {
    const r = replica(1n);
    const tracker = new ReplayTracker({ name: 'test', poll: r.poll, format: (p) => `#${p}` });
    const short = tracker.waitFor(9n, 30);
    const long = tracker.waitFor(9n, 2000);
    await expect(short).rejects.toBeInstanceOf(ReplicationTimeoutError);
    await expect(short).rejects.toThrow(
      /did not replay position #9 within 30 ms \(it had reached #1\)/,
    );
    r.state.position = 9n;
    await expect(long).resolves.toBeGreaterThan(0);
    expect(tracker.stats()).toMatchObject({ timeouts: 1, resolved: 1 });
  });

  it('a failing poll ends every wait with ReplicaUnavailableError, and the next wait polls again', async () => {
    const r = replica();
    const tracker = new ReplayTracker({ name: 'the test replica', poll: r.poll });
    r.state.fail = new Error('connection refused');
    // Settled together: each has its handler before either fails.
    const waits = await Promise.allSettled([tracker.waitFor(5n, 5000), tracker.waitFor(6n, 5000)]);
    for (const wait of waits) {
      expect(wait.status).toBe('rejected');
      const reason = (wait as PromiseRejectedResult).reason;
      expect(reason).toBeInstanceOf(ReplicaUnavailableError);
      expect((reason as Error).message).toMatch(/the test replica: connection refused/);
    }
    r.state.fail = null;
    r.state.position = 5n;
    await expect(tracker.waitFor(5n, 1000)).resolves.toBeGreaterThanOrEqual(0);
    expect(tracker.stats()).toMatchObject({ failures: 2, pollErrors: 1 });
  });

  it('a poll that hangs fails after pollTimeoutMs instead of hanging its waiters', async () => {
    const r = replica();
    r.state.hang = true;
    const tracker = new ReplayTracker({ name: 'test', poll: r.poll, pollTimeoutMs: 50 });
    await expect(tracker.waitFor(5n, 5000)).rejects.toThrow(/no answer within 50 ms/);
  });
});
