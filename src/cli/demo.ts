import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { UsageError } from './shared.js';

/** The demo lives with the example forum (`examples/forum/demo/`), in the source checkout. */
const demoModule = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '../../examples/forum/demo/demo.ts',
);

export interface DemoCommandOptions {
  serve?: boolean;
  duration?: string;
  warmup?: string;
  dir?: string;
  only?: string;
  readers?: string;
  writers?: string;
  results?: string;
}

function wholeNumber(flag: string, value: string | undefined, min: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min)
    throw new UsageError(`${flag}: must be a whole number >= ${min}, got "${value}"`);
  return n;
}

/** `regional demo`: the forum in three regions, four deployments measured side by side (or `--serve`). */
export async function demoCommand(options: DemoCommandOptions): Promise<void> {
  if (!existsSync(demoModule)) {
    throw new UsageError(
      'the demo is part of the source checkout (examples/forum), not of the installed package',
    );
  }
  const { runDemo } = (await import(demoModule)) as {
    runDemo(options: Record<string, unknown>): Promise<void>;
  };
  await runDemo({
    serve: options.serve,
    duration: wholeNumber('--duration', options.duration, 1),
    warmup: wholeNumber('--warmup', options.warmup, 0),
    dir: options.dir,
    only: options.only?.split(',').map((s) => s.trim()),
    readers: wholeNumber('--readers', options.readers, 0),
    writers: wholeNumber('--writers', options.writers, 0),
    results: options.results,
  });
}
