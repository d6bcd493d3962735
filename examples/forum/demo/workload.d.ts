/** What one region's users saw during the measured window. */
export interface RegionSample {
  /** Time to first byte of each read (ms). */
  reads: number[];
  /** Duration of each write (ms). */
  writes: number[];
  /** A write and the read of it that followed, together (ms). */
  writeThenReads: number[];
  /** How long those reads waited for replication before their handler ran (ms, from Server-Timing). */
  ownWriteWaits: number[];
  /** Reads of a topic right after posting in it, and how many of them missed the new post. */
  ownWriteReads: number;
  staleReads: number;
  /** Requests that failed (status >= 400 or no answer). */
  errors: number;
  /** The first few failures, for the report. */
  errorSamples: string[];
}
export interface WorkloadOptions {
  /** Entry URL per region: where that region's users connect (the edge). */
  entries: Readonly<Record<string, string>>;
  /** Topics readers pick from. */
  topicIds: readonly number[];
  /** Per region, one topic per writer: each writer posts in its own topic and reads it back. */
  writerTopics: Readonly<Record<string, readonly number[]>>;
  readersPerRegion: number;
  /** Pause between a reader's requests (ms): people read, then click. */
  readerThinkMs: number;
  writerThinkMs: number;
  warmupMs: number;
  durationMs: number;
  /** Names users uniquely across runs of the workload. */
  runId: string;
  /** Called with the fraction done, 0 to 1. */
  onProgress?: (fraction: number) => void;
}
/**
 * The demo's users: in every region, readers browsing the topic list and topics, and writers
 * posting in a topic and reading it straight back — the read that shows stale data when a
 * deployment does not keep read-your-writes. Bounded by time; every user signs in first
 * (which rotates a session token: a write).
 */
export declare function runWorkload(
  options: WorkloadOptions,
): Promise<Record<string, RegionSample>>;
