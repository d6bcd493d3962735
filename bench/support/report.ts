import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { table } from '../../src/cli/shared.js';

/** The `p`-th percentile (0–100) of `values`, by nearest rank; NaN when empty. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank] as number;
}

export const median = (values: readonly number[]) => percentile(values, 50);

/** Rounds for display and JSON: 2 decimals. */
export const round = (value: number, digits = 2) => Number(value.toFixed(digits));

/** Prints a titled table on stdout. */
export function printTable(title: string, rows: (string | number)[][]): void {
  process.stdout.write(`\n${title}\n\n${table(rows.map((row) => row.map(String)))}\n`);
}

/** Writes `bench/results/<name>.json` and says where. */
export function writeResults(name: string, data: unknown): string {
  const file = path.resolve(import.meta.dirname, '..', 'results', `${name}.json`);
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, `${JSON.stringify(data, null, 2)}\n`);
  process.stdout.write(`\nwrote ${path.relative(process.cwd(), file)}\n`);
  return file;
}

/** Progress on stderr, so stdout holds only the report. */
export const progress = (message: string) => process.stderr.write(`bench: ${message}\n`);
