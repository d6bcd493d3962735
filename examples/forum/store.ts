import { randomBytes } from 'node:crypto';
import { desc, eq, sql } from 'drizzle-orm';
import type { NodePgDatabase } from 'drizzle-orm/node-postgres';
import {
  notifications,
  posts,
  requestCounts,
  type schema,
  sessions,
  topics,
  users,
} from './schema.js';

/** Any Drizzle database over the forum's schema: Regional's, a plain one, or `withReplicas`. */
export type ForumDb = Pick<
  NodePgDatabase<typeof schema>,
  'select' | 'insert' | 'update' | 'delete' | 'transaction' | 'execute'
>;

export interface TopicSummary {
  id: number;
  title: string;
  postCount: number;
}

export interface TopicPage {
  id: number;
  title: string;
  posts: { id: number; body: string; createdAt: string }[];
}

/**
 * The forum's queries. Every deployment of the demo runs exactly these.
 *
 * The pages every visit reads are prepared statements (Drizzle's `.prepare(name)`): the SQL is
 * built once per process and parsed once per connection, instead of on every request.
 */
export class ForumStore {
  private readonly topicsQuery;
  private readonly topicQuery;
  private readonly sessionQuery;

  constructor(private readonly db: ForumDb) {
    // The most active topics first: by latest post, a topic without posts by when it was made.
    this.topicsQuery = db
      .select({ id: topics.id, title: topics.title, postCount: topics.postCount })
      .from(topics)
      .orderBy(sql`coalesce(${topics.lastPostAt}, ${topics.createdAt}) DESC`, desc(topics.id))
      .limit(sql.placeholder('limit'))
      .prepare('forum_topics');
    // A topic and its latest posts, in one statement (a lateral join): one round trip on one
    // connection, wherever the database is.
    const latest = db
      .select({ id: posts.id, body: posts.body, createdAt: posts.createdAt })
      .from(posts)
      .where(eq(posts.topicId, topics.id))
      .orderBy(desc(posts.id))
      .limit(sql.placeholder('postLimit'))
      .as('latest');
    this.topicQuery = db
      .select({
        id: topics.id,
        title: topics.title,
        post: { id: latest.id, body: latest.body, createdAt: latest.createdAt },
      })
      .from(topics)
      .leftJoinLateral(latest, sql`true`)
      .where(eq(topics.id, sql.placeholder('id')))
      .orderBy(desc(latest.id))
      .prepare('forum_topic');
    this.sessionQuery = db
      .select({ id: users.id, name: users.name })
      .from(sessions)
      .innerJoin(users, eq(users.id, sessions.userId))
      .where(eq(sessions.token, sql.placeholder('token')))
      .prepare('forum_session_user');
  }

  async listTopics(limit = 50): Promise<TopicSummary[]> {
    return this.topicsQuery.execute({ limit });
  }

  async topic(id: number, postLimit = 20): Promise<TopicPage | null> {
    const rows = await this.topicQuery.execute({ id, postLimit });
    const [first] = rows;
    if (!first) return null;
    return {
      id: first.id,
      title: first.title,
      posts: rows.flatMap(({ post }) =>
        post ? [{ ...post, createdAt: new Date(post.createdAt).toISOString() }] : [],
      ),
    };
  }

  async createTopic(title: string, userId: number | null): Promise<number> {
    const [row] = await this.db
      .insert(topics)
      .values({ title, userId })
      .returning({ id: topics.id });
    return (row as { id: number }).id;
  }

  /**
   * A post writes several rows — the post, the topic's counters, and a notification for the
   * topic's author — in one statement, so it costs one round trip to the primary wherever the
   * app runs.
   */
  async createPost(topicId: number, body: string, userId: number | null): Promise<number | null> {
    const { rows } = await this.db.execute<{ id: number }>(sql`
      WITH topic AS (
        UPDATE ${topics} SET post_count = post_count + 1, last_post_at = now()
        WHERE id = ${topicId}
        RETURNING id, user_id
      ), post AS (
        INSERT INTO ${posts} (topic_id, body, user_id)
        SELECT id, ${body}, ${userId}::int FROM topic
        RETURNING id
      ), notify AS (
        INSERT INTO ${notifications} (user_id, post_id)
        SELECT topic.user_id, post.id FROM topic, post
        WHERE topic.user_id IS NOT NULL AND topic.user_id IS DISTINCT FROM ${userId}::int
      )
      SELECT id FROM post`);
    return rows[0]?.id ?? null;
  }

  /** Signs a user in (creating them on first sight) and rotates their session token. */
  async signIn(name: string): Promise<{ userId: number; token: string }> {
    const token = randomBytes(24).toString('base64url');
    return this.db.transaction(async (tx) => {
      const [user] = await tx
        .insert(users)
        .values({ name })
        .onConflictDoUpdate({ target: users.name, set: { lastSeenAt: sql`now()` } })
        .returning({ id: users.id });
      const userId = (user as { id: number }).id;
      await tx.delete(sessions).where(eq(sessions.userId, userId));
      await tx.insert(sessions).values({ token, userId });
      return { userId, token };
    });
  }

  async userForSession(token: string): Promise<{ id: number; name: string } | null> {
    const [row] = await this.sessionQuery.execute({ token });
    return row ?? null;
  }

  /** Records that a user was seen now (a write on a read). */
  async touch(userId: number): Promise<void> {
    await this.db.update(users).set({ lastSeenAt: sql`now()` }).where(eq(users.id, userId));
  }

  /** Counts a request (a write on a read). */
  async countRequest(path: string): Promise<void> {
    await this.db
      .insert(requestCounts)
      .values({ day: sql`current_date`, path, count: 1 })
      .onConflictDoUpdate({
        target: [requestCounts.day, requestCounts.path],
        set: { count: sql`${requestCounts.count} + 1` },
      });
  }
}
