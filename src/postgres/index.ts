/**
 * `regional/postgres`: postgres.js (the `postgres` package, 3.4) with Regional's routing: the
 * `sql` you know, each query on the local replica or the primary as the read or write it is,
 * with read-your-writes in every region.
 *
 * @example
 * import { RegionalPostgres } from 'regional/postgres';
 * const db = new RegionalPostgres(); // PRIMARY_REGION, REGION, DATABASE_URL, DATABASE_REPLICA_URL
 * const rows = await db.sql`select * from posts where id = ${id}`;
 */

export type {
  PostgresOptions,
  RegionalPostgresOptions,
  RegionalPostgresStats,
} from './database.js';
export { RegionalPostgres } from './database.js';
