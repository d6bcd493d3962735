/**
 * The driver behaviour suite over Drizzle on `RegionalPool`, through Drizzle's query builder:
 * Drizzle's own query objects are what is routed.
 */
import { drizzle as plainDrizzle } from 'drizzle-orm/node-postgres';
import { withReplicas } from 'drizzle-orm/pg-core';
import pg from 'pg';
import { driverBehaviourSuite } from '../../test/support/driver-suite.js';
import { RegionalPool } from '../pg/pool.js';
import { drizzle } from './index.js';
import { drizzleHandle } from './test-support/driver-handle.js';

driverBehaviourSuite({
  name: 'regional/drizzle on RegionalPool',
  open(options, connections) {
    const pool = new RegionalPool({ ...options, pool: { max: connections } });
    // Drizzle's own read replicas: withReplicas over plain node-postgres pools.
    const plain = [options.databaseUrl, options.replicaUrl ?? ''].map((url) => {
      const plainPool = new pg.Pool({ connectionString: url, max: connections });
      plainPool.on('error', () => {}); // the suite stops the replica under it
      return plainPool;
    });
    const [primary, replica] = plain.map((plainPool) => plainDrizzle(plainPool)) as [
      ReturnType<typeof plainDrizzle>,
      ReturnType<typeof plainDrizzle>,
    ];
    return drizzleHandle(drizzle(pool), withReplicas(primary, [replica]), {
      stats: () => pool.stats(),
      end: async () => {
        await Promise.all([pool.end(), ...plain.map((plainPool) => plainPool.end())]);
      },
    });
  },
});
