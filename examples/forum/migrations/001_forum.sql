-- Up Migration
CREATE TABLE users (
  id serial PRIMARY KEY,
  name text NOT NULL UNIQUE,
  last_seen_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sessions (
  token text PRIMARY KEY,
  user_id int NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sessions_user_id ON sessions (user_id);

CREATE TABLE topics (
  id serial PRIMARY KEY,
  title text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
  user_id int REFERENCES users (id) ON DELETE SET NULL,
  post_count int NOT NULL DEFAULT 0,
  last_post_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE posts (
  id serial PRIMARY KEY,
  topic_id int NOT NULL REFERENCES topics (id) ON DELETE CASCADE,
  user_id int REFERENCES users (id) ON DELETE SET NULL,
  body text NOT NULL CHECK (length(body) BETWEEN 1 AND 10000),
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX posts_topic_id ON posts (topic_id, id);

CREATE TABLE notifications (
  id serial PRIMARY KEY,
  user_id int NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  post_id int NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notifications_user_id ON notifications (user_id);

-- Every GET counts itself here (unless Redis keeps the counters): a write on every read.
CREATE TABLE request_counts (
  day date NOT NULL,
  path text NOT NULL,
  count bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (day, path)
);

-- Down Migration
DROP TABLE request_counts;
DROP TABLE notifications;
DROP TABLE posts;
DROP TABLE topics;
DROP TABLE sessions;
DROP TABLE users;
