/**
 * A minimal Regional app for `regional dev --app` tests: node:http, `RegionalPool` and
 * `regionalNode`, configured entirely from the environment `regional dev` gives it.
 *
 *   POST /posts {"body": "…"} → 303 to /posts/:id      GET /posts/:id → { id, body, region }
 */
import http from 'node:http';
import { regionalNode } from '../../src/http/node/index.js';
import { RegionalPool } from '../../src/pg/pool.js';

const pool = new RegionalPool();
const region = process.env.REGION;
if (process.env.REGION === process.env.PRIMARY_REGION) {
  await pool.query('CREATE TABLE IF NOT EXISTS posts (id serial PRIMARY KEY, body text NOT NULL)');
}

const server = http.createServer(
  regionalNode(
    async (req, res) => {
      const post = /^\/posts\/(\d+)$/.exec(req.url ?? '');
      if (req.method === 'POST' && req.url === '/posts') {
        let text = '';
        for await (const chunk of req) text += chunk;
        const { body } = JSON.parse(text) as { body: string };
        const { rows } = await pool.query<{ id: number }>(
          'INSERT INTO posts (body) VALUES ($1) RETURNING id',
          [body],
        );
        res.writeHead(303, { location: `/posts/${rows[0]?.id}` }).end();
      } else if (req.method === 'GET' && post) {
        const { rows } = await pool.query('SELECT id, body FROM posts WHERE id = $1', [post[1]]);
        res.writeHead(rows[0] ? 200 : 404, { 'content-type': 'application/json' });
        res.end(JSON.stringify(rows[0] ? { ...rows[0], region } : { error: 'not found' }));
      } else {
        res.writeHead(404).end();
      }
    },
    { sources: [pool] },
  ),
);
server.listen(Number(process.env.PORT), '127.0.0.1', () => {
  console.log(`listening on ${process.env.PORT} in ${region}`);
});
process.on('SIGTERM', () => {
  server.close();
  void pool.end().then(() => process.exit(0));
});
