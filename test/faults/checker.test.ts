import { describe, expect, it } from 'vitest';
import { check, examples, INVARIANTS } from './checker.js';
import type { FinalState, Op } from './history.js';

/** Small synthetic histories: each invariant must be able to fail, and to hold. */
let clock = 0;
function op(fields: Partial<Op> & Pick<Op, 'kind'>): Op {
  clock += 10;
  return {
    client: 'c0',
    region: 'syd',
    invoke: clock,
    complete: clock + 5,
    status: fields.kind === 'read' ? 200 : 201,
    servedBy: 'syd',
    ...(fields.kind === 'read' ? { body: {}, mine: [], maxId: 0 } : { body: { id: 1 } }),
    ...fields,
  };
}
const write = (value: string, fields: Partial<Op> = {}) => op({ kind: 'write', value, ...fields });
const call = (value: string, fields: Partial<Op> = {}) =>
  op({ kind: 'call', value, key: `k-${value}`, attempt: 1, ...fields });
const read = (mine: string[], maxId: number, fields: Partial<Op> = {}) =>
  op({ kind: 'read', mine, maxId, body: { mine, maxId, count: mine.length }, ...fields });

const state = (items: string[], audit: string[] = []): FinalState => ({
  items: items.map((value) => ({ value, client: value.split('-')[0] as string })),
  audit,
});
const judge = (history: Op[], final: FinalState, extra = {}) =>
  check(history, final, { boundMs: 1000, slackMs: 500, ...extra });

describe('the fault checker', () => {
  it('finds nothing wrong in a clean history', () => {
    const history = [
      write('c0-0'),
      read(['c0-0'], 1),
      call('c0-2'),
      read(['c0-0', 'c0-2'], 2),
      op({
        kind: 'write',
        value: 'c0-4',
        status: 503,
        body: { error: { code: 'X', message: 'm' } },
      }),
      read(['c0-0', 'c0-2'], 2),
    ];
    const { violations, all } = judge(history, state(['c0-0', 'c0-2'], ['c0-2']));
    expect(all).toEqual([]);
    expect(Object.values(violations).every((n) => n === 0)).toBe(true);
    expect(Object.keys(violations)).toEqual([...INVARIANTS]);
  });

  it('lostWrite: an acknowledged value missing on the primary; an unacknowledged one may be', () => {
    const history = [
      write('c0-0'),
      write('c0-1', { status: 502 }),
      call('c0-2'),
      call('c0-3', { status: null }),
    ];
    const { violations, all } = judge(history, state(['c0-0'], []));
    expect(violations.lostWrite).toBe(1);
    expect(all.find((v) => v.invariant === 'lostWrite')?.message).toContain('c0-2');
  });

  it('duplicate: a value twice, or a call with only one of its two effects', () => {
    const history = [write('c0-0'), call('c0-1'), call('c0-2'), call('c0-3'), call('c0-4')];
    const final = state(
      ['c0-0', 'c0-0', 'c0-1', 'c0-2', 'c0-3', 'c0-4', 'c0-4'],
      ['c0-1', 'c0-3', 'c0-3', 'c0-4', 'c0-4'],
    );
    const { violations, all } = judge(history, final);
    // c0-0 twice; c0-2 item without audit; c0-3 two audits for one item; c0-4 ran twice (both effects).
    expect(violations.duplicate).toBe(4);
    expect(all.map((v) => v.message.split(':')[0])).toEqual(['c0-0', 'c0-2', 'c0-3', 'c0-4']);
    // An audit row without its item is a partial effect too, even of a call nobody saw answered.
    expect(judge([], state([], ['c9-9'])).violations.duplicate).toBe(1);
  });

  it('readYourWrites: a read after an acknowledged write of the same client that misses it', () => {
    const w = write('c0-0');
    const concurrent = read([], 0, { invoke: w.complete - 1 }); // sent before the write completed
    const stale = read([], 0);
    const otherClient = read([], 0, { client: 'c1' });
    const failedWrite = write('c0-1', { status: 500, body: { error: { code: 'E' } } });
    const afterFailed = read(['c0-0'], 1);
    const { violations, all } = judge(
      [w, concurrent, stale, otherClient, failedWrite, afterFailed],
      state(['c0-0']),
    );
    expect(violations.readYourWrites).toBe(1);
    expect(all.find((v) => v.invariant === 'readYourWrites')?.message).toMatch(/misses 1 .*c0-0/);
    // Across regions: the client wrote through syd, then reads through iad.
    const moved = [write('c0-0'), read([], 0, { region: 'iad', servedBy: 'iad' })];
    expect(judge(moved, state(['c0-0'])).violations.readYourWrites).toBe(1);
  });

  it('monotonicReads: a smaller maxId, or a value seen before gone; failed reads do not count', () => {
    const other = (mine: string[], maxId: number) => read(mine, maxId, { client: 'c1' });
    const history = [
      other([], 5),
      other([], 7),
      other([], 0), // maxId went back from 7
      read(['c0-0'], 3),
      op({ kind: 'read', status: 503, body: { error: { code: 'R' } } }),
      read([], 3), // c0-0 gone
      read(['c0-0'], 9),
    ];
    const { violations, all } = judge(history, state(['c0-0']));
    expect(violations.monotonicReads).toBe(2);
    expect(all.filter((v) => v.invariant === 'monotonicReads').map((v) => v.message)).toEqual([
      expect.stringMatching(/maxId 0 < 7/),
      expect.stringMatching(/1 value\(s\) seen before are gone, e\.g\. c0-0/),
    ]);
  });

  it('boundedWait: writes and calls may have a bound of their own', () => {
    const history = [
      read([], 0, { invoke: 0, complete: 2000 }),
      write('c0-0', { invoke: 0, complete: 2000 }),
      call('c0-1', { invoke: 0, complete: 4001 }),
    ];
    const { violations, all } = judge(history, state(['c0-0', 'c0-1'], ['c0-1']), {
      writeBoundMs: 3500,
    });
    expect(violations.boundedWait).toBe(2);
    expect(all.map((v) => v.message.split(':')[0])).toEqual([
      '2000 ms > 1500 ms',
      '4001 ms > 4000 ms',
    ]);
  });

  it('boundedWait: an answer later than bound + slack, or none at all', () => {
    const history = [
      read([], 0, { invoke: 0, complete: 1500 }), // exactly at the limit: fine
      read([], 0, { invoke: 0, complete: 1501 }),
      op({
        kind: 'write',
        value: 'c0-1',
        status: null,
        timedOut: true,
        error: 'no answer within 20000 ms',
      }),
      op({ kind: 'write', value: 'c0-2', status: null, error: 'ECONNRESET: socket hang up' }),
    ];
    const { violations, all } = judge(history, state([]));
    expect(violations.boundedWait).toBe(2);
    expect(all.filter((v) => v.invariant === 'boundedWait').map((v) => v.message)).toEqual([
      expect.stringMatching(/^1501 ms > 1500 ms/),
      expect.stringMatching(/^no answer at all \(a hang\)/),
    ]);
  });

  it('errorQuality: app errors need JSON with error.code; nothing may show a stack, an internal URL or a secret', () => {
    const bad = [
      op({
        kind: 'write',
        value: 'a',
        status: 500,
        body: undefined,
        text: 'Internal Server Error',
      }),
      op({ kind: 'write', value: 'b', status: 502, body: { error: 'no code' } }),
      op({
        kind: 'read',
        status: 500,
        body: { error: { code: 'E', message: 'x\n    at f (file.ts:1:1)' } },
      }),
      op({
        kind: 'read',
        status: 200,
        body: { mine: [], note: 'postgres://u:p@127.0.0.1:5432/db' },
      }),
      op({
        kind: 'read',
        status: 503,
        body: { error: { code: 'E', message: 'see http://127.0.0.1:4321' } },
      }),
      op({ kind: 'read', status: 503, body: { error: { code: 'E', message: 'hunter2hunter2' } } }),
      // The edge's own answer: its form is not judged, what it shows is.
      op({
        kind: 'read',
        status: 502,
        servedBy: undefined,
        body: undefined,
        text: 'Error\n    at edge.ts:1',
      }),
    ];
    const good = [
      op({ kind: 'read', status: 503, body: { error: { code: 'REGIONAL_X', message: 'clear' } } }),
      op({
        kind: 'read',
        status: 502,
        servedBy: undefined,
        body: undefined,
        text: 'edge: the app in iad did not answer: connect ECONNREFUSED 127.0.0.1:1234',
      }),
      op({ kind: 'write', value: 'c', status: null, error: 'ECONNRESET' }),
    ];
    const { violations, all } = judge([...bad, ...good], state(['a', 'b', 'c']), {
      secrets: ['hunter2hunter2'],
    });
    expect(violations.errorQuality).toBe(bad.length);
    expect(
      all.filter((v) => v.invariant === 'errorQuality').map((v) => v.message.split(':')[0]),
    ).toEqual([
      'not JSON with error.code',
      'not JSON with error.code',
      'shows a stack trace',
      'shows an internal URL (postgres',
      'shows an internal URL (http',
      'shows a secret',
      'shows a stack trace',
    ]);
  });

  it('unavailable: with nothing broken, every request that did not succeed', () => {
    const history = [
      write('c0-0'),
      call('c0-1', { status: 500 }),
      read([], 0, { status: null, timedOut: true }),
    ];
    expect(judge(history, state(['c0-0']), { expectAvailable: true }).violations.unavailable).toBe(
      2,
    );
    // Under a fault, failing clearly is allowed.
    expect(judge(history, state(['c0-0'])).violations.unavailable).toBe(0);
  });

  it('appCrash: every instance that exited by itself', () => {
    const crash = { region: 'iad', code: 1, signal: null, at: 2500, lastOutput: 'a\nError: boom' };
    const { violations, all } = judge([], state([]), {
      crashes: [crash, { ...crash, region: 'syd' }],
    });
    expect(violations.appCrash).toBe(2);
    expect(all[0]?.message).toBe(
      'the iad instance exited by itself at 2.50s (code 1); its output: Error: boom',
    );
    const quiet = { ...crash, lastOutput: '1\n2\n3\n4\n5\n6' };
    expect(judge([], state([]), { crashes: [quiet] }).all[0]?.message).toMatch(
      /its output: 2 \| 3 \| 4 \| 5 \| 6$/,
    );
  });

  it('examples: each kind of violation of an invariant before a second of the same kind', () => {
    const v = (kind: string, i: number) => ({
      invariant: 'errorQuality' as const,
      message: `${kind} ${i}`,
      kind,
    });
    const picked = examples([v('a', 0), v('a', 1), v('a', 2), v('b', 0), v('c', 0)], 4);
    expect(picked.map((e) => e.message)).toEqual(['a 0', 'b 0', 'c 0', 'a 1']);
  });

  it('examples: a few of each invariant in turn', () => {
    const v = (invariant: (typeof INVARIANTS)[number], n: number) =>
      Array.from({ length: n }, (_, i) => ({ invariant, message: `${invariant} ${i}` }));
    const picked = examples([...v('lostWrite', 4), ...v('boundedWait', 4), ...v('appCrash', 1)], 5);
    expect(picked.map((e) => e.message)).toEqual([
      'lostWrite 0',
      'boundedWait 0',
      'appCrash 0',
      'lostWrite 1',
      'boundedWait 1',
    ]);
  });
});
