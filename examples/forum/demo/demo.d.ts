export interface DemoOptions {
  /** Run only the Regional deployment and keep it up, printing the entry URLs as JSON. */
  serve?: boolean;
  /** Measured seconds per deployment (default 20), after `warmup` seconds (default 3). */
  duration?: number;
  warmup?: number;
  /** Cluster data directory (default `.regional/demo`). */
  dir?: string;
  /** Deployments to run, by name (default: all four). */
  only?: string[];
  /** Where demo.json and demo.svg go (default `bench/results`). */
  results?: string;
  readers?: number;
  writers?: number;
}
export declare function runDemo(options?: DemoOptions): Promise<void>;
