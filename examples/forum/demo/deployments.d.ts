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
export declare const DEPLOYMENTS: readonly Deployment[];
