/** Outside Regional, instances run in single-region mode: no PRIMARY_REGION. */
const withoutRegional = { PRIMARY_REGION: undefined, REGIONAL_REPLAY_MODE: undefined };
export const DEPLOYMENTS = [
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
function primaryOnly(cluster) {
  return { DATABASE_URL: cluster.endpoints(cluster.primaryRegion).databaseUrl };
}
//# sourceMappingURL=deployments.js.map
