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

/** A grouped bar chart (log scale) of read and write→read p50 per deployment and region, as SVG. */
export function renderChart(figures: readonly DeploymentFigures[], title: string): string {
  const regions = [...new Set(figures.flatMap((d) => Object.keys(d.regions)))];
  const colours = ['#2f6fb0', '#e08a2e', '#3a9a5b', '#8e5bb5', '#c44e52'];
  const metrics: { key: 'readP50Ms' | 'writeThenReadP50Ms'; label: string }[] = [
    { key: 'readP50Ms', label: 'read p50' },
    { key: 'writeThenReadP50Ms', label: 'write→read p50' },
  ];
  const max = Math.max(
    1,
    ...figures.flatMap((d) =>
      Object.values(d.regions).flatMap((r) => metrics.map((m) => r[m.key] ?? 0)),
    ),
  );
  const barHeight = 14;
  const labelWidth = 330;
  const plotWidth = 520;
  const rowsPerDeployment = metrics.length * (regions.length + 1);
  const height = 70 + figures.length * (rowsPerDeployment * barHeight + 30);
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${labelWidth + plotWidth + 120}" height="${height}" font-family="system-ui, sans-serif" font-size="12">`,
    `<text x="10" y="22" font-size="15" font-weight="bold">${escapeXml(title)}</text>`,
  ];
  regions.forEach((region, i) => {
    out.push(
      `<rect x="${labelWidth + i * 70}" y="34" width="12" height="12" fill="${colours[i % colours.length]}"/>`,
    );
    out.push(`<text x="${labelWidth + i * 70 + 16}" y="45">${escapeXml(region)}</text>`);
  });
  let y = 64;
  for (const deployment of figures) {
    out.push(`<text x="10" y="${y + 10}" font-weight="bold">${escapeXml(deployment.label)}</text>`);
    y += 18;
    for (const metric of metrics) {
      out.push(`<text x="20" y="${y + 11}">${metric.label}</text>`);
      regions.forEach((region, i) => {
        const value = deployment.regions[region]?.[metric.key] ?? 0;
        // Log scale: 5 ms and 1500 ms side by side both stay readable.
        const width = Math.max(
          1,
          (Math.log10(Math.max(1, value)) / Math.log10(Math.max(10, max))) * plotWidth,
        );
        out.push(
          `<rect x="${labelWidth}" y="${y}" width="${width.toFixed(1)}" height="${barHeight - 2}" fill="${colours[i % colours.length]}"/>`,
        );
        out.push(`<text x="${labelWidth + width + 4}" y="${y + 11}">${ms(value)}</text>`);
        y += barHeight;
      });
      y += barHeight / 2;
    }
    y += 12;
  }
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
