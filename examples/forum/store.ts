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
  'select' | 'insert' | 'update' | 'delete' | 'transaction'
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

/** The forum's queries. Every deployment of the demo runs exactly these. */
export class ForumStore {
  constructor(private readonly db: ForumDb) {}

  async listTopics(limit = 50): Promise<TopicSummary[]> {
    return this.db
      .select({ id: topics.id, title: topics.title, postCount: topics.postCount })
      .from(topics)
      .orderBy(sql`${topics.lastPostAt} DESC NULLS LAST`, desc(topics.id))
      .limit(limit);
  }

  async topic(id: number, postLimit = 100): Promise<TopicPage | null> {
    const [topic] = await this.db
      .select({ id: topics.id, title: topics.title })
      .from(topics)
      .where(eq(topics.id, id));
    if (!topic) return null;
    const rows = await this.db
      .select({ id: posts.id, body: posts.body, createdAt: posts.createdAt })
      .from(posts)
      .where(eq(posts.topicId, id))
      .orderBy(desc(posts.id))
      .limit(postLimit);
    return {
      ...topic,
      posts: rows.map((p) => ({ ...p, createdAt: new Date(p.createdAt).toISOString() })),
    };
  }

  async createTopic(title: string, userId: number | null): Promise<number> {
    const [row] = await this.db
      .insert(topics)
      .values({ title, userId })
      .returning({ id: topics.id });
    return (row as { id: number }).id;
  }

  /** A post writes several rows: the post, the topic's counters, and a notification for the topic's author. */
  async createPost(topicId: number, body: string, userId: number | null): Promise<number | null> {
    return this.db.transaction(async (tx) => {
      const [topic] = await tx
        .update(topics)
        .set({ postCount: sql`${topics.postCount} + 1`, lastPostAt: sql`now()` })
        .where(eq(topics.id, topicId))
        .returning({ authorId: topics.userId });
      if (!topic) return null;
      const [post] = await tx
        .insert(posts)
        .values({ topicId, body, userId })
        .returning({ id: posts.id });
      const postId = (post as { id: number }).id;
      if (topic.authorId !== null && topic.authorId !== userId) {
        await tx.insert(notifications).values({ userId: topic.authorId, postId });
      }
      return postId;
    });
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
    const [row] = await this.db
      .select({ id: users.id, name: users.name })
      .from(sessions)
      .innerJoin(users, eq(users.id, sessions.userId))
      .where(eq(sessions.token, token));
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
