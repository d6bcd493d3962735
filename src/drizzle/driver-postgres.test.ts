/**
 * The driver behaviour suite over Drizzle on `RegionalPostgres` (postgres.js), through Drizzle's
 * query builder.
 */
import { withReplicas } from 'drizzle-orm/pg-core';
import { drizzle as plainDrizzle } from 'drizzle-orm/postgres-js';
import postgres from 'postgres';
import { driverBehaviourSuite } from '../../test/support/driver-suite.js';
import { RegionalPostgres } from '../postgres/index.js';
import { drizzlePostgres } from './index.js';
import { drizzleHandle } from './test-support/driver-handle.js';

driverBehaviourSuite({
  name: 'regional/drizzle on RegionalPostgres (postgres.js)',
  open(options, connections) {
    const database = new RegionalPostgres({
      ...options,
      postgres: { max: connections, onnotice: () => {} },
    });
    // Drizzle's own read replicas: withReplicas over plain postgres.js.
    const plain = [options.databaseUrl, options.replicaUrl ?? ''].map((url) =>
      postgres(url, { max: connections, onnotice: () => {} }),
    );
    const [primary, replica] = plain.map((sql) => plainDrizzle(sql)) as [
      ReturnType<typeof plainDrizzle>,
      ReturnType<typeof plainDrizzle>,
    ];
    return drizzleHandle(drizzlePostgres(database), withReplicas(primary, [replica]), {
      stats: () => database.stats(),
      end: async () => {
        await Promise.all([database.end(), ...plain.map((sql) => sql.end({ timeout: 1 }))]);
      },
    });
  },
});
