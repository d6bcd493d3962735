/** Regions a cluster starts when none are given: the primary first. */
export const DEFAULT_REGIONS = ['iad', 'cdg', 'syd'] as const;
export const DEFAULT_PRIMARY_REGION = 'iad';

/** Round trips measured between real regions (milliseconds). */
const MEASURED_RTT_MS: Record<string, number> = {
  'cdg-iad': 80,
  'iad-syd': 200,
  'cdg-syd': 280,
};

// Approximate locations of common Fly.io regions, used to estimate a round trip for pairs
// with no measured figure: light in fibre covers ~100 km per millisecond of round trip, and
// real routes are about 1.3 times longer than the great circle.
const LOCATIONS: Record<string, [number, number]> = {
  iad: [38.94, -77.46],
  ewr: [40.69, -74.17],
  yyz: [43.68, -79.63],
  ord: [41.98, -87.9],
  atl: [33.64, -84.43],
  mia: [25.79, -80.29],
  dfw: [32.9, -97.04],
  den: [39.86, -104.67],
  lax: [33.94, -118.41],
  sjc: [37.36, -121.93],
  sea: [47.45, -122.31],
  gru: [-23.43, -46.47],
  scl: [-33.39, -70.79],
  bog: [4.7, -74.14],
  lhr: [51.47, -0.45],
  cdg: [49.01, 2.55],
  ams: [52.31, 4.76],
  fra: [50.03, 8.57],
  arn: [59.65, 17.92],
  waw: [52.17, 20.97],
  mad: [40.47, -3.56],
  otp: [44.57, 26.08],
  jnb: [-26.13, 28.24],
  bom: [19.09, 72.87],
  sin: [1.36, 103.99],
  hkg: [22.31, 113.91],
  nrt: [35.76, 140.39],
  syd: [-33.94, 151.18],
};

/** A mistake in the regions, primary or round-trip options; `option` names the one at fault. */
export class TopologyError extends Error {
  constructor(
    /** The option at fault: `regions`, `primaryRegion` or `rttMs`. */
    readonly option: 'regions' | 'primaryRegion' | 'rttMs',
    /** What is wrong, without the option's name. */
    readonly detail: string,
  ) {
    super(`${option}: ${detail}`);
    this.name = 'TopologyError';
  }
}

/** The unordered pair key `a-b` with names sorted. */
export const pairKey = (a: string, b: string): string => (a < b ? `${a}-${b}` : `${b}-${a}`);

function estimateRtt(a: string, b: string): number | undefined {
  const measured = MEASURED_RTT_MS[pairKey(a, b)];
  if (measured !== undefined) return measured;
  const p = LOCATIONS[a];
  const q = LOCATIONS[b];
  if (!p || !q) return undefined;
  const rad = Math.PI / 180;
  const h =
    Math.sin(((q[0] - p[0]) * rad) / 2) ** 2 +
    Math.cos(p[0] * rad) * Math.cos(q[0] * rad) * Math.sin(((q[1] - p[1]) * rad) / 2) ** 2;
  const km = 2 * 6371 * Math.asin(Math.sqrt(h));
  return Math.max(2, Math.round((km / 100) * 1.3));
}

export interface TopologyInput {
  regions?: readonly string[];
  primaryRegion?: string;
  /**
   * Round trips in milliseconds. A key `syd` is the round trip between `syd` and the primary
   * region; a key `cdg-syd` is the round trip between those two regions.
   */
  rttMs?: Readonly<Record<string, number>>;
}

/** Regions, the primary, and the round trip of every pair, validated. */
export interface Topology {
  readonly regions: readonly string[];
  readonly primaryRegion: string;
  readonly replicaRegions: readonly string[];
  /** Round trip between two regions in milliseconds (0 within a region). */
  rttMs(a: string, b: string): number;
}

const REGION_NAME = /^[a-z][a-z0-9-]{0,31}$/;

/**
 * Validates regions, primary and round trips, filling in real-world figures where none are
 * given.
 *
 * @example
 * const topology = resolveTopology({ regions: ['iad', 'syd'], rttMs: { syd: 150 } });
 * topology.rttMs('iad', 'syd'); // 150
 */
export function resolveTopology(input: TopologyInput = {}): Topology {
  const regions = [...(input.regions ?? DEFAULT_REGIONS)];
  if (regions.length === 0) throw new TopologyError('regions', 'give at least one region');
  const seen = new Map<string, string>();
  for (const region of regions) {
    if (!REGION_NAME.test(region)) {
      throw new TopologyError(
        'regions',
        `"${region}" is not a region name: use lower-case letters, digits and dashes, starting with a letter (like "iad")`,
      );
    }
    const previous = seen.get(region.toLowerCase());
    if (previous !== undefined) throw new TopologyError('regions', `"${region}" is listed twice`);
    seen.set(region.toLowerCase(), region);
  }
  const primaryRegion =
    input.primaryRegion ??
    (regions.includes(DEFAULT_PRIMARY_REGION) ? DEFAULT_PRIMARY_REGION : (regions[0] as string));
  if (!regions.includes(primaryRegion)) {
    throw new TopologyError(
      'primaryRegion',
      `"${primaryRegion}" is not among the regions (${regions.join(', ')})`,
    );
  }

  const given = new Map<string, number>();
  for (const [key, value] of Object.entries(input.rttMs ?? {})) {
    const names =
      key.split('-').length === 2 && !regions.includes(key) ? key.split('-') : [primaryRegion, key];
    for (const name of names) {
      if (!regions.includes(name as string)) {
        throw new TopologyError(
          'rttMs',
          `"${key}" names region "${name}", which is not among the regions (${regions.join(', ')})`,
        );
      }
    }
    const [a, b] = names as [string, string];
    if (a === b)
      throw new TopologyError(
        'rttMs',
        `"${key}" is within one region; give round trips between two regions`,
      );
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
      throw new TopologyError(
        'rttMs',
        `"${key}=${value}" must be a round trip in milliseconds, 0 or more`,
      );
    }
    given.set(pairKey(a, b), value);
  }

  const table = new Map<string, number>();
  for (const a of regions) {
    for (const b of regions) {
      if (a >= b) continue;
      const key = pairKey(a, b);
      const rtt = given.get(key) ?? estimateRtt(a, b);
      if (rtt === undefined) {
        throw new TopologyError(
          'rttMs',
          `no round trip known between "${a}" and "${b}"; give one, e.g. ${key}=100`,
        );
      }
      table.set(key, rtt);
    }
  }
  return {
    regions,
    primaryRegion,
    replicaRegions: regions.filter((r) => r !== primaryRegion),
    rttMs: (a, b) => (a === b ? 0 : (table.get(pairKey(a, b)) ?? 0)),
  };
}

/**
 * Parses a round-trip list as typed on the command line: `cdg=80,syd=200,cdg-syd=280`.
 * Regions are checked later, by {@link resolveTopology}.
 */
export function parseRttList(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const item of text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const match = /^([a-z0-9-]+)=(-?[0-9.]+)$/.exec(item);
    if (!match) {
      throw new TopologyError(
        'rttMs',
        `"${item}" is not of the form region=ms or region-region=ms (e.g. syd=200)`,
      );
    }
    const ms = Number(match[2]);
    if (!Number.isFinite(ms) || ms < 0) {
      throw new TopologyError(
        'rttMs',
        `"${item}": the round trip must be a number of milliseconds, 0 or more`,
      );
    }
    out[match[1] as string] = ms;
  }
  return out;
}
