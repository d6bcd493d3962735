import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { table } from '../../../src/cli/shared.js';
import type { Deployment } from './deployments.js';
import type { RegionSample } from './workload.js';

/**
 * One deployment's figures in one region, as `bench/results/demo.json` holds them. A percentile
 * is `null` where the run had nothing to measure (no readers, or no writers).
 */
export interface RegionFigures {
  readP50Ms: number | null;
  readP99Ms: number | null;
  writeP50Ms: number | null;
  writeThenReadP50Ms: number | null;
  /** Time the reads after own writes waited for replication (Server-Timing; 0 outside Regional). */
  ownWriteWaitP50Ms: number | null;
  ownWriteWaitP99Ms: number | null;
  staleReads: number;
  ownWriteReads: number;
  staleRate: number;
  reads: number;
  writes: number;
  errors: number;
  errorSamples: string[];
}

export interface DeploymentFigures {
  name: Deployment['name'];
  label: string;
  /**
   * One round trip from each replica region to the primary region, as measured on the
   * simulated link during this deployment's run (p50, ms): see {@link LinkProbe}.
   */
  linkRttP50Ms?: Record<string, number>;
  regions: Record<string, RegionFigures>;
}

export interface Goal {
  goal: string;
  /** `null`: not checked, because the run did not measure what it needs (the detail says what). */
  met: boolean | null;
  detail: string;
}

function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[
    Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  ] as number;
}

/**
 * Figures are kept (and the goals checked) to 0.01 ms: at a 2.5 ms median, rounding to 0.1 ms
 * could move a ratio by up to 4% either way. The report shows them to 0.1 ms.
 */
const round = (value: number) => (Number.isFinite(value) ? Math.round(value * 100) / 100 : null);

export function summarize(sample: RegionSample): RegionFigures {
  return {
    readP50Ms: round(percentile(sample.reads, 50)),
    readP99Ms: round(percentile(sample.reads, 99)),
    writeP50Ms: round(percentile(sample.writes, 50)),
    writeThenReadP50Ms: round(percentile(sample.writeThenReads, 50)),
    ownWriteWaitP50Ms: round(percentile(sample.ownWriteWaits, 50)),
    ownWriteWaitP99Ms: round(percentile(sample.ownWriteWaits, 99)),
    staleReads: sample.staleReads,
    ownWriteReads: sample.ownWriteReads,
    staleRate:
      sample.ownWriteReads === 0
        ? 0
        : Math.round((sample.staleReads / sample.ownWriteReads) * 1000) / 1000,
    reads: sample.reads.length,
    writes: sample.writes.length,
    errors: sample.errors,
    errorSamples: sample.errorSamples,
  };
}

/** The issue's goals for the Regional row, checked against the figures. */
export function checkGoals(
  figures: readonly DeploymentFigures[],
  primaryRegion: string,
  rttMs: (a: string, b: string) => number,
): Goal[] {
  const regional = figures.find((f) => f.name === 'regional');
  const peer = figures.find((f) => f.name === 'replicas-no-consistency');
  if (!regional) return [];
  const goals: Goal[] = [];
  const primaryRead = regional.regions[primaryRegion]?.readP50Ms ?? null;
  for (const [region, r] of Object.entries(regional.regions)) {
    if (region === primaryRegion) continue;
    const readGoal = `reads in ${region} no slower than 1.2× reads in ${primaryRegion} (p50)`;
    if (r.readP50Ms === null || primaryRead === null) {
      goals.push(notMeasured(readGoal, 'the run has no reads', region, primaryRegion));
    } else {
      const ratio = r.readP50Ms / primaryRead;
      goals.push({
        goal: readGoal,
        met: ratio <= 1.2,
        detail: `${r.readP50Ms} ms vs ${primaryRead} ms (${ratio.toFixed(2)}×)`,
      });
    }
    const writeGoal = `write-then-read in ${region} ≤ one round trip to ${primaryRegion} + 10 ms (p50)`;
    const local = regional.regions[primaryRegion]?.writeThenReadP50Ms ?? null;
    if (r.writeThenReadP50Ms === null || local === null) {
      goals.push(notMeasured(writeGoal, 'the run has no write read back', region, primaryRegion));
      continue;
    }
    const nominal = rttMs(region, primaryRegion);
    const measured = regional.linkRttP50Ms?.[region];
    const rtt = measured ?? nominal;
    const budget = Math.round((rtt + 10) * 100) / 100;
    goals.push({
      goal: writeGoal,
      met: r.writeThenReadP50Ms <= budget,
      detail:
        `${r.writeThenReadP50Ms} ms vs ${budget} ms. ` +
        `The round trip: ${measured === undefined ? `${nominal} ms (nominal; not measured)` : `${measured} ms as measured on the link (nominal ${nominal} ms)`}; ` +
        `the app's own work: ${local} ms for the same write and read in ${primaryRegion}; ` +
        `Regional's share: ${(r.writeThenReadP50Ms - rtt - local).toFixed(1)} ms (sending the write to ${primaryRegion}, and the read making sure the replica has it: it waited ${r.ownWriteWaitP50Ms} ms p50, ${r.ownWriteWaitP99Ms} ms p99)`,
    });
  }
  goals.push(staleReadsGoal(regional, peer));
  return goals;
}

/**
 * Zero stale reads for Regional proves little unless the same workload catches stale reads
 * without it: the goal is met only beside a deployment 3 that shows some.
 */
function staleReadsGoal(regional: DeploymentFigures, peer: DeploymentFigures | undefined): Goal {
  const goal = 'zero stale reads after own writes, where deployment 3 shows some';
  const sum = (figures: DeploymentFigures, key: 'staleReads' | 'ownWriteReads') =>
    Object.values(figures.regions).reduce((n, r) => n + r[key], 0);
  const stale = sum(regional, 'staleReads');
  const own = sum(regional, 'ownWriteReads');
  const peerStale = peer ? sum(peer, 'staleReads') : null;
  if (own === 0) return { goal, met: null, detail: 'not measured: the run has no write read back' };
  const detail = `Regional ${stale} of ${own}; deployment 3 ${peerStale ?? 'not run'}`;
  if (stale > 0) return { goal, met: false, detail };
  if (peerStale === null) {
    return {
      goal,
      met: null,
      detail: `Regional 0 of ${own}; not checked: deployment 3 did not run, and it is what shows this workload catches stale reads`,
    };
  }
  if (peerStale === 0) {
    return {
      goal,
      met: false,
      detail: `${detail}: deployment 3 showed none, so this workload did not show it catches stale reads`,
    };
  }
  return { goal, met: true, detail };
}

function notMeasured(goal: string, what: string, region: string, primaryRegion: string): Goal {
  return { goal, met: null, detail: `not measured: ${what} in ${region} or ${primaryRegion}` };
}

/** A figure as the report and chart show it: to 0.1 ms. */
const ms = (value: number | null) =>
  value === null || Number.isNaN(value) ? '-' : `${Math.round(value * 10) / 10} ms`;

/** The report as people read it: per deployment and region, then any errors the run saw. */
export function renderReport(figures: readonly DeploymentFigures[]): string {
  const rows = [
    [
      'deployment / region',
      'read p50',
      'read p99',
      'write p50',
      'write→read p50',
      'stale reads after own write',
    ],
  ];
  for (const deployment of figures) {
    rows.push([deployment.label, '', '', '', '', '']);
    for (const [region, r] of Object.entries(deployment.regions)) {
      rows.push([
        `    ${region}`,
        ms(r.readP50Ms),
        ms(r.readP99Ms),
        ms(r.writeP50Ms),
        ms(r.writeThenReadP50Ms),
        `${r.staleReads} of ${r.ownWriteReads} (${(r.staleRate * 100).toFixed(1)}%)${r.errors ? `  [${r.errors} errors]` : ''}`,
      ]);
    }
  }
  const lines = [table(rows)];
  const errors = figures.flatMap((d) =>
    Object.entries(d.regions).flatMap(([region, r]) =>
      r.errorSamples.map((e) => `  ${d.name} ${region}: ${e}`),
    ),
  );
  if (errors.length > 0) lines.push('', 'Errors seen (first few):', ...errors);
  return lines.join('\n');
}

/** What the summary needs to know about the run besides its figures. */
export interface RunContext {
  primaryRegion: string;
  /** The links' nominal round trip between two regions (ms). */
  rttMs(a: string, b: string): number;
}

const COUNT_WORDS = ['no', 'one', 'two', 'three', 'four', 'five'];

function staleTotals(deployment: DeploymentFigures): { stale: number; own: number } {
  let stale = 0;
  let own = 0;
  for (const r of Object.values(deployment.regions)) {
    stale += r.staleReads;
    own += r.ownWriteReads;
  }
  return { stale, own };
}

/**
 * What the run showed, in plain words, from its own figures: reads far from the primary beside
 * one region, stale reads after own writes beside read replicas alone, and what a post costs in
 * round trips. No verdicts against thresholds: those are kept in demo.json's `goals`.
 */
export function renderSummary(figures: readonly DeploymentFigures[], context: RunContext): string {
  const find = (name: Deployment['name']) => figures.find((f) => f.name === name);
  const regional = find('regional');
  const heading =
    'What this run showed (medians on this machine; the delays between regions are simulated):';
  if (!regional) {
    return `${heading}\n  • Regional was not among the deployments run: the table above has their figures.`;
  }
  const { primaryRegion } = context;
  // Farthest from the primary first: where the deployments differ most.
  const remote = Object.keys(regional.regions)
    .filter((region) => region !== primaryRegion)
    .sort((a, b) => context.rttMs(b, primaryRegion) - context.rttMs(a, primaryRegion));
  const lines: string[] = [];

  const oneRegion = find('one-region');
  const reads = remote.flatMap((region) => {
    const ours = regional.regions[region]?.readP50Ms ?? null;
    const theirs = oneRegion?.regions[region]?.readP50Ms ?? null;
    return ours === null ? [] : [{ region, ours, theirs }];
  });
  const [far, ...near] = reads;
  if (far) {
    const versus = (theirs: number | null, long: boolean) =>
      theirs === null ? '' : ` vs ${ms(theirs)}${long ? ' from one region' : ''}`;
    const others = near.map((r) => `${r.region}: ${ms(r.ours)}${versus(r.theirs, false)}`);
    lines.push(
      `readers in ${far.region}: ${ms(far.ours)} with Regional${versus(far.theirs, true)}` +
        (others.length > 0 ? ` (${others.join('; ')})` : ''),
    );
  }

  const ours = staleTotals(regional);
  if (ours.own > 0) {
    const alone = find('replicas-no-consistency');
    const theirs = alone ? staleTotals(alone) : null;
    lines.push(
      `stale reads after own writes (a writer's new post missing from the page read right after): ${ours.stale} of ${ours.own} with Regional` +
        (theirs && theirs.own > 0
          ? ` vs ${theirs.stale} of ${theirs.own} with read replicas alone`
          : ''),
    );
  }

  const postRegion = remote[0];
  const post = postRegion === undefined ? null : (regional.regions[postRegion]?.writeP50Ms ?? null);
  if (postRegion !== undefined && post !== null) {
    const roundTrip = (d: DeploymentFigures) =>
      d.linkRttP50Ms?.[postRegion] ?? context.rttMs(postRegion, primaryRegion);
    const trips = (d: DeploymentFigures, value: number) => {
      const n = Math.round(value / roundTrip(d));
      return COUNT_WORDS[n] ?? String(n);
    };
    const everywhere = find('app-everywhere');
    const theirs = everywhere?.regions[postRegion]?.writeP50Ms ?? null;
    const n = trips(regional, post);
    lines.push(
      `a post from ${postRegion} costs ${n} round trip${n === 'one' ? '' : 's'} to ${primaryRegion} with Regional (${ms(post)}; the round trip itself: ${ms(roundTrip(regional))})` +
        (everywhere && theirs !== null
          ? ` vs ${trips(everywhere, theirs)} with the app in every region and the database in ${primaryRegion} only (${ms(theirs)})`
          : ''),
    );
  }
  if (lines.length === 0) lines.push('the run measured no reads or writes');
  return [heading, ...lines.map((line) => `  • ${line}`)].join('\n');
}

export interface ChartOptions {
  title: string;
  /** A line under the title: where the regions are and what the workload was. */
  subtitle?: string;
  primaryRegion: string;
  /** One round trip from each replica region to the primary (ms): marked on the write panels. */
  roundTripMs?: Record<string, number>;
}

interface Panel {
  title: string;
  note: string;
  /** The bar's length, in the panel's unit (ms, or % for stale reads); `null`: not measured. */
  value(r: RegionFigures): number | null;
  /** The figure printed at the bar's end. */
  text(r: RegionFigures): string;
  unit: 'ms' | '%';
  roundTrips?: boolean;
}

const PANELS: readonly Panel[] = [
  {
    title: 'Reading a page',
    note: 'p50, ms · shorter is faster',
    value: (r) => r.readP50Ms,
    text: (r) => (r.readP50Ms === null ? 'not measured' : ms(r.readP50Ms)),
    unit: 'ms',
  },
  {
    title: 'Posting (the write)',
    note: 'p50, ms · dashed: one round trip',
    value: (r) => r.writeP50Ms,
    text: (r) => (r.writeP50Ms === null ? 'not measured' : ms(r.writeP50Ms)),
    unit: 'ms',
    roundTrips: true,
  },
  {
    title: 'Posting, then reading it back',
    note: 'p50, ms · dashed: one round trip',
    value: (r) => r.writeThenReadP50Ms,
    text: (r) => (r.writeThenReadP50Ms === null ? 'not measured' : ms(r.writeThenReadP50Ms)),
    unit: 'ms',
    roundTrips: true,
  },
  {
    title: 'Stale reads after own write',
    note: 'own new post missing · 0 is right',
    value: (r) => (r.ownWriteReads === 0 ? null : r.staleRate * 100),
    text: (r) => (r.ownWriteReads === 0 ? 'not measured' : `${r.staleReads} of ${r.ownWriteReads}`),
    unit: '%',
  },
];

/** Round gridline steps for an axis up to `max`: 1, 2, 2.5 or 5 times a power of ten, at most 3 ticks past 0. */
function tickStep(max: number): number {
  const rough = max / 3;
  const power = 10 ** Math.floor(Math.log10(rough));
  return ([1, 2, 2.5, 5, 10].find((m) => m * power >= rough) ?? 10) * power;
}

/** Greedy word wrap to about `width` characters a line. */
function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  for (const word of text.split(' ')) {
    const last = lines.at(-1);
    if (last !== undefined && last.length + 1 + word.length <= width) {
      lines[lines.length - 1] = `${last} ${word}`;
    } else lines.push(word);
  }
  return lines;
}

/** A deployment's label as a bold name ("1. one region") and the rest, for the chart. */
function splitLabel(label: string): { name: string; rest: string } {
  const match = /^(.*?)(?:: |, | (?=\())(.*)$/.exec(label);
  return match ? { name: match[1] as string, rest: match[2] as string } : { name: label, rest: '' };
}

const REGION_COLOURS = ['#2f6fb0', '#e08a2e', '#3a9a5b', '#8e5bb5', '#c44e52'];

/**
 * The table as a chart, as SVG: one row per deployment, one panel per figure (read p50, write
 * p50, write→read p50, stale reads after own writes), a bar per region with its value printed
 * on it. Each panel's scale is linear and shared by all deployments, so bars compare down a
 * column.
 */
export function renderChart(figures: readonly DeploymentFigures[], options: ChartOptions): string {
  const regions = [...new Set(figures.flatMap((d) => Object.keys(d.regions)))];
  const colour = (region: string) =>
    REGION_COLOURS[regions.indexOf(region) % REGION_COLOURS.length] as string;
  const margin = 20;
  const labelWidth = 280;
  const panelWidth = 230;
  const panelGap = 24;
  const barRoom = panelWidth - 78; // room left for the value printed after the bar
  const barHeight = 16;
  const barGap = 5;
  const rowPad = 12;
  const rowHeight = Math.max(
    rowPad * 2 + regions.length * (barHeight + barGap) - barGap,
    rowPad * 2 + 4 * 15,
  );
  const width = margin * 2 + labelWidth + PANELS.length * (panelWidth + panelGap) - panelGap;
  const top = options.subtitle ? 150 : 132;
  const rowsHeight = figures.length * rowHeight;
  const height = top + rowsHeight + 78;
  const panelX = (i: number) => margin + labelWidth + i * (panelWidth + panelGap);

  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="'DejaVu Sans', 'Segoe UI', Helvetica, Arial, sans-serif" font-size="12" fill="#222">`,
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    `<text x="${margin}" y="30" font-size="18" font-weight="bold">${escapeXml(options.title)}</text>`,
  ];
  if (options.subtitle) {
    out.push(
      `<text x="${margin}" y="52" font-size="12" fill="#555">${escapeXml(options.subtitle)}</text>`,
    );
  }
  // Legend: a swatch per region.
  const legendY = options.subtitle ? 76 : 58;
  out.push(`<text x="${margin}" y="${legendY + 10}" fill="#555">users in</text>`);
  let legendX = margin + 62;
  for (const region of regions) {
    const name = region === options.primaryRegion ? `${region} (primary)` : region;
    out.push(
      `<rect x="${legendX}" y="${legendY}" width="12" height="12" fill="${colour(region)}"/>`,
      `<text x="${legendX + 17}" y="${legendY + 10}">${escapeXml(name)}</text>`,
    );
    legendX += 34 + name.length * 7;
  }

  // Panel headings.
  const headingY = top - 26;
  PANELS.forEach((panel, i) => {
    out.push(
      `<text x="${panelX(i)}" y="${headingY}" font-size="13" font-weight="bold">${escapeXml(panel.title)}</text>`,
      `<text x="${panelX(i)}" y="${headingY + 15}" font-size="11" fill="#666">${escapeXml(panel.note)}</text>`,
    );
  });

  // Row backgrounds: Regional's row tinted, the others separated by a rule.
  figures.forEach((deployment, row) => {
    const y = top + row * rowHeight;
    if (deployment.name === 'regional') {
      out.push(
        `<rect x="${margin - 8}" y="${y}" width="${width - 2 * margin + 16}" height="${rowHeight}" fill="#eaf2fb"/>`,
      );
    }
    out.push(
      `<line x1="${margin - 8}" y1="${y}" x2="${width - margin + 8}" y2="${y}" stroke="#ddd"/>`,
    );
  });
  out.push(
    `<line x1="${margin - 8}" y1="${top + rowsHeight}" x2="${width - margin + 8}" y2="${top + rowsHeight}" stroke="#ddd"/>`,
  );

  // Axes: light gridlines with their values under the rows, and the round trips on write panels.
  const scales = PANELS.map((panel, i) => {
    const max = Math.max(
      0,
      ...figures.flatMap((d) => Object.values(d.regions).map((r) => panel.value(r) ?? 0)),
    );
    // The longest bar fills the panel; gridlines at round values up to it.
    const scaleMax = Math.max(max, 1);
    const step = tickStep(scaleMax);
    const ticks = Array.from(
      { length: Math.floor(scaleMax / step + 1e-9) + 1 },
      (_, k) => k * step,
    );
    for (const tick of ticks) {
      const x = panelX(i) + (tick / scaleMax) * barRoom;
      out.push(
        `<line x1="${x.toFixed(1)}" y1="${top}" x2="${x.toFixed(1)}" y2="${top + rowsHeight}" stroke="${tick === 0 ? '#999' : '#e6e6e6'}"/>`,
        `<text x="${x.toFixed(1)}" y="${top + rowsHeight + 15}" font-size="10" fill="#666" text-anchor="middle">${Math.round(tick * 100) / 100}${tick === ticks.at(-1) ? ` ${panel.unit}` : ''}</text>`,
      );
    }
    if (panel.roundTrips && options.roundTripMs) {
      for (const [region, rtt] of Object.entries(options.roundTripMs)) {
        if (rtt > scaleMax) continue;
        const x = panelX(i) + (rtt / scaleMax) * barRoom;
        out.push(
          `<line x1="${x.toFixed(1)}" y1="${top}" x2="${x.toFixed(1)}" y2="${top + rowsHeight}" stroke="${colour(region)}" stroke-dasharray="4 3" stroke-opacity="0.8"><title>one round trip ${escapeXml(region)}–${escapeXml(options.primaryRegion)}: ${ms(rtt)}</title></line>`,
        );
      }
    }
    return scaleMax;
  });

  // Rows: the deployment's label, then a bar per region in each panel.
  figures.forEach((deployment, row) => {
    const y = top + row * rowHeight;
    out.push(`<g id="deployment-${escapeXml(deployment.name)}">`);
    const { name, rest } = splitLabel(deployment.label);
    const labelLines = [
      ...wrap(name, 30).map((line) => ({ line, bold: true })),
      ...wrap(rest, 36).map((line) => ({ line, bold: false })),
    ].filter((l) => l.line !== '');
    labelLines.forEach(({ line, bold }, i) => {
      out.push(
        `<text x="${margin}" y="${y + rowPad + 11 + i * 15}"${bold ? ' font-weight="bold" font-size="13"' : ' fill="#555"'}>${escapeXml(line)}</text>`,
      );
    });
    regions.forEach((region, j) => {
      const r = deployment.regions[region];
      const barY = y + rowPad + j * (barHeight + barGap);
      out.push(
        `<text x="${margin + labelWidth - 10}" y="${barY + 12}" text-anchor="end" fill="#555">${escapeXml(region)}</text>`,
      );
      if (!r) return;
      PANELS.forEach((panel, i) => {
        const value = panel.value(r);
        const x0 = panelX(i);
        const length = value === null ? 0 : (value / (scales[i] as number)) * barRoom;
        const stale = panel.unit === '%' && value !== null;
        if (value !== null && length > 0) {
          out.push(
            `<rect x="${x0}" y="${barY}" width="${Math.max(1.5, length).toFixed(1)}" height="${barHeight}" fill="${colour(region)}"><title>${escapeXml(`${region}, ${panel.title.toLowerCase()}: ${panel.text(r)}`)}</title></rect>`,
          );
        }
        const textStyle = stale
          ? r.staleReads > 0
            ? ' font-weight="bold" fill="#b3261e"'
            : ' font-weight="bold" fill="#1b7f3b"'
          : value === null
            ? ' fill="#888"'
            : '';
        // A halo keeps the value readable where it crosses a gridline or a round trip's line.
        const halo = ` stroke="${deployment.name === 'regional' ? '#eaf2fb' : '#fff'}" stroke-width="3" paint-order="stroke"`;
        out.push(
          `<text x="${(x0 + Math.max(length, 0) + 5).toFixed(1)}" y="${barY + 12}"${textStyle}${halo}>${escapeXml(panel.text(r))}</text>`,
        );
      });
    });
    out.push('</g>');
  });

  const footer = [
    "Medians (p50) of what each region's users saw; each panel's scale is linear and the same for every deployment.",
    options.roundTripMs
      ? `Dashed lines: one round trip from ${Object.keys(options.roundTripMs).join(' and ')} (in its colour) to ${options.primaryRegion}, as measured on the link. Read p99 and the counts: the printed table and demo.json.`
      : 'Read p99 and the counts: the printed table and demo.json.',
  ];
  footer.forEach((line, i) => {
    out.push(
      `<text x="${margin}" y="${top + rowsHeight + 40 + i * 15}" font-size="11" fill="#666">${escapeXml(line)}</text>`,
    );
  });
  out.push('</svg>');
  return out.join('\n');
}

function escapeXml(text: string): string {
  return text.replace(
    /[<>&"]/g,
    (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[c] as string,
  );
}

/** Writes `demo.json` and `demo.svg` into `dir`; returns their paths. */
export function writeDemoResults(
  dir: string,
  data: unknown,
  svg: string,
): { json: string; svg: string } {
  mkdirSync(dir, { recursive: true });
  const json = path.join(dir, 'demo.json');
  const chart = path.join(dir, 'demo.svg');
  writeFileSync(json, `${JSON.stringify(data, null, 2)}\n`);
  writeFileSync(chart, `${svg}\n`);
  return { json, svg: chart };
}
