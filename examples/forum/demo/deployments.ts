import type { LocalCluster } from '../../../src/testing/cluster.js';

/**
 * One way of deploying the forum: which regions run an instance, with what environment, and
 * which instance serves each region's users first.
 */
export interface Deployment {
  /** Key in the report and JSON. */
  name: 'one-region' | 'app-everywhere' | 'replicas-no-consistency' | 'regional';
  label: string;
  /** Regions with an app instance (the rest reach one through the links). */
  regions(cluster: LocalCluster): string[];
  /** Each instance's environment on top of its region's (`undefined` removes a variable). */
  env(cluster: LocalCluster, region: string): Record<string, string | undefined>;
  /** Entry regions served by another region's instance. */
  entries(cluster: LocalCluster): Record<string, string>;
}

/** Outside Regional, instances run in single-region mode: no PRIMARY_REGION. */
const withoutRegional = { PRIMARY_REGION: undefined, REGIONAL_REPLAY_MODE: undefined };

export const DEPLOYMENTS: readonly Deployment[] = [
  {
    name: 'one-region',
    label: '1. one region: app and database in the primary region only',
    regions: (cluster) => [cluster.primaryRegion],
    env: (cluster) => ({
      ...withoutRegional,
      FORUM_DEPLOYMENT: 'single',
      DATABASE_REPLICA_URL: undefined,
      ...primaryOnly(cluster),
    }),
    entries: (cluster) =>
      Object.fromEntries(
        cluster.topology.replicaRegions.map((region) => [region, cluster.primaryRegion]),
      ),
  },
  {
    name: 'app-everywhere',
    label: '2. app in every region, database in the primary region only',
    regions: (cluster) => [...cluster.topology.regions],
    env: () => ({
      ...withoutRegional,
      FORUM_DEPLOYMENT: 'single',
      DATABASE_REPLICA_URL: undefined,
    }),
    entries: () => ({}),
  },
  {
    name: 'replicas-no-consistency',
    label: "3. read replicas without consistency (Drizzle's withReplicas)",
    regions: (cluster) => [...cluster.topology.regions],
    env: () => ({ ...withoutRegional, FORUM_DEPLOYMENT: 'replicas' }),
    entries: () => ({}),
  },
  {
    name: 'regional',
    label: '4. Regional',
    regions: (cluster) => [...cluster.topology.regions],
    env: () => ({ FORUM_DEPLOYMENT: 'regional', REGIONAL_REPLAY_MODE: 'fly-replay' }),
    entries: () => ({}),
  },
];

/** The primary region's database, as reached from there: the one-region deployment's only one. */
function primaryOnly(cluster: LocalCluster): Record<string, string> {
  return { DATABASE_URL: cluster.endpoints(cluster.primaryRegion).databaseUrl };
}
