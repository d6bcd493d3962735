import { describe, expect, it } from 'vitest';
import { classifySql, inspectSql, PRIMARY_FUNCTIONS } from './classify.js';

describe('classifySql', () => {
  it.each([
    'SELECT * FROM posts WHERE id = $1',
    '  select 1',
    '(SELECT 1) UNION (SELECT 2)',
    'VALUES (1), (2)',
    'TABLE posts',
    'SHOW search_path',
    'EXPLAIN SELECT * FROM posts',
    'WITH recent AS (SELECT * FROM posts) SELECT * FROM recent',
    "SELECT 'insert into x' AS text",
    'SELECT "update" FROM t',
    'SELECT $$ delete from posts $$',
    "SELECT E'it\\'s; update' AS x",
    '-- DELETE FROM posts\nSELECT 1',
    '/* UPDATE posts /* nested */ SET x = 1 */ SELECT 1',
    'SELECT 1; SELECT 2',
    'SELECT * FROM updates_log',
    'SELECT * FROM t FOR SYSTEM_TIME', // not a locking clause
  ])('read: %s', (sql) => {
    expect(classifySql(sql)).toBe('read');
  });

  it.each([
    'INSERT INTO posts (body) VALUES ($1)',
    'UPDATE posts SET body = $1',
    'DELETE FROM posts',
    'MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE',
    'CREATE TABLE x (id int)',
    'SELECT * FROM posts FOR UPDATE',
    'SELECT * FROM posts FOR NO KEY UPDATE SKIP LOCKED',
    'SELECT * FROM posts FOR SHARE',
    'SELECT * FROM posts FOR KEY SHARE',
    'WITH moved AS (DELETE FROM a RETURNING *) SELECT * FROM moved',
    'WITH x AS (INSERT INTO a VALUES (1) RETURNING id) SELECT id FROM x',
    'SELECT * INTO copy FROM posts',
    'EXPLAIN ANALYZE SELECT * FROM posts',
    'EXPLAIN (ANALYZE, BUFFERS) SELECT 1',
    "SELECT nextval('posts_id_seq')",
    'SELECT pg_advisory_lock(42)',
    'SELECT pg_try_advisory_xact_lock(1)',
    'SELECT 1; DELETE FROM posts',
    'SET search_path = app',
    'VACUUM posts',
    'LISTEN posts',
    'CALL do_things()',
    'COPY posts TO STDOUT',
  ])('write: %s', (sql) => {
    expect(classifySql(sql)).toBe('write');
  });

  // Quoted and commented forms of a call are still calls: in a replica region they would
  // otherwise take the lock on the replica.
  it.each([
    'SELECT "pg_advisory_lock"(1)',
    'SELECT pg_catalog."pg_advisory_lock"(1)',
    'SELECT "pg_catalog"."pg_advisory_lock"(1)',
    'SELECT pg_advisory_lock /* why */ (1)',
    'SELECT pg_advisory_lock /* nested /* comment */ */ (1)',
    'SELECT pg_advisory_lock -- c\n(1)',
    'SELECT "pg_advisory_lock" -- c\n /* d */ (1)',
    'SELECT "nextval"(\'posts_id_seq\')',
    'SELECT * FROM "pg_try_advisory_lock"(1)',
    // Case-sensitive, so another (user-defined) function, but conservatively a write.
    'SELECT "PG_ADVISORY_LOCK"(1)',
    'SELECT "Pg_Advisory_Lock" (1)',
    // A Unicode-escaped name may spell anything: conservatively a write when called.
    'SELECT U&"pg_advisory_lo\\0063k"(1)',
  ])('write (quoted or commented call): %s', (sql) => {
    expect(classifySql(sql)).toBe('write');
  });

  it.each([
    ...[...PRIMARY_FUNCTIONS].map((name) => `SELECT "${name}"(1)`),
    ...[...PRIMARY_FUNCTIONS].map((name) => `SELECT pg_catalog."${name}"(1)`),
    ...[...PRIMARY_FUNCTIONS].map((name) => `SELECT ${name} /* c */ (1)`),
    ...[...PRIMARY_FUNCTIONS].map((name) => `SELECT ${name} -- c\n(1)`),
  ])('every primary function, quoted or commented: %s', (sql) => {
    expect(classifySql(sql)).toBe('write');
  });

  it.each([
    // Quoted names are names, never keywords.
    'SELECT "insert", "for", "update" FROM t',
    'SELECT * FROM "for" "update"',
    'SELECT "into" FROM t',
    // A quoted name that is not a call, or a call of another function.
    'SELECT "pg_advisory_lock" FROM t',
    'SELECT "pg_advisory_lock" /* ( */ FROM t',
    'SELECT "my""function"(1)',
    'SELECT pg_advisory_lock_status -- (\n FROM t',
  ])('read (quoted names): %s', (sql) => {
    expect(classifySql(sql)).toBe('read');
  });

  it('recognises transaction control and read-only transactions', () => {
    expect(inspectSql('BEGIN')).toEqual({
      kind: 'write',
      control: 'begin',
      readOnly: false,
      statements: 1,
    });
    expect(inspectSql('begin read only')).toMatchObject({
      kind: 'read',
      control: 'begin',
      readOnly: true,
    });
    expect(inspectSql('START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY')).toMatchObject({
      control: 'begin',
      readOnly: true,
    });
    expect(inspectSql('COMMIT').control).toBe('commit');
    expect(inspectSql('END').control).toBe('commit');
    expect(inspectSql('ROLLBACK').control).toBe('rollback');
    expect(inspectSql('ROLLBACK TO SAVEPOINT a').control).toBe('savepoint');
    expect(inspectSql('SAVEPOINT a').control).toBe('savepoint');
  });

  it('counts statements', () => {
    expect(inspectSql('SELECT 1').statements).toBe(1);
    expect(inspectSql('SELECT 1;').statements).toBe(1);
    expect(inspectSql("SELECT ';'; SELECT 2").statements).toBe(2);
    expect(inspectSql('-- only a comment').statements).toBe(0);
  });
});
