import { withContext } from '../../src/core/context.js';

/**
 * Runs `count` write-then-read sequences, `concurrency` at a time, each in its own context:
 * `write(id)` returns the value it wrote, `read(id)` the value it then sees. Resolves with how
 * many reads saw something older than their own write.
 */
export async function countStaleReads(
  count: number,
  write: (id: number) => Promise<number>,
  read: (id: number) => Promise<number | undefined>,
  { concurrency = 50, rows = 2000 } = {},
): Promise<number> {
  let stale = 0;
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const id = (next++ % rows) + 1;
      await withContext(async () => {
        const written = await write(id);
        const seen = await read(id);
        if (seen !== written) stale++;
      });
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return stale;
}

/** SQL creating `counters` with `rows` rows at 0, for {@link countStaleReads}. */
export const countersTable = (rows = 2000) =>
  `CREATE TABLE counters (id int PRIMARY KEY, value int NOT NULL);
   INSERT INTO counters SELECT g, 0 FROM generate_series(1, ${rows}) g;`;
