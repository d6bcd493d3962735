/**
 * `npm run bench -- http`: what Regional's request handling costs per request — `begin` (token,
 * replay marker, route, positions) and `responseHeaders` — in the primary region and in a
 * replica region, for a signed-in reader's GET with a token, and for a POST in the replica
 * region (`begin` and its fly-replay answer, with a signed marker); back to back, and after the
 * process sat idle for 1, 5 and 20 ms between requests (the demo's apps see a request every
 * few to tens of milliseconds).
 *
 * No I/O: the sources are in-memory and know their replica has every position, as a warm
 * replica region's do. A reference task (parse and re-serialise a 1.5 KB topic page) is timed
 * after the same idle gaps, to tell what the gap does to any code from what it does to Regional's.
 */
import os from 'node:os';
import type { ReplicatedSource } from '../src/core/source.js';
import { RegionalHttp } from '../src/http/regional-http.js';
import type { RequestView } from '../src/http/request-state.js';
import { encodeToken } from '../src/http/token.js';
import { percentile, printTable, progress, round, writeResults } from './support/report.js';

const GAPS_MS = [0, 1, 5, 20];
const SAMPLES = 150;
const ROUNDS = 2;

const source = (key: string, checksOnRead: boolean): ReplicatedSource => ({
  sourceKey: async () => key,
  waitFor: async () => 0,
  hasReplayed: () => true,
  checksOnRead,
});

function regionalIn(region: string): { handle: () => Promise<void>; write: () => Promise<void> } {
  const http = new RegionalHttp({
    region,
    primaryRegion: 'iad',
    secret: '1054f7c72280a734960860374c376be9b5521617ba6940a8e1e2cf78be1d6f98',
    mode: 'fly-replay',
    sources: [source('pg:7301', true), source('redis:primary', false)],
    primaryOnlyPaths: ['/api/topics/*/posts'],
    health: false,
    onWarning: () => {},
  });
  const keyring = http.settings.keyring;
  if (!keyring) throw new Error('bench: the keyring is missing');
  const token = encodeToken(
    keyring,
    [
      ['pg:7301', 0x16b374d848n],
      ['redis:primary', 81_234n],
    ],
    600,
  );
  const headers: Record<string, string> = {
    host: '127.0.0.1:4000',
    accept: 'application/json',
    cookie: `forum_session=Zm9ydW0tc2Vzc2lvbi10b2tlbi0wMTIzNDU2; ${http.settings.cookie.name}=${token}`,
  };
  const view: RequestView = {
    method: 'GET',
    path: '/api/topics/17',
    header: (name) => headers[name],
    https: false,
  };
  const post: RequestView = { ...view, method: 'POST', path: '/api/topics' };
  return {
    async handle() {
      const state = await http.begin(view);
      if (state.action !== 'run' || state.context.entries().length !== 2)
        throw new Error(`bench: expected to run with the token's positions in ${region}`);
      http.responseHeaders(state);
    },
    /** A write arriving in a replica region: its fly-replay answer, with a signed marker. */
    async write() {
      const state = await http.begin(post);
      if (state.action !== 'replay') throw new Error(`bench: expected a replay in ${region}`);
      const answer = await http.replay(state, { headers: [], body: () => null });
      if (answer.status !== 409) throw new Error('bench: expected a fly-replay answer');
    },
  };
}

const page = JSON.stringify({
  id: 17,
  title: 'Topic 17: Replication',
  posts: Array.from({ length: 10 }, (_, i) => ({
    id: 170 + i,
    body: `Post ${i} in topic 17. ${'Lorem ipsum dolor sit amet. '.repeat(1 + (i % 4))}`,
    createdAt: new Date(1_790_000_000_000 + i * 1000).toISOString(),
  })),
});
const reference = async () => {
  if (JSON.stringify(JSON.parse(page)).length !== page.length) throw new Error('bench: reference');
};

const idle = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Microseconds per call of `task`, each after `gapMs` idle (0: back to back). */
async function timed(task: () => Promise<void>, gapMs: number, samples: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < samples; i++) {
    if (gapMs > 0) await idle(gapMs);
    const started = performance.now();
    await task();
    out.push((performance.now() - started) * 1000);
  }
  return out;
}

export async function run(): Promise<void> {
  const iad = regionalIn('iad');
  const cdg = regionalIn('cdg');
  const cases = [
    { region: 'iad', request: 'GET with a token', task: iad.handle },
    { region: 'cdg', request: 'GET with a token', task: cdg.handle },
    { region: 'cdg', request: 'POST, answered with fly-replay', task: cdg.write },
  ] as const;
  progress('warming up: 20,000 requests per case');
  for (const { task } of cases) await timed(task, 0, 20_000);
  await timed(reference, 0, 20_000);

  const samples = new Map<string, { regional: number[]; reference: number[] }>();
  for (let round = 0; round < ROUNDS; round++) {
    // Alternate the order per round, so that a drift of the machine does not favour one case.
    const ordered = round % 2 === 0 ? cases : [...cases].reverse();
    for (const gapMs of GAPS_MS) {
      progress(`round ${round + 1}/${ROUNDS}: ${gapMs} ms idle between requests`);
      for (const { region, request, task } of ordered) {
        const key = `${region} ${request} ${gapMs}`;
        const entry = samples.get(key) ?? { regional: [], reference: [] };
        entry.regional.push(...(await timed(task, gapMs, SAMPLES)));
        entry.reference.push(...(await timed(reference, gapMs, SAMPLES / 3)));
        samples.set(key, entry);
      }
    }
  }

  const results = GAPS_MS.flatMap((gapMs) =>
    cases.map(({ region, request }) => {
      const { regional, reference } = samples.get(`${region} ${request} ${gapMs}`) as {
        regional: number[];
        reference: number[];
      };
      return {
        region,
        role: region === 'iad' ? 'primary' : 'replica',
        request,
        idleGapMs: gapMs,
        requests: regional.length,
        regionalP50Us: round(percentile(regional, 50), 1),
        regionalP90Us: round(percentile(regional, 90), 1),
        referenceP50Us: round(percentile(reference, 50), 1),
      };
    }),
  );
  printTable("Regional's request handling per request, no I/O", [
    ['region', 'request', 'idle between requests', 'p50', 'p90', 'reference task p50'],
    ...results.map((r) => [
      `${r.region} (${r.role})`,
      r.request,
      r.idleGapMs === 0 ? 'none' : `${r.idleGapMs} ms`,
      `${r.regionalP50Us} µs`,
      `${r.regionalP90Us} µs`,
      `${r.referenceP50Us} µs`,
    ]),
  ]);
  writeResults('http', {
    generatedAt: new Date().toISOString(),
    machine: { cpus: os.cpus().length, node: process.version },
    samplesPerCell: SAMPLES * ROUNDS,
    results,
  });
}
