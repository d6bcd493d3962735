import { describe, expect, it } from 'vitest';
import {
  checkGoals,
  type DeploymentFigures,
  type RegionFigures,
  renderChart,
  renderReport,
  renderSummary,
  summarize,
} from './report.js';
import { emptySample, type RegionSample } from './workload.js';

const region = (figures: Partial<RegionFigures>): RegionFigures => ({
  readP50Ms: 5,
  readP99Ms: 20,
  writeP50Ms: 5,
  writeThenReadP50Ms: 10,
  ownWriteWaitP50Ms: 0,
  ownWriteWaitP99Ms: 0,
  staleReads: 0,
  ownWriteReads: 100,
  staleRate: 0,
  reads: 100,
  writes: 100,
  errors: 0,
  errorSamples: [],
  ...figures,
});

const rtt = () => 80;

function figures(cdg: Partial<RegionFigures>, linkRttP50Ms?: Record<string, number>) {
  const regional: DeploymentFigures = {
    name: 'regional',
    label: '4. Regional',
    linkRttP50Ms,
    regions: { iad: region({ writeThenReadP50Ms: 8 }), cdg: region(cdg) },
  };
  const peer: DeploymentFigures = {
    name: 'replicas-no-consistency',
    label: '3.',
    regions: { cdg: region({ staleReads: 3 }) },
  };
  return [peer, regional];
}

describe('checkGoals', () => {
  it('checks write-then-read against the round trip measured on the link, and says so', () => {
    const [, writeThenRead] = checkGoals(
      figures({ writeThenReadP50Ms: 91 }, { cdg: 81.5 }),
      'iad',
      rtt,
    );
    expect(writeThenRead).toMatchObject({ met: true });
    expect(writeThenRead?.detail).toMatch(
      /^91 ms vs 91\.5 ms\. The round trip: 81\.5 ms as measured on the link \(nominal 80 ms\); the app's own work: 8 ms .*Regional's share: 1\.5 ms/,
    );
    expect(checkGoals(figures({ writeThenReadP50Ms: 92 }, { cdg: 81.5 }), 'iad', rtt)[1]?.met).toBe(
      false,
    );
  });

  it('falls back to the nominal round trip when the link was not measured', () => {
    const [, writeThenRead] = checkGoals(figures({ writeThenReadP50Ms: 91 }), 'iad', rtt);
    expect(writeThenRead).toMatchObject({ met: false });
    expect(writeThenRead?.detail).toMatch(
      /vs 90 ms\. The round trip: 80 ms \(nominal; not measured\)/,
    );
  });

  it('reads within 1.2× of the primary region, and zero stale reads only where the peer shows some', () => {
    const goals = checkGoals(figures({ readP50Ms: 6.1 }), 'iad', rtt);
    expect(goals[0]).toMatchObject({ met: false, detail: '6.1 ms vs 5 ms (1.22×)' });
    expect(goals.at(-1)).toMatchObject({ met: true, detail: 'Regional 0 of 200; deployment 3 3' });
    const stale = checkGoals(figures({ staleReads: 1 }), 'iad', rtt);
    expect(stale.at(-1)?.met).toBe(false);
    const [peer, regional] = figures({});
    const quietPeer = checkGoals(
      [
        { ...(peer as DeploymentFigures), regions: { cdg: region({}) } },
        regional as DeploymentFigures,
      ],
      'iad',
      rtt,
    );
    expect(quietPeer.at(-1)).toMatchObject({
      met: false,
      detail:
        'Regional 0 of 200; deployment 3 0: deployment 3 showed none, so this workload did not show it catches stale reads',
    });
  });

  it('a goal the run did not measure (no reads, no writes) is "not measured", never met', () => {
    const regional: DeploymentFigures = {
      name: 'regional',
      label: '4. Regional',
      regions: { iad: summarize(emptySample()), cdg: summarize(emptySample()) },
    };
    expect(regional.regions.cdg?.readP50Ms).toBeNull();
    const goals = checkGoals([regional], 'iad', rtt);
    expect(goals.map((g) => g.met)).toEqual([null, null, null]);
    expect(goals[0]?.detail).toBe('not measured: the run has no reads in cdg or iad');
    expect(goals[1]?.detail).toBe('not measured: the run has no write read back in cdg or iad');
    const report = renderReport([regional]);
    expect(report).not.toMatch(/✓|✗|–|Goals|NaN|null/);
    // Writers only: the read goal is not measured, the others are checked.
    const writersOnly = checkGoals(
      [{ ...regional, regions: { iad: region({ readP50Ms: null }), cdg: region({}) } }],
      'iad',
      rtt,
    );
    expect(writersOnly.map((g) => g.met)).toEqual([null, true, null]);
    expect(writersOnly[2]?.detail).toBe(
      'Regional 0 of 200; not checked: deployment 3 did not run, and it is what shows this workload catches stale reads',
    );
    // A stale read fails the goal whether or not deployment 3 ran.
    const staleAlone = checkGoals(
      [{ ...regional, regions: { iad: region({}), cdg: region({ staleReads: 2 }) } }],
      'iad',
      rtt,
    );
    expect(staleAlone.at(-1)).toMatchObject({
      met: false,
      detail: 'Regional 2 of 200; deployment 3 not run',
    });
  });

  it('checks the goals on figures to 0.01 ms, not on the 0.1 ms the report shows', () => {
    const sample = (reads: number[]): RegionSample => ({
      reads,
      writes: [4],
      writeThenReads: [8],
      ownWriteWaits: [0],
      ownWriteReads: 1,
      staleReads: 0,
      errors: 0,
      errorSamples: [],
    });
    // Rounded to 0.1 ms these would be 2.9 vs 2.4 ms (1.21×); they are 2.86 vs 2.44 ms (1.17×).
    const iad = summarize(sample([2.2, 2.444, 2.7]));
    const cdg = summarize(sample([2.5, 2.856, 3.1]));
    expect([iad.readP50Ms, cdg.readP50Ms]).toEqual([2.44, 2.86]);
    const regional: DeploymentFigures = {
      name: 'regional',
      label: '4. Regional',
      regions: { iad, cdg },
    };
    const goals = checkGoals([regional], 'iad', rtt);
    expect(goals[0]).toMatchObject({ met: true, detail: '2.86 ms vs 2.44 ms (1.17×)' });
    const row = renderReport([regional])
      .split('\n')
      .find((line) => line.startsWith('    cdg'));
    expect(row).toMatch(/^ {4}cdg +2\.9 ms /);
    expect(row).not.toContain('2.86');
  });
});

/** A whole run's figures, as four deployments in iad (primary), cdg and syd would give them. */
function run(): DeploymentFigures[] {
  const links = { cdg: 81.4, syd: 201.4 };
  return [
    {
      name: 'one-region',
      label: '1. one region: app and database in the primary region only',
      linkRttP50Ms: links,
      regions: {
        iad: region({ readP50Ms: 1.8 }),
        cdg: region({ readP50Ms: 83.3, writeP50Ms: 84.5 }),
        syd: region({ readP50Ms: 203.24, writeP50Ms: 204.8, writeThenReadP50Ms: 408.9 }),
      },
    },
    {
      name: 'app-everywhere',
      label: '2. app in every region, database in the primary region only',
      linkRttP50Ms: links,
      regions: {
        iad: region({}),
        cdg: region({ readP50Ms: 83.6, writeP50Ms: 166.4 }),
        syd: region({ readP50Ms: 204.1, writeP50Ms: 409.2, writeThenReadP50Ms: 613.4 }),
      },
    },
    {
      name: 'replicas-no-consistency',
      label: "3. read replicas without consistency (Drizzle's withReplicas)",
      linkRttP50Ms: links,
      regions: {
        iad: region({ ownWriteReads: 376 }),
        cdg: region({ staleReads: 16, ownWriteReads: 212, staleRate: 0.075, writeP50Ms: 86 }),
        syd: region({ staleReads: 13, ownWriteReads: 124, staleRate: 0.105, writeP50Ms: 206.6 }),
      },
    },
    {
      name: 'regional',
      label: '4. Regional',
      linkRttP50Ms: links,
      regions: {
        iad: region({ readP50Ms: 1.95, ownWriteReads: 378 }),
        cdg: region({ readP50Ms: 2.03, writeP50Ms: 86.2, ownWriteReads: 212 }),
        syd: region({
          readP50Ms: 2.14,
          writeP50Ms: 206,
          writeThenReadP50Ms: 209,
          ownWriteReads: 128,
        }),
      },
    },
  ];
}

const context = {
  primaryRegion: 'iad',
  rttMs: (a: string, b: string) => ({ cdg: 80, syd: 200 })[a === 'iad' ? b : a] as number,
};

/** The deployment's group in the chart: its label, bars and printed figures. */
function deploymentGroup(svg: string, name: string): string {
  const group = new RegExp(`<g id="deployment-${name}">([\\s\\S]*?)</g>`).exec(svg)?.[1];
  if (group === undefined) throw new Error(`no group for ${name} in the chart`);
  return group;
}

describe('renderSummary', () => {
  it('says what the run showed in plain words, from its figures', () => {
    expect(renderSummary(run(), context).split('\n')).toEqual([
      'What this run showed (medians on this machine; the delays between regions are simulated):',
      '  • readers in syd: 2.1 ms with Regional vs 203.2 ms from one region (cdg: 2 ms vs 83.3 ms)',
      "  • stale reads after own writes (a writer's new post missing from the page read right after): 0 of 718 with Regional vs 29 of 712 with read replicas alone",
      '  • a post from syd costs one round trip to iad with Regional (206 ms; the round trip itself: 201.4 ms) vs two with the app in every region and the database in iad only (409.2 ms)',
    ]);
  });

  it('follows the figures: other numbers, other sentences', () => {
    const figures = run();
    const [, everywhere, alone, regional] = figures as [
      DeploymentFigures,
      DeploymentFigures,
      DeploymentFigures,
      DeploymentFigures,
    ];
    Object.assign(regional.regions.syd as RegionFigures, { readP50Ms: 3.46, staleReads: 2 });
    Object.assign(alone.regions.cdg as RegionFigures, { staleReads: 40 });
    Object.assign(everywhere.regions.syd as RegionFigures, { writeP50Ms: 612 });
    regional.linkRttP50Ms = { cdg: 81.4, syd: 101 };
    const summary = renderSummary(figures, context);
    expect(summary).toContain('readers in syd: 3.5 ms with Regional vs 203.2 ms from one region');
    expect(summary).toContain('2 of 718 with Regional vs 53 of 712 with read replicas alone');
    expect(summary).toContain(
      'a post from syd costs two round trips to iad with Regional (206 ms; the round trip itself: 101 ms) vs three with the app in every region',
    );
  });

  it('compares only with what ran, and never prints a verdict or a missing figure', () => {
    const regional = run().filter((d) => d.name === 'regional');
    const alone = renderSummary(regional, context);
    expect(alone).toContain('  • readers in syd: 2.1 ms with Regional (cdg: 2 ms)\n');
    expect(alone).toMatch(/: 0 of 718 with Regional\n/);
    expect(alone).toMatch(/\(206 ms; the round trip itself: 201\.4 ms\)$/);
    expect(alone).not.toMatch(/✓|✗|NaN|null|undefined|goal/i);
    const none = { iad: summarize(emptySample()), syd: summarize(emptySample()) };
    expect(
      renderSummary([{ name: 'regional', label: '4. Regional', regions: none }], context),
    ).toMatch(/\n {2}• the run measured no reads or writes$/);
    expect(renderSummary(run().slice(0, 2), context)).toMatch(
      /\n {2}• Regional was not among the deployments run/,
    );
  });
});

describe('renderChart', () => {
  const svg = renderChart(run(), {
    title: 'Regional demo',
    subtitle: 'round trips iad–cdg 80 ms, iad–syd 200 ms',
    primaryRegion: 'iad',
    roundTripMs: { cdg: 81.4, syd: 201.4 },
  });

  it('shows the stale reads after own writes of every deployment and region, on its bars', () => {
    const expected: Record<string, string[]> = {
      'one-region': ['0 of 100', '0 of 100', '0 of 100'],
      'app-everywhere': ['0 of 100', '0 of 100', '0 of 100'],
      'replicas-no-consistency': ['0 of 376', '16 of 212', '13 of 124'],
      regional: ['0 of 378', '0 of 212', '0 of 128'],
    };
    for (const [name, stale] of Object.entries(expected)) {
      const group = deploymentGroup(svg, name);
      expect(
        [...group.matchAll(/>(\d+ of \d+)</g)].map((m) => m[1]),
        name,
      ).toEqual(stale);
    }
    // Stale reads are drawn as bars (by rate), and set apart from zero.
    const replicas = deploymentGroup(svg, 'replicas-no-consistency');
    expect(replicas).toMatch(/<title>syd, stale reads after own write: 13 of 124<\/title>/);
    expect(replicas).toMatch(/fill="#b3261e"[^>]*>13 of 124</);
    expect(deploymentGroup(svg, 'regional')).not.toMatch(/<title>[a-z]+, stale reads/);
  });

  it('labels every panel with its unit, the regions in a legend, and prints each value', () => {
    for (const heading of [
      'Reading a page',
      'Posting (the write)',
      'Posting, then reading it back',
      'Stale reads after own write',
    ]) {
      expect(svg).toContain(`>${heading}</text>`);
    }
    expect(svg).toContain('>p50, ms · shorter is faster</text>');
    expect(svg).toContain('>iad (primary)</text>');
    expect(svg).toMatch(/> ?\d+ %<\/text>/);
    const regional = deploymentGroup(svg, 'regional');
    for (const value of ['2 ms', '2.1 ms', '86.2 ms', '206 ms', '209 ms']) {
      expect(regional).toContain(`>${value}</text>`);
    }
    expect(deploymentGroup(svg, 'one-region')).toContain('>app and database in the primary</text>');
    expect(svg).not.toMatch(/NaN|undefined|null|Infinity/);
  });

  it('says "not measured" where the run had nothing to measure', () => {
    const none = renderChart(
      [{ name: 'regional', label: '4. Regional', regions: { iad: summarize(emptySample()) } }],
      { title: 'Regional demo', primaryRegion: 'iad' },
    );
    expect(deploymentGroup(none, 'regional').match(/>not measured</g)).toHaveLength(4);
    expect(none).not.toMatch(/NaN|undefined|null|Infinity/);
  });
});
