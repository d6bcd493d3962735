import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { UsageError } from './shared.js';

/** Benchmarks live in the repository's `bench/` folder, one module per name, each exporting `run()`. */
const benchDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bench');

export function benchmarkNames(): string[] {
  return ['core', 'http', 'prisma', 'procedures', 'redis'].filter((name) =>
    existsSync(path.join(benchDir, `${name}.ts`)),
  );
}

/** `regional bench <name>`: runs one benchmark; it prints a table and writes bench/results/<name>.json. */
export async function bench(name: string | undefined): Promise<void> {
  const names = benchmarkNames();
  if (names.length === 0) {
    throw new UsageError(
      'benchmarks are part of the source checkout (bench/), not of the installed package',
    );
  }
  if (!name || !names.includes(name)) {
    throw new UsageError(
      `${name ? `no benchmark "${name}"` : 'name a benchmark'}; choose one of: ${names.join(', ')}`,
    );
  }
  const module = (await import(path.join(benchDir, `${name}.ts`))) as { run(): Promise<void> };
  await module.run();
}
