/**
 * `npm run bench:readme`: writes bench/README.md — how each benchmark measures, and the figures
 * of the last run of each — and the demo's table in README.md, from bench/results/*.json, so
 * that no figure a reader sees can drift from the results committed beside it. Runs after
 * every `npm run bench`, `npm start` and `npm run test:faults` (their npm `post` scripts);
 * bench/readme.test.ts fails when a file differs from what this produces.
 *
 *   node --conditions=regional-source --import tsx bench/readme.ts [--check]
 *
 * `--check` writes nothing and exits 1 when a file is out of date.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** The markers around the generated part of README.md. */
export const DEMO_START =
  '<!-- demo table: generated from bench/results/demo.json by bench/readme.ts (npm run bench:readme) -->';
export const DEMO_END = '<!-- end of demo table -->';

// ---------------------------------------------------------------------------------------------
// The shapes of the results, as far as this reads them. Every field may be missing: a file
// written by an older or newer benchmark still renders, with "–" where a figure is absent.

type Goals = Record<string, string | undefined>;

interface DemoRegion {
  readP50Ms?: number | null;
  readP99Ms?: number | null;
  writeP50Ms?: number | null;
  writeThenReadP50Ms?: number | null;
  staleReads?: number;
  ownWriteReads?: number;
  errors?: number;
}

interface DemoResults {
  machine?: { cpus?: number; node?: string; platform?: string };
  primaryRegion?: string;
  rttMs?: Record<string, number>;
  durationMs?: number;
  warmupMs?: number;
  readersPerRegion?: number;
  writersPerRegion?: number;
  redis?: boolean;
  deployments?: Record<
    string,
    { label?: string; linkRttP50Ms?: Record<string, number>; regions?: Record<string, DemoRegion> }
  >;
}

interface DriverFigures {
  cpuMicrosPerRead?: { raw?: number; regional?: number };
  cpuOverheadPct?: number;
  readOverheadPct?: number;
  routingMicrosPerQuery?: number;
  waitOverheadMsP50?: number;
  waitOverheadMsP99?: number;
  writeRoundTrips?: { raw?: number; regional?: number };
  unpreparedWriteRoundTrips?: { raw?: number; regional?: number };
}

interface CoreResults {
  oneWayMs?: number;
  drivers?: Record<string, DriverFigures>;
  trackerWaiters?: number;
  trackerQueriesPerPoll?: number;
  otelCpuOverheadPct?: number;
  otelNoSdkOverheadPct?: number;
  otel?: {
    otelSampledCpuOverheadPct?: number;
    otelWithoutStatementSpansCpuOverheadPct?: number;
    otelMetricsOnlyCpuOverheadPct?: number;
  };
  goals?: Goals;
}

interface HttpResults {
  samplesPerCell?: number;
  results?: {
    region: string;
    role: string;
    request: string;
    idleGapMs: number;
    regionalP50Us: number;
    regionalP90Us: number;
    referenceP50Us: number;
  }[];
}

interface PrismaResults {
  oneWayMs?: number;
  loop?: { sequences?: number; concurrency?: number };
  staleReads?: number;
  staleReadsReadReplicasExtension?: number;
  readP50Ms?: { regional?: number; readReplicasExtension?: number };
  cpuMicrosPerRead?: { prismaPg?: number; prismaRegional?: number };
  cpuOverheadPct?: number;
  transactionFromReplicaRegion?: {
    statements?: number;
    interactive?: { roundTrips?: number; p50Ms?: number };
    procedure?: { roundTrips?: number; p50Ms?: number };
    readOnlyTwoReads?: { roundTrips?: number; p50Ms?: number };
  };
  goals?: Goals;
}

interface ProceduresResults {
  iterations?: number;
  results?: {
    oneWayMs: number;
    statements: number;
    mode: string;
    medianMs: number;
    roundTrips: number;
  }[];
}

interface RedisResults {
  oneWayMs?: Record<string, number>;
  localReadP50Ms?: number;
  primaryReadP50Ms?: number;
  writeP50Ms?: number;
  writeNoAwaitP50Ms?: number;
  waitOverheadMsP50?: number;
  waitOverheadMsP99?: number;
  staleReads?: number;
  staleReadsOf?: number;
  staleReadsWithoutWaiting?: number;
  staleReadsWithoutWaitingOf?: number;
  replication5msBehind?: { staleReads?: number; staleReadsWithoutWaiting?: number; of?: number };
  trackerWaiters?: number;
  trackerQueriesPerPoll?: number;
  purgeIssuedIn?: string;
  purgeP50Ms?: Record<string, number>;
  goals?: Goals;
}

interface FaultsResults {
  runs?: number;
  durationMs?: number;
  invariants?: string[];
  scenarios?: Record<
    string,
    {
      runs?: number;
      ops?: number;
      acknowledgedWrites?: number;
      violations?: Record<string, number>;
      maxLatencyMs?: number;
      statuses?: Record<string, number>;
    }
  >;
}

export interface Results {
  demo?: DemoResults;
  core?: CoreResults;
  http?: HttpResults;
  prisma?: PrismaResults;
  procedures?: ProceduresResults;
  redis?: RedisResults;
  faults?: FaultsResults;
}

const NAMES = ['demo', 'core', 'http', 'prisma', 'procedures', 'redis', 'faults'] as const;

/** Reads bench/results/<name>.json for every result this renders (absent files are left out). */
export function readResults(root = ROOT): Results {
  const results: Record<string, unknown> = {};
  for (const name of NAMES) {
    const file = path.join(root, 'bench', 'results', `${name}.json`);
    if (existsSync(file)) results[name] = JSON.parse(readFileSync(file, 'utf8'));
  }
  return results as Results;
}

// ---------------------------------------------------------------------------------------------
// Formatting

const DASH = '–';

const num = (value: number | null | undefined, unit = ''): string =>
  value === undefined || value === null || Number.isNaN(value) ? DASH : `${value}${unit}`;

/** To 0.1 ms, as the demo prints it. */
const ms = (value: number | null | undefined): string =>
  value === undefined || value === null ? DASH : `${Math.round(value * 10) / 10} ms`;

const pct = (value: number | undefined): string => num(value, ' %');

const count = (value: number | undefined): string =>
  value === undefined ? DASH : value.toLocaleString('en-US');

const goal = (goals: Goals | undefined, key: string): string => goals?.[key] ?? '';

/** A Markdown table, its columns padded so the source reads as a table too. */
function markdownTable(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const row of rows)
    row.forEach((cell, i) => {
      widths[i] = Math.max(widths[i] ?? 3, cell.length);
    });
  const line = (row: readonly string[]) =>
    `| ${row.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join(' | ')} |`;
  const [header = [], ...body] = rows;
  return [line(header), `| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |`, ...body.map(line)]
    .join('\n')
    .concat('\n');
}

/** A plain text table (two spaces between columns), as the CLI prints them. */
function textTable(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const row of rows)
    row.forEach((cell, i) => {
      widths[i] = Math.max(widths[i] ?? 0, cell.length);
    });
  return rows
    .map((row) =>
      row
        .map((cell, i) => cell.padEnd(widths[i] ?? 0))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

const missing = (command: string) =>
  `No results committed yet: \`${command}\` writes them, and this section with them.\n`;

// ---------------------------------------------------------------------------------------------
// The demo

function staleTotals(regions: Record<string, DemoRegion> | undefined) {
  let stale = 0;
  let own = 0;
  for (const r of Object.values(regions ?? {})) {
    stale += r.staleReads ?? 0;
    own += r.ownWriteReads ?? 0;
  }
  return { stale, own };
}

/** The demo's table, as `npm start` prints it. */
export function demoTable(demo: DemoResults): string {
  const rows: string[][] = [
    [
      'deployment / region',
      'read p50',
      'read p99',
      'write p50',
      'write→read p50',
      'stale reads after own write',
    ],
  ];
  for (const [name, deployment] of Object.entries(demo.deployments ?? {})) {
    rows.push([deployment.label ?? name, '', '', '', '', '']);
    for (const [region, r] of Object.entries(deployment.regions ?? {})) {
      const own = r.ownWriteReads ?? 0;
      const rate = own > 0 ? (((r.staleReads ?? 0) / own) * 100).toFixed(1) : '0.0';
      rows.push([
        `    ${region}`,
        ms(r.readP50Ms),
        ms(r.readP99Ms),
        ms(r.writeP50Ms),
        ms(r.writeThenReadP50Ms),
        `${r.staleReads ?? 0} of ${own} (${rate}%)`,
      ]);
    }
  }
  return textTable(rows);
}

/** The run in plain words: what the table says, from its own figures. */
export function demoSummary(demo: DemoResults): string[] {
  const deployments = demo.deployments ?? {};
  const regional = deployments.regional;
  const primary = demo.primaryRegion ?? 'iad';
  if (!regional?.regions) return ['This run did not include the Regional deployment.'];
  const rtt = (region: string) =>
    demo.rttMs?.[`${primary}-${region}`] ?? demo.rttMs?.[`${region}-${primary}`] ?? 0;
  const far = Object.keys(regional.regions)
    .filter((region) => region !== primary)
    .sort((a, b) => rtt(b) - rtt(a))[0];
  const lines: string[] = [];
  if (far) {
    const ours = regional.regions[far];
    const oneRegion = deployments['one-region']?.regions?.[far];
    lines.push(
      `Readers in ${far}: ${ms(ours?.readP50Ms)} with Regional` +
        (oneRegion ? `, ${ms(oneRegion.readP50Ms)} with everything in ${primary}.` : '.'),
    );
    const link = regional.linkRttP50Ms?.[far];
    lines.push(
      `A post from ${far}: ${ms(ours?.writeP50Ms)} with Regional` +
        (link ? `, one round trip to ${primary} (${ms(link)} on the link).` : '.'),
    );
  }
  const ours = staleTotals(regional.regions);
  const alone = deployments['replicas-no-consistency'];
  const theirs = alone ? staleTotals(alone.regions) : null;
  lines.push(
    `Stale reads after own writes: ${ours.stale} of ${ours.own} with Regional` +
      (theirs ? `, ${theirs.stale} of ${theirs.own} with read replicas alone.` : '.'),
  );
  return lines;
}

/** The machine a run was made on, in words. */
function machineOf(demo: DemoResults): string {
  const m = demo.machine;
  if (!m) return 'an unnamed machine';
  return `a ${m.cpus ?? DASH}-core ${m.platform ?? ''} machine (Node ${m.node ?? DASH})`.replace(
    '  ',
    ' ',
  );
}

/** The generated part of README.md, between its markers. */
export function readmeDemoBlock(demo: DemoResults | undefined): string {
  if (!demo) return `${missing('npm start')}`;
  return [
    `One run, on ${machineOf(demo)}:`,
    '',
    '```text',
    demoTable(demo),
    '```',
    '',
    ...demoSummary(demo).map((line) => `- ${line}`),
    '',
  ].join('\n');
}

/** Replaces the part of `readme` between the demo markers with `block`. */
export function withDemoBlock(readme: string, block: string): string {
  const start = readme.indexOf(DEMO_START);
  const end = readme.indexOf(DEMO_END);
  if (start === -1 || end < start)
    throw new Error(`README.md: the demo table's markers are missing:\n${DEMO_START}\n${DEMO_END}`);
  return `${readme.slice(0, start + DEMO_START.length)}\n${block}${readme.slice(end)}`;
}

function demoSection(demo: DemoResults | undefined): string {
  const head = `## The demo: \`npm start\`

The forum in \`examples/forum\` in three simulated regions, deployed four ways under the same
workload, measured one after the other in one run: (1) app and database in the primary region
only; (2) the app in every region, the database in the primary region; (3) read replicas
without consistency (Drizzle's \`withReplicas\`); (4) Regional. Every cross-region path goes
through a link that delays each direction by half the round trip. In every region, readers
browse (the topic list, then topics) and writers post in a topic and read it straight back.

- **read p50 / p99**: time to first byte of a page or API read, per region.
- **write p50**: a post; **write→read p50**: the post, then reading the topic back.
- **stale reads after own write**: reads right after a writer's own post that did not show it.

Results: \`bench/results/demo.json\` (per deployment and region: \`readP50Ms\`, \`readP99Ms\`,
\`writeP50Ms\`, \`writeThenReadP50Ms\`, \`staleReads\`, \`ownWriteReads\`, …; per deployment,
\`linkRttP50Ms\`, the round trips measured on the links; \`goals\`, the project's thresholds)
and \`bench/results/demo.svg\`.
`;
  if (!demo) return `${head}\n${missing('npm start')}`;
  const rtt = Object.entries(demo.rttMs ?? {})
    .map(([pair, value]) => `${pair.replace('-', '–')} ${value} ms`)
    .join(', ');
  const setup =
    `Last run, on ${machineOf(demo)}: primary \`${demo.primaryRegion ?? DASH}\`; round trips ${rtt}; ` +
    `${demo.readersPerRegion ?? DASH} readers and ${demo.writersPerRegion ?? DASH} writers per region; ` +
    `${(demo.durationMs ?? 0) / 1000} s measured per deployment after ${(demo.warmupMs ?? 0) / 1000} s of warm-up` +
    `${demo.redis ? '; with Regional Redis' : ''}.`;
  return `${head}\n${setup}\n\n${readmeDemoBlock(demo)}`;
}

// ---------------------------------------------------------------------------------------------
// The benchmarks

function coreSection(core: CoreResults | undefined): string {
  const head = `## \`npm run bench -- core\`: what the drivers cost

Each driver against its own raw driver, on a real primary and replica with ${core?.oneWayMs ?? 50} ms one way
between them: \`RegionalPool\` against \`pg.Pool\`, \`RegionalPostgres\` against postgres.js.

- **Client CPU per read** (and its overhead): this process's CPU per replica read, in 250 ms
  slices whose order rotates every round, so a noisy machine's drift hits both alike; the
  overhead is the median of each round's ratio. It is the stable figure on a shared machine.
- **Reads/s lost**: throughput in the same rounds (median of each round's ratio).
- **Routing per query**: for \`pg\`, what routing adds per read with the replica pool answering
  at once (no I/O); postgres.js has no such seam, so its figure is the median CPU difference.
- **Wait beyond replay**: after a write, how long the read waited beyond the moment the replica
  had replayed the write (seen by an observer polling the replica back to back).
- **Round trips per write**: counted on the link, for one single-statement write.
- **Queries per poll**: queries reaching the replica per poll of the replay tracker with
  ${count(core?.trackerWaiters ?? 10000)} waiters.
- **OpenTelemetry**: client CPU per read with an SDK registered (exporting nowhere) against none:
  tracing every statement, sampling 10 % of traces, recording no \`regional.query\` spans (the
  sampler in docs/observability.md), and metrics only; and without \`@opentelemetry/api\`
  installed against installed without an SDK.

Results: \`bench/results/core.json\`.
`;
  if (!core?.drivers) return `${head}\n${missing('npm run bench -- core')}`;
  const names = Object.keys(core.drivers);
  const label: Record<string, string> = { pg: 'pg', postgres: 'postgres.js' };
  const d = (name: string) => core.drivers?.[name] ?? {};
  const goals = core.goals;
  const rows: string[][] = [['figure', ...names.map((n) => label[n] ?? n), 'goal']];
  const row = (figure: string, value: (f: DriverFigures) => string, goalKey = '') =>
    rows.push([figure, ...names.map((n) => value(d(n))), goal(goals, goalKey)]);
  row(
    'client CPU per read, raw → Regional',
    (f) => `${num(f.cpuMicrosPerRead?.raw)} → ${num(f.cpuMicrosPerRead?.regional)} µs`,
  );
  row('client CPU overhead', (f) => pct(f.cpuOverheadPct), 'cpuOverheadPct');
  row('reads/s lost', (f) => pct(f.readOverheadPct), 'readOverheadPct');
  row('routing per query¹', (f) => num(f.routingMicrosPerQuery, ' µs'));
  row(
    'wait beyond replay, p50 / p99',
    (f) => `${num(f.waitOverheadMsP50)} / ${num(f.waitOverheadMsP99)} ms`,
    'waitOverheadMsP50',
  );
  row(
    'round trips per write, raw → Regional',
    (f) => `${num(f.writeRoundTrips?.raw)} → ${num(f.writeRoundTrips?.regional)}`,
    'writeRoundTrips',
  );
  const unprepared = names.filter((n) => d(n).unpreparedWriteRoundTrips);
  if (unprepared.length > 0)
    row('round trips per unprepared write, raw → Regional', (f) =>
      f.unpreparedWriteRoundTrips
        ? `${num(f.unpreparedWriteRoundTrips.raw)} → ${num(f.unpreparedWriteRoundTrips.regional)}`
        : DASH,
    );
  const shared: string[][] = [['figure', 'value', 'goal']];
  shared.push([
    `tracker queries per poll, ${count(core.trackerWaiters)} waiters`,
    num(core.trackerQueriesPerPoll),
    goal(goals, 'trackerQueriesPerPoll'),
  ]);
  if (core.otelCpuOverheadPct !== undefined)
    shared.push([
      'client CPU with an OpenTelemetry SDK registered',
      pct(core.otelCpuOverheadPct),
      goal(goals, 'otelCpuOverheadPct'),
    ]);
  if (core.otel?.otelSampledCpuOverheadPct !== undefined)
    shared.push([
      'the same, sampling 10 % of traces',
      pct(core.otel.otelSampledCpuOverheadPct),
      DASH,
    ]);
  if (core.otel?.otelWithoutStatementSpansCpuOverheadPct !== undefined)
    shared.push([
      'the same, recording no `regional.query` spans (a sampler)',
      pct(core.otel.otelWithoutStatementSpansCpuOverheadPct),
      DASH,
    ]);
  if (core.otel?.otelMetricsOnlyCpuOverheadPct !== undefined)
    shared.push([
      'the same, metrics only (no tracer provider)',
      pct(core.otel.otelMetricsOnlyCpuOverheadPct),
      DASH,
    ]);
  if (core.otelNoSdkOverheadPct !== undefined)
    shared.push([
      'client CPU with @opentelemetry/api but no SDK',
      pct(core.otelNoSdkOverheadPct),
      goal(goals, 'otelNoSdkOverheadPct'),
    ]);
  const note =
    '¹ pg: timed with the replica answering at once; postgres.js: the median CPU difference per read, which noise can make negative.\n';
  return `${head}\n${markdownTable(rows)}\n${note}\n${markdownTable(shared)}`;
}

function httpSection(http: HttpResults | undefined): string {
  const head = `## \`npm run bench -- http\`: what request handling costs

Regional's handling of one request without any I/O — \`begin\` (token, replay marker, route,
positions) and the response headers — for a signed-in reader's GET carrying a token, in the
primary region and in a replica region, and for a POST in a replica region (answered with
\`fly-replay\` and a signed marker). Each is timed back to back and after the process sat idle
for 1, 5 and 20 ms between requests, as an app serving a request every few milliseconds does. A
reference task (parse and re-serialise a 1.5 KB page) is timed the same way: the idle gap slows
any code, and the reference shows by how much.

Results: \`bench/results/http.json\`.
`;
  if (!http?.results) return `${head}\n${missing('npm run bench -- http')}`;
  const rows: string[][] = [
    ['region', 'request', 'idle between requests', 'p50', 'p90', 'reference task p50'],
  ];
  for (const r of http.results) {
    rows.push([
      `${r.region} (${r.role})`,
      r.request,
      r.idleGapMs === 0 ? 'none' : `${r.idleGapMs} ms`,
      `${r.regionalP50Us} µs`,
      `${r.regionalP90Us} µs`,
      `${r.referenceP50Us} µs`,
    ]);
  }
  return `${head}\n${http.samplesPerCell ?? DASH} requests per cell.\n\n${markdownTable(rows)}`;
}

function prismaSection(prisma: PrismaResults | undefined): string {
  const head = `## \`npm run bench -- prisma\`: Prisma 7

Prisma through \`regional/prisma\` against what Prisma users have today, on a real primary and
replica ${prisma?.oneWayMs ?? 50} ms one way apart.

- **Stale reads**: an update then a \`findUnique\` of the same row in one context, from the
  replica region, ${prisma?.loop?.sequences ?? 300} times (${prisma?.loop?.concurrency ?? 50} at a time): through Regional, and through
  \`@prisma/extension-read-replicas\`, which reads the replica without waiting (its stale
  reads prove the loop can catch them).
- **Client CPU per read**: \`PrismaRegional\` against \`PrismaPg\` on a plain pool, paired as in
  \`core\`.
- **A three-statement transaction made in the replica region**: round trips on the link and
  time, as a Prisma interactive transaction on the primary, as a procedure
  (\`prismaProcedure\`), and a two-read \`readOnly\` transaction on the replica.

Results: \`bench/results/prisma.json\`.
`;
  if (!prisma || prisma.staleReads === undefined)
    return `${head}\n${missing('npm run bench -- prisma')}`;
  const goals = prisma.goals;
  const of = prisma.loop?.sequences ?? DASH;
  const rows: string[][] = [
    ['figure', 'value', 'goal'],
    ['stale reads, Regional', `${prisma.staleReads} of ${of}`, goal(goals, 'staleReads')],
    [
      'stale reads, `@prisma/extension-read-replicas`',
      `${num(prisma.staleReadsReadReplicasExtension)} of ${of}`,
      goal(goals, 'staleReadsReadReplicasExtension'),
    ],
    [
      'read p50, Regional / the extension',
      `${num(prisma.readP50Ms?.regional)} / ${num(prisma.readP50Ms?.readReplicasExtension)} ms`,
      '',
    ],
    [
      'client CPU per read, `PrismaPg` → `PrismaRegional`',
      `${num(prisma.cpuMicrosPerRead?.prismaPg)} → ${num(prisma.cpuMicrosPerRead?.prismaRegional)} µs (${pct(prisma.cpuOverheadPct)})`,
      goal(goals, 'cpuOverheadPct'),
    ],
  ];
  const t = prisma.transactionFromReplicaRegion;
  const tx: string[][] = [['transaction', 'round trips', 'p50']];
  const txRow = (name: string, f: { roundTrips?: number; p50Ms?: number } | undefined) =>
    tx.push([name, num(f?.roundTrips), num(f?.p50Ms, ' ms')]);
  txRow(`interactive, ${t?.statements ?? 3} statements, on the primary`, t?.interactive);
  txRow(`the same as a procedure`, t?.procedure);
  txRow('two reads, `readOnly`, on the replica', t?.readOnlyTwoReads);
  return `${head}\n${markdownTable(rows)}\n${markdownTable(tx)}`;
}

function proceduresSection(procedures: ProceduresResults | undefined): string {
  const head = `## \`npm run bench -- procedures\`: one round trip per transaction

A transaction of 1, 5 or 20 inserts made from a replica region, run as a procedure on a
primary-region instance and run directly over the replica region's own connection to the
primary, at 40 ms and 100 ms one way between the regions. The configurations alternate call by
call; each cell is the median of ${procedures?.iterations ?? 7} calls, with the round trips counted on the link
(replication excluded). For one statement, also a pipelined direct write (\`pool.query\`) and
a forwarded statement (\`writes: 'forward'\`).

Results: \`bench/results/procedures.json\`.
`;
  if (!procedures?.results) return `${head}\n${missing('npm run bench -- procedures')}`;
  const results = procedures.results;
  const cell = (oneWayMs: number, statements: number, mode: string) => {
    const r = results.find(
      (x) => x.oneWayMs === oneWayMs && x.statements === statements && x.mode === mode,
    );
    return r ? `${r.medianMs} ms, ${r.roundTrips} trip${r.roundTrips === 1 ? '' : 's'}` : DASH;
  };
  const pairs = [...new Set(results.map((r) => `${r.oneWayMs}/${r.statements}`))].map(
    (pair) => pair.split('/').map(Number) as [number, number],
  );
  const rows: string[][] = [
    [
      'one way',
      'statements',
      'procedure',
      'direct transaction',
      'direct `pool.query`',
      'forwarded',
    ],
  ];
  for (const [oneWay, statements] of pairs) {
    rows.push([
      `${oneWay} ms`,
      String(statements),
      cell(oneWay, statements, 'procedure'),
      cell(oneWay, statements, 'direct transaction'),
      cell(oneWay, statements, 'direct pool.query'),
      cell(oneWay, statements, 'forwarded statement'),
    ]);
  }
  return `${head}\n${markdownTable(rows)}`;
}

function redisSection(redis: RedisResults | undefined): string {
  const oneWay = Object.entries(redis?.oneWayMs ?? { syd: 50, cdg: 40 })
    .map(([region, value]) => `${region} ${value} ms`)
    .join(', ');
  const head = `## \`npm run bench -- redis\`: Regional Redis

The shared store and the regional cache on real \`redis-server\` processes, from replica regions
one way from the primary in \`iad\`: ${oneWay}.

- **Reads**: a shared-store \`GET\` served by the local replica, and the same sent to the primary.
- **Writes**: with their replication offset captured (pipelined with \`INFO replication\`), and
  with \`{ await: false }\`: capturing costs no extra round trip.
- **Wait beyond replay**: after a write, how long the read waited beyond the moment the replica
  had processed the write's offset (seen by an observer polling the replica back to back).
- **Stale reads**: write then read in one context; the same reading the replica directly; both
  again with replication held 5 ms behind the write's answer.
- **Purge**: from a purge issued in one region until the key is gone from each region's cache.

Results: \`bench/results/redis.json\`.
`;
  if (!redis || redis.localReadP50Ms === undefined)
    return `${head}\n${missing('npm run bench -- redis')}`;
  const goals = redis.goals;
  const behind = redis.replication5msBehind;
  const purge = Object.entries(redis.purgeP50Ms ?? {})
    .map(([region, value]) => `${region} ${value}`)
    .join(' / ');
  const rows: string[][] = [
    ['figure', 'value', 'goal'],
    ['read served by the local replica, p50', num(redis.localReadP50Ms, ' ms'), ''],
    ['the same read sent to the primary, p50', num(redis.primaryReadP50Ms, ' ms'), ''],
    [
      'write with its offset / with `{ await: false }`, p50',
      `${num(redis.writeP50Ms)} / ${num(redis.writeNoAwaitP50Ms)} ms`,
      '',
    ],
    [
      'wait beyond replay, p50 / p99',
      `${num(redis.waitOverheadMsP50)} / ${num(redis.waitOverheadMsP99)} ms`,
      goal(goals, 'waitOverheadMsP50'),
    ],
    [
      'stale reads: write then read in one context',
      `${num(redis.staleReads)} of ${num(redis.staleReadsOf)}`,
      goal(goals, 'staleReads'),
    ],
    [
      'the same, reading the replica directly',
      `${num(redis.staleReadsWithoutWaiting)} of ${num(redis.staleReadsWithoutWaitingOf)}`,
      goal(goals, 'staleReadsWithoutWaiting'),
    ],
    [
      'both, replication 5 ms behind the answers',
      `${num(behind?.staleReads)} / ${num(behind?.staleReadsWithoutWaiting)} of ${num(behind?.of)}`,
      '',
    ],
    [
      `tracker queries per poll, ${count(redis.trackerWaiters)} waiters`,
      num(redis.trackerQueriesPerPoll),
      '',
    ],
    [`purge issued in ${redis.purgeIssuedIn ?? DASH}, gone in (p50)`, `${purge} ms`, ''],
  ];
  return `${head}\n${markdownTable(rows)}`;
}

function faultsSection(faults: FaultsResults | undefined): string {
  const head = `## \`npm run test:faults\`: the fault suite

Not a benchmark but a judged run (\`npm test\` runs it last): a small app wired the way the
README says, in three regions behind the local edge on a local cluster, with clients that write
unique values and read them back. Each scenario injects one fault mid-run and heals it; a
checker then judges the recorded history against the promises — no acknowledged write lost, no
duplicate, read-your-writes, monotonic reads, bounded waiting, clear errors, no app crash. The
last scenario, \`naive\`, runs the same workload on plain replica routing: its violations prove
the checker can fail. What each fault does: [docs/features/failures.md](../docs/features/failures.md).

Results: \`bench/results/faults.json\`.
`;
  if (!faults?.scenarios) return `${head}\n${missing('npm run test:faults')}`;
  const rows: string[][] = [
    ['scenario', 'runs', 'operations', 'acknowledged writes', 'violations', 'slowest', 'answers'],
  ];
  for (const [name, s] of Object.entries(faults.scenarios)) {
    const violations = Object.entries(s.violations ?? {}).filter(([, n]) => n > 0);
    rows.push([
      `\`${name}\``,
      num(s.runs),
      num(s.ops),
      num(s.acknowledgedWrites),
      violations.length === 0 ? '0' : violations.map(([k, n]) => `${n} ${k}`).join(', '),
      num(s.maxLatencyMs, ' ms'),
      Object.entries(s.statuses ?? {})
        .map(([status, n]) => `${n}× ${status}`)
        .join(', '),
    ]);
  }
  const total = faults.durationMs ? ` in ${Math.round(faults.durationMs / 1000)} s` : '';
  return `${head}\nLast run: ${Object.keys(faults.scenarios).length} scenarios${total}.\n\n${markdownTable(rows)}`;
}

/** bench/README.md, from the results. */
export function renderBenchReadme(results: Results): string {
  return [
    `<!-- Generated by bench/readme.ts from bench/results/*.json: edit those, not this file (npm run bench:readme). -->

# Benchmarks

A benchmark is not a test: tests assert behaviour; benchmarks print figures, write them to
\`bench/results/<name>.json\` and compare configurations side by side in one run, because
absolute times on a shared machine drift. Each benchmark starts its own real servers (a Postgres
primary and replicas, \`redis-server\` where needed) with simulated latency between regions, on
loopback only. Goals, where a figure has one, are kept in the results' \`goals\` and shown beside
the figures; a figure past its goal on a slow machine says more about the machine than about
Regional.

\`\`\`sh
npm start                       # the demo
npm run bench -- core           # or http, prisma, procedures, redis
npm run test:faults             # the fault suite
npm run bench:readme            # this file, from bench/results (each of the above runs it)
\`\`\`
`,
    demoSection(results.demo),
    coreSection(results.core),
    httpSection(results.http),
    prismaSection(results.prisma),
    proceduresSection(results.procedures),
    redisSection(results.redis),
    faultsSection(results.faults),
  ].join('\n');
}

/** Every file this generates, with the content it should have. */
export function expectedFiles(root = ROOT): { file: string; content: string }[] {
  const results = readResults(root);
  const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
  return [
    { file: 'bench/README.md', content: renderBenchReadme(results) },
    { file: 'README.md', content: withDemoBlock(readme, readmeDemoBlock(results.demo)) },
  ];
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const check = process.argv.includes('--check');
  let stale = 0;
  for (const { file, content } of expectedFiles()) {
    const target = path.join(ROOT, file);
    if (existsSync(target) && readFileSync(target, 'utf8') === content) continue;
    stale++;
    if (check) process.stderr.write(`${file} is out of date: run npm run bench:readme\n`);
    else {
      writeFileSync(target, content);
      process.stderr.write(`bench:readme: wrote ${file}\n`);
    }
  }
  if (check && stale > 0) process.exit(1);
}
