import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { PrimaryUnavailableError } from '../../src/core/errors.js';
import type { RegionalHttp, RegionalHttpOptions } from '../../src/http/index.js';
import type { RegionalPool } from '../../src/pg/pool.js';

/** Schema the test app uses (created on the primary). */
export const TEST_APP_SCHEMA = `
  CREATE TABLE posts (id serial PRIMARY KEY, body text NOT NULL);
  CREATE TABLE visits (id serial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now());
  CREATE TABLE notes (id serial PRIMARY KEY, body text);
  CREATE FUNCTION add_note(b text) RETURNS int LANGUAGE sql AS $$ INSERT INTO notes (body) VALUES (b) RETURNING id $$;
`;

/**
 * What the test app does, whatever the framework: each adapter's test maps the same routes
 * onto these (see {@link TestAppAdapter}).
 *
 * - `POST /posts` `{ body }` → insert, 303 to `/posts/:id`
 * - `GET /posts/:id` → 200 `{ id, body }` or 404
 * - `GET /visit` → a GET that writes (through the pool): `{ visits }`
 * - `GET /note-fn` → a read the replica refuses (a function that inserts), through the pool: `{ id }`
 * - `GET /note-raw` → the same on a plain pg pool on the replica (its own SQLSTATE 25006): `{ id }`
 * - `GET /stream-write` → starts the response, then tries to write; prints what happened
 * - `POST /search` → reads only (in `readRoutes`): `{ posts }`
 * - `GET /touch` → writes (in `writeRoutes`): `{ visits }`
 * - `GET /unavailable` → fails as a pool does when the primary cannot be reached
 */
export class TestApp {
  constructor(
    readonly pool: RegionalPool,
    readonly region: string,
  ) {}

  async createPost(body: string): Promise<number> {
    const { rows } = await this.pool.query<{ id: number }>(
      'INSERT INTO posts (body) VALUES ($1) RETURNING id',
      [body],
    );
    return (rows[0] as { id: number }).id;
  }

  async readPost(id: string): Promise<{ id: number; body: string } | undefined> {
    if (!/^\d+$/.test(id)) return undefined;
    const { rows } = await this.pool.query<{ id: number; body: string }>(
      'SELECT id, body FROM posts WHERE id = $1',
      [Number(id)],
    );
    return rows[0];
  }

  async visit(): Promise<{ visits: number }> {
    await this.pool.query('INSERT INTO visits DEFAULT VALUES');
    const { rows } = await this.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM visits');
    return { visits: (rows[0] as { n: number }).n };
  }

  async noteViaFunction(): Promise<{ id: number }> {
    const { rows } = await this.pool.query<{ id: number }>('SELECT add_note($1) AS id', ['fn']);
    return { id: (rows[0] as { id: number }).id };
  }

  async noteViaRawReplica(): Promise<{ id: number }> {
    const raw = this.pool.replicaPool ?? this.pool.primaryPool;
    const { rows } = await raw.query<{ id: number }>('SELECT add_note($1) AS id', ['raw']);
    return { id: (rows[0] as { id: number }).id };
  }

  async search(): Promise<{ posts: number }> {
    const { rows } = await this.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM posts');
    return { posts: (rows[0] as { n: number }).n };
  }

  /** For `/unavailable`: the error a write gets when the primary cannot be reached. */
  async unavailable(): Promise<never> {
    throw new PrimaryUnavailableError('write', false, {
      cause: Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), {
        code: 'ECONNREFUSED',
      }),
    });
  }

  /** For `/stream-write`: the text to end the response with, after trying to write. */
  async writeAfterStart(): Promise<string> {
    try {
      await this.pool.query('INSERT INTO visits DEFAULT VALUES');
      return 'wrote\n';
    } catch (error) {
      const { code, message } = error as { code?: string; message: string };
      return `error: ${code}: ${message}\n`;
    }
  }
}

/** A started app instance of one adapter. */
export interface AppHandle {
  port: number;
  regional: RegionalHttp;
  close(): Promise<void>;
}

/** How one framework serves the test app: the adapter under test. */
export interface TestAppAdapter {
  name: string;
  start(app: TestApp, options: RegionalHttpOptions): Promise<AppHandle>;
}

/** Listens on a free loopback port; `close` stops the server and Regional's connections. */
export async function listen(server: Server, regional: RegionalHttp): Promise<AppHandle> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    regional,
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await regional.close();
    },
  };
}
