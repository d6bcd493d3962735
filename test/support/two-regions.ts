import { RegionalPool, type RegionalPoolOptions } from '../../src/pg/pool.js';
import { LocalCluster } from '../../src/testing/cluster.js';

/**
 * A temporary iad (primary) + syd (replica) cluster with `schema` created and replayed, and a
 * RegionalPool as an app instance in syd would have it: what ORM and driver tests start from.
 */
export async function twoRegions(
  schema: string,
  { rttMs = 100, pool = {} }: { rttMs?: number; pool?: Partial<RegionalPoolOptions> } = {},
): Promise<{ cluster: LocalCluster; pool: RegionalPool }> {
  const cluster = await LocalCluster.start({
    temporary: true,
    regions: ['iad', 'syd'],
    rttMs: { syd: rttMs },
  });
  await cluster.query('iad', schema);
  await cluster.waitForReplay('syd');
  const syd = cluster.endpoints('syd');
  return {
    cluster,
    pool: new RegionalPool({
      primaryRegion: 'iad',
      region: 'syd',
      databaseUrl: syd.databaseUrl,
      replicaUrl: syd.replicaUrl,
      ...pool,
    }),
  };
}
