/**
 * Gives the forum a realistic start: users, 100 topics of 10 posts each, and one topic per
 * writer of the workload. `reset` empties the tables first (the benchmark starts from the same
 * data every run); without it, existing data is kept and seeding happens only when empty.
 */
export async function seedForum(cluster, options) {
  const primary = cluster.primaryRegion;
  if (options.reset) {
    await cluster.query(
      primary,
      'TRUNCATE users, sessions, topics, posts, notifications, request_counts RESTART IDENTITY CASCADE',
    );
  }
  const { rows } = await cluster.query(primary, 'SELECT count(*)::int AS n FROM topics');
  if (rows[0].n === 0) {
    await cluster.query(
      primary,
      `INSERT INTO users (name) SELECT 'member' || g FROM generate_series(1, 50) g;
       INSERT INTO topics (title, user_id, post_count, last_post_at)
         SELECT 'Topic ' || g || ': ' || (ARRAY['Welcome', 'Latency', 'Replication', 'Deploys', 'Caching'])[1 + g % 5],
                1 + g % 50, 10, now() - (g || ' minutes')::interval
         FROM generate_series(1, 100) g;
       INSERT INTO posts (topic_id, user_id, body, created_at)
         SELECT t, 1 + (t * 10 + p) % 50, 'Post ' || p || ' in topic ' || t || '. ' || repeat('Lorem ipsum dolor sit amet. ', 1 + p % 4),
                now() - ((t * 10 + p) || ' seconds')::interval
         FROM generate_series(1, 100) t, generate_series(1, 10) p;`,
    );
  }
  const writerTopics = {};
  for (const region of cluster.topology.regions) {
    writerTopics[region] = [];
    for (let i = 0; i < options.writersPerRegion; i++) {
      const title = `Writers' corner: ${region} ${i + 1}`;
      const existing = await cluster.query(primary, 'SELECT id FROM topics WHERE title = $1', [
        title,
      ]);
      const id =
        existing.rows[0]?.id ??
        (
          await cluster.query(primary, 'INSERT INTO topics (title) VALUES ($1) RETURNING id', [
            title,
          ])
        ).rows[0]?.id;
      writerTopics[region].push(id);
    }
  }
  const topics = await cluster.query(
    primary,
    "SELECT id FROM topics WHERE title LIKE 'Topic %' ORDER BY id",
  );
  await Promise.all(cluster.topology.replicaRegions.map((region) => cluster.waitForReplay(region)));
  return { topicIds: topics.rows.map((r) => r.id), writerTopics };
}
//# sourceMappingURL=seed.js.map
