import { TopologyError } from '../testing/topology.js';

/** A mistake in how a command was called; reported with exit code 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

const FLAG_FOR_OPTION = {
  regions: '--regions',
  primaryRegion: '--primary',
  rttMs: '--rtt',
} as const;

/** Prints a command's failure and sets the exit code: 2 for usage mistakes, 1 otherwise. */
export function reportFailure(command: string, error: unknown): void {
  const usage = error instanceof UsageError || error instanceof TopologyError;
  const message =
    error instanceof TopologyError
      ? `${FLAG_FOR_OPTION[error.option]}: ${error.detail}`
      : error instanceof Error
        ? error.message
        : String(error);
  process.stderr.write(`regional ${command}: ${message}\n`);
  if (!usage && process.env.REGIONAL_DEBUG && error instanceof Error)
    process.stderr.write(`${error.stack}\n`);
  process.exitCode = usage ? 2 : 1;
}

/** Progress lines on stderr (stdout stays clean for `--json`), each with the time since start. */
export function progressReporter(command: string): (message: string) => void {
  const started = performance.now();
  return (message) => {
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    process.stderr.write(`regional ${command} [${seconds}s] ${message}\n`);
  };
}

/**
 * Runs `stop` on the first SIGINT/SIGTERM/SIGHUP and exits when it is done; a second signal
 * exits at once.
 */
export function onShutdownSignal(stop: () => Promise<void>): void {
  let stopping = false;
  const handler = (signal: NodeJS.Signals) => {
    if (stopping) {
      process.stderr.write(`regional: ${signal} again, exiting without waiting\n`);
      process.exit(130);
    }
    stopping = true;
    stop().then(
      () => process.exit(0),
      (error) => {
        process.stderr.write(`regional: stopping failed: ${(error as Error).message}\n`);
        process.exit(1);
      },
    );
  };
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, handler);
}

/** Lays out rows as aligned columns. */
export function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const row of rows) {
    for (const [i, cell] of row.entries()) widths[i] = Math.max(widths[i] ?? 0, cell.length);
  }
  return rows
    .map((row) =>
      row
        .map((cell, i) => cell.padEnd(widths[i] ?? 0))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}
