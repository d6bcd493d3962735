import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: [
      'src/**/*.test.ts',
      'test/**/*.test.ts',
      'examples/**/*.test.ts',
      'deploy/**/*.test.ts',
      'bench/**/*.test.ts',
    ],
    // Tests start real Postgres (and Redis) servers: generous limits, files in separate processes.
    pool: 'forks',
    // Most tests wait on injected latency, not on the CPU: two files at a time halves the run.
    maxWorkers: 2,
    testTimeout: 120_000,
    hookTimeout: 180_000,
    teardownTimeout: 60_000,
    globalSetup: ['test/global-setup.ts'],
  },
});
