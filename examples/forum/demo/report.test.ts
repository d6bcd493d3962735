import { describe, expect, it } from 'vitest';
import {
  checkGoals,
  type DeploymentFigures,
  type RegionFigures,
  renderReport,
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
    const report = renderReport([regional], goals);
    expect(report).toContain(
      '  – reads in cdg no slower than 1.2× reads in iad (p50): not measured',
    );
    expect(report).not.toMatch(/✓|✗|NaN|null/);
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
    const row = renderReport([regional], goals)
      .split('\n')
      .find((line) => line.startsWith('    cdg'));
    expect(row).toMatch(/^ {4}cdg +2\.9 ms /);
    expect(row).not.toContain('2.86');
  });
});
