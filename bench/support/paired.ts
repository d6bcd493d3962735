/**
 * Paired measurements: the same reads through a raw driver and through Regional, in short
 * slices whose order rotates every round, so that a noisy machine's drift hits all alike.
 * CPU per read (this process's) is the stable figure; reads/s is reported beside it.
 */
import { median } from './report.js';

export interface SliceOptions {
  /** Workers reading at once. */
  concurrency: number;
  /** Reads go to ids 1..rows in turn. */
  rows: number;
}

export interface CompareOptions extends SliceOptions {
  rounds: number;
  sliceMs: number;
  /** Called before each slice with its configuration's name (`raw` for the raw one). */
  prepare?: (name: string) => void;
}

export interface Slice {
  perSecond: number;
  cpuMicrosPerRead: number;
}

/** Runs `read` from `concurrency` workers for `durationMs`: reads/s and this process's CPU per read. */
export async function slice(
  read: (id: number) => Promise<unknown>,
  durationMs: number,
  { concurrency, rows }: SliceOptions,
): Promise<Slice> {
  let done = 0;
  const cpu = process.cpuUsage();
  const started = performance.now();
  const deadline = started + durationMs;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, worker) => {
      for (let i = worker; performance.now() < deadline; i += concurrency) {
        await read((i % rows) + 1);
        done++;
      }
    }),
  );
  const elapsed = performance.now() - started;
  const used = process.cpuUsage(cpu);
  return { perSecond: (done / elapsed) * 1000, cpuMicrosPerRead: (used.user + used.system) / done };
}

export interface Compared {
  raw: Slice;
  regional: Slice;
  /** Each slice's ratio to the raw slice of its round: CPU per read and reads/s. */
  cpuRatios: number[];
  rateRatios: number[];
  cpuDifferences: number[];
}

/**
 * The same replica reads through the raw driver and through each Regional configuration, in
 * short slices whose order rotates every round, so that the machine's drift hits all alike.
 */
export async function compare<K extends string>(
  raw: (id: number) => Promise<unknown>,
  regional: Record<K, (id: number) => Promise<unknown>>,
  options: CompareOptions,
): Promise<Record<K, Compared>> {
  const { rounds: count, sliceMs } = options;
  const names = Object.keys(regional) as K[];
  const reads = [raw, ...names.map((name) => regional[name])];
  const labels = ['raw', ...names];
  for (let k = 0; k < reads.length; k++) {
    options.prepare?.(labels[k] as string);
    await slice(reads[k] as (id: number) => Promise<unknown>, 1000, options); // warm up: connections, JIT, statements
  }
  const rounds: Slice[][] = [];
  for (let round = 0; round < count; round++) {
    const results: Slice[] = new Array(reads.length);
    for (let k = 0; k < reads.length; k++) {
      const index = (round + k) % reads.length;
      options.prepare?.(labels[index] as string);
      results[index] = await slice(
        reads[index] as (id: number) => Promise<unknown>,
        sliceMs,
        options,
      );
    }
    rounds.push(results);
  }
  const medianSlice = (index: number): Slice => ({
    perSecond: median(rounds.map((r) => (r[index] as Slice).perSecond)),
    cpuMicrosPerRead: median(rounds.map((r) => (r[index] as Slice).cpuMicrosPerRead)),
  });
  const out = {} as Record<K, Compared>;
  names.forEach((name, n) => {
    const each = (f: (raw: Slice, regional: Slice) => number) =>
      rounds.map((r) => f(r[0] as Slice, r[n + 1] as Slice));
    out[name] = {
      raw: medianSlice(0),
      regional: medianSlice(n + 1),
      cpuRatios: each((r, g) => g.cpuMicrosPerRead / r.cpuMicrosPerRead),
      rateRatios: each((r, g) => g.perSecond / r.perSecond),
      cpuDifferences: each((r, g) => g.cpuMicrosPerRead - r.cpuMicrosPerRead),
    };
  });
  return out;
}
