import type { LocalCluster } from '../../../src/testing/cluster.js';
export interface SeededData {
  topicIds: number[];
  /** Per region, per writer: the topic that writer posts in. */
  writerTopics: Record<string, number[]>;
}
/**
 * Gives the forum a realistic start: users, 100 topics of 10 posts each, and one topic per
 * writer of the workload. `reset` empties the tables first (the benchmark starts from the same
 * data every run); without it, existing data is kept and seeding happens only when empty.
 */
export declare function seedForum(
  cluster: LocalCluster,
  options: {
    reset: boolean;
    writersPerRegion: number;
  },
): Promise<SeededData>;
