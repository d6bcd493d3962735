import type { Deployment } from './deployments.js';
import type { RegionSample } from './workload.js';
/** One deployment's figures in one region, as `bench/results/demo.json` holds them. */
export interface RegionFigures {
  readP50Ms: number;
  readP99Ms: number;
  writeP50Ms: number;
  writeThenReadP50Ms: number;
  /** Time the reads after own writes waited for replication (Server-Timing; 0 outside Regional). */
  ownWriteWaitP50Ms: number;
  ownWriteWaitP99Ms: number;
  staleReads: number;
  ownWriteReads: number;
  staleRate: number;
  reads: number;
  writes: number;
  errors: number;
  errorSamples: string[];
}
export interface DeploymentFigures {
  name: Deployment['name'];
  label: string;
  regions: Record<string, RegionFigures>;
}
export interface Goal {
  goal: string;
  met: boolean;
  detail: string;
}
export declare function summarize(sample: RegionSample): RegionFigures;
/** The goals for the Regional row, checked against the figures. */
export declare function checkGoals(
  figures: readonly DeploymentFigures[],
  primaryRegion: string,
  rttMs: (a: string, b: string) => number,
): Goal[];
/** The report as people read it: per deployment and region, then the goals. */
export declare function renderReport(
  figures: readonly DeploymentFigures[],
  goals: readonly Goal[],
): string;
/** A grouped bar chart (log scale) of read and write→read p50 per deployment and region, as SVG. */
export declare function renderChart(figures: readonly DeploymentFigures[], title: string): string;
/** Writes `demo.json` and `demo.svg` into `dir`; returns their paths. */
export declare function writeDemoResults(
  dir: string,
  data: unknown,
  svg: string,
): {
  json: string;
  svg: string;
};
