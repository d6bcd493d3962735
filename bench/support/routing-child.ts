/**
 * Runs {@link pgRoutingMicros} in a process of its own and prints `{ "micros": … }`: the core
 * benchmark runs it with and without `@opentelemetry/api` resolvable (hide-otel-api.ts), to
 * measure what the API costs Regional's routing when no SDK is registered.
 *
 * Usage: node --conditions=regional-source --import tsx [--import ./hide-otel-api.ts] routing-child.ts '<RegionalPool options as JSON>'
 */
import { RegionalPool } from '../../src/pg/index.js';
import { pgRoutingMicros } from './routing.js';

const pool = new RegionalPool({ ...JSON.parse(process.argv[2] ?? '{}'), onWarning: () => {} });
try {
  const micros = [];
  for (let i = 0; i < 3; i++) micros.push(await pgRoutingMicros(pool));
  micros.sort((a, b) => a - b);
  process.stdout.write(`${JSON.stringify({ micros: micros[1] })}\n`);
} finally {
  await pool.end();
}
