import { randomBytes } from 'node:crypto';
import type http from 'node:http';
import { RegionalPool, type RegionalPoolOptions } from '../../pg/pool.js';
import { LocalCluster } from '../../testing/cluster.js';
import { Procedures, type ProceduresOptions } from '../procedures.js';

/** One secret for every app of a test file, as a deployment has. */
export const SECRET = randomBytes(32).toString('hex');

/** A primary in iad and a replica in syd, `rttMs` apart, with `schema` created and replicated. */
export async function startCluster(rttMs: number, schema: string): Promise<LocalCluster> {
  const cluster = await LocalCluster.start({
    temporary: true,
    regions: ['iad', 'syd'],
    rttMs: { syd: rttMs },
  });
  try {
    await cluster.query('iad', schema);
    await cluster.waitForReplay('syd');
  } catch (error) {
    await cluster.stop();
    throw error;
  }
  return cluster;
}

/** An app instance of one region: its pool, its procedures and (if asked) the port they listen on. */
export interface App {
  region: string;
  pool: RegionalPool;
  procedures: Procedures;
  /** The port its procedures listen on (same region), or 0. */
  port: number;
  server: http.Server | null;
  warnings: string[];
  close(): Promise<void>;
}

export interface AppOptions {
  pool?: Partial<RegionalPoolOptions>;
  procedures?: Partial<Omit<ProceduresOptions, 'pool'>>;
  /** Serve calls on a port of its own. */
  listen?: boolean;
  /** Defines the app's procedures (the same code on every instance). */
  define?: (procedures: Procedures) => void;
}

/** Starts an app instance in `region` of `cluster`, configured as the cluster says. */
export async function startApp(
  cluster: LocalCluster,
  region: string,
  options: AppOptions = {},
): Promise<App> {
  const endpoints = cluster.endpoints(region);
  const warnings: string[] = [];
  const onWarning = (message: string) => warnings.push(message);
  const pool = new RegionalPool({
    primaryRegion: cluster.primaryRegion,
    region,
    databaseUrl: endpoints.databaseUrl,
    replicaUrl: endpoints.replicaUrl,
    onWarning,
    ...options.pool,
  });
  const procedures = new Procedures({
    pool,
    secret: SECRET,
    onWarning,
    env: {},
    ...options.procedures,
  });
  options.define?.(procedures);
  const server = options.listen ? await procedures.listen(0, '127.0.0.1') : null;
  return {
    region,
    pool,
    procedures,
    port: server ? Procedures.portOf(server) : 0,
    server,
    warnings,
    close: async () => {
      await procedures.close();
      await pool.end();
    },
  };
}
