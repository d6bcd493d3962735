/**
 * Classifying SQL text for routing, conservatively: only statements that certainly read are
 * reads. `SELECT`, `VALUES`, `TABLE`, `SHOW` and `EXPLAIN` without `ANALYZE` are reads unless
 * they lock rows (`FOR UPDATE`/`FOR SHARE`), contain a data-modifying statement (a writing
 * CTE), create a table (`SELECT … INTO`) or call a function known to write or to need the
 * primary (`nextval`, advisory locks, …). Everything else is a write. A read that writes in a
 * way text cannot show is refused by the replica (SQLSTATE 25006) and retried on the primary.
 */

/** Where a statement may run. */
export type StatementKind = 'read' | 'write';

/** Transaction control a statement performs, if any. */
export type TransactionControl = 'begin' | 'commit' | 'rollback' | 'savepoint' | 'other';

export interface StatementInfo {
  kind: StatementKind;
  /** How many statements the text holds. */
  statements: number;
  /** Set for BEGIN/START TRANSACTION, COMMIT/END, ROLLBACK/ABORT, SAVEPOINT/RELEASE. */
  control?: TransactionControl;
  /** For `begin`: the transaction was declared `READ ONLY`. */
  readOnly?: boolean;
}

const READ_STARTS = new Set(['select', 'values', 'table', 'show', 'with', 'explain']);
const WRITING_KEYWORDS = new Set(['insert', 'update', 'delete', 'merge']);
const LOCK_AFTER_FOR = new Set(['update', 'share', 'no', 'key']);
// Functions that write, or whose effect only makes sense on the primary.
const PRIMARY_FUNCTIONS = new Set([
  'nextval',
  'setval',
  'pg_notify',
  'txid_current',
  'pg_current_xact_id',
  'pg_advisory_lock',
  'pg_advisory_lock_shared',
  'pg_advisory_xact_lock',
  'pg_advisory_xact_lock_shared',
  'pg_try_advisory_lock',
  'pg_try_advisory_lock_shared',
  'pg_try_advisory_xact_lock',
  'pg_try_advisory_xact_lock_shared',
  'pg_advisory_unlock',
  'pg_advisory_unlock_shared',
  'pg_advisory_unlock_all',
  'lo_create',
  'lo_import',
  'lo_unlink',
  'lo_from_bytea',
  'lo_put',
]);

interface Token {
  word: string;
  depth: number;
  /** The next significant character after the word (to spot function calls). */
  next: string;
}

/** Splits SQL into statements of lower-cased words, skipping strings, quoted names and comments. */
function tokenize(sql: string): Token[][] {
  const statements: Token[][] = [[]];
  let depth = 0;
  let i = 0;
  const n = sql.length;
  const current = () => statements[statements.length - 1] as Token[];
  while (i < n) {
    const c = sql.charCodeAt(i);
    // whitespace
    if (c === 32 || (c >= 9 && c <= 13)) {
      i++;
      continue;
    }
    const ch = sql[i] as string;
    if (ch === '-' && sql[i + 1] === '-') {
      const end = sql.indexOf('\n', i);
      i = end === -1 ? n : end + 1;
      continue;
    }
    if (ch === '/' && sql[i + 1] === '*') {
      let nest = 1;
      i += 2;
      while (i < n && nest > 0) {
        if (sql[i] === '/' && sql[i + 1] === '*') {
          nest++;
          i += 2;
        } else if (sql[i] === '*' && sql[i + 1] === '/') {
          nest--;
          i += 2;
        } else i++;
      }
      continue;
    }
    if (ch === "'") {
      // E'…' strings allow backslash escapes; the E was consumed as a word, check it.
      const previous = current()[current().length - 1];
      const escapes =
        previous !== undefined && previous.word === 'e' && sql[i - 1]?.toLowerCase() === 'e';
      if (escapes) current().pop();
      i++;
      while (i < n) {
        if (escapes && sql[i] === '\\') i += 2;
        else if (sql[i] === "'") {
          if (sql[i + 1] === "'") i += 2;
          else break;
        } else i++;
      }
      i++;
      continue;
    }
    if (ch === '"') {
      i++;
      while (i < n) {
        if (sql[i] === '"') {
          if (sql[i + 1] === '"') i += 2;
          else break;
        } else i++;
      }
      i++;
      continue;
    }
    if (ch === '$') {
      // $1 parameter, or a $tag$ … $tag$ dollar-quoted string.
      const match = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(sql.slice(i, i + 64));
      if (match) {
        const tag = match[0];
        const end = sql.indexOf(tag, i + tag.length);
        i = end === -1 ? n : end + tag.length;
        continue;
      }
      i++;
      while (i < n && /[0-9]/.test(sql[i] as string)) i++;
      continue;
    }
    if (ch === '(') {
      depth++;
      i++;
      continue;
    }
    if (ch === ')') {
      depth = Math.max(0, depth - 1);
      i++;
      continue;
    }
    if (ch === ';') {
      depth = 0;
      if (current().length > 0) statements.push([]);
      i++;
      continue;
    }
    if (/[A-Za-z_\u0080-\uffff]/.test(ch)) {
      const start = i;
      while (i < n && /[A-Za-z0-9_$\u0080-\uffff]/.test(sql[i] as string)) i++;
      let j = i;
      while (j < n && /\s/.test(sql[j] as string)) j++;
      current().push({ word: sql.slice(start, i).toLowerCase(), depth, next: sql[j] ?? '' });
      continue;
    }
    i++;
  }
  if (current().length === 0) statements.pop();
  return statements;
}

function classifyStatement(tokens: Token[]): Omit<StatementInfo, 'statements'> {
  const first = tokens[0]?.word;
  if (first === undefined) return { kind: 'read' };
  switch (first) {
    case 'begin':
    case 'start': {
      const words = tokens.map((t) => t.word);
      const readOnly = words.some((w, i) => w === 'read' && words[i + 1] === 'only');
      return { kind: readOnly ? 'read' : 'write', control: 'begin', readOnly };
    }
    case 'commit':
    case 'end':
      return { kind: 'write', control: 'commit' };
    case 'rollback':
    case 'abort':
      // ROLLBACK TO SAVEPOINT stays inside the transaction.
      return { kind: 'write', control: tokens[1]?.word === 'to' ? 'savepoint' : 'rollback' };
    case 'savepoint':
    case 'release':
      return { kind: 'write', control: 'savepoint' };
  }
  if (!READ_STARTS.has(first)) return { kind: 'write' };
  if (first === 'explain') {
    const analyze = tokens.slice(1, 8).some((t) => t.word === 'analyze' || t.word === 'analyse');
    if (analyze) return { kind: 'write' };
  }
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i] as Token;
    if (WRITING_KEYWORDS.has(token.word)) return { kind: 'write' };
    if (token.word === 'for' && LOCK_AFTER_FOR.has(tokens[i + 1]?.word ?? ''))
      return { kind: 'write' };
    if (token.word === 'into' && token.depth === 0 && first !== 'explain') return { kind: 'write' };
    if (token.next === '(' && PRIMARY_FUNCTIONS.has(token.word)) return { kind: 'write' };
  }
  return { kind: 'read' };
}

const cache = new Map<string, StatementInfo>();
const CACHE_LIMIT = 2000;

/**
 * Classifies SQL text (one or more statements): a read only if every statement reads.
 * Results are cached per text, since applications repeat their queries.
 *
 * @example
 * inspectSql('SELECT * FROM posts WHERE id = $1').kind; // 'read'
 * inspectSql('SELECT * FROM posts FOR UPDATE').kind;    // 'write'
 * inspectSql('BEGIN READ ONLY');                         // { kind: 'read', control: 'begin', readOnly: true }
 */
export function inspectSql(sql: string): StatementInfo {
  const cached = cache.get(sql);
  if (cached) return cached;
  const statements = tokenize(sql).map(classifyStatement);
  let info: StatementInfo;
  if (statements.length === 1) info = { ...(statements[0] as StatementInfo), statements: 1 };
  else if (statements.length === 0) info = { kind: 'read', statements: 0 };
  else
    info = {
      kind: statements.every((s) => s.kind === 'read') ? 'read' : 'write',
      statements: statements.length,
      ...(statements.some((s) => s.control) ? { control: 'other' as const } : {}),
    };
  if (cache.size >= CACHE_LIMIT) cache.clear();
  cache.set(sql, info);
  return info;
}

/** `read` or `write`, as {@link inspectSql} decides. */
export function classifySql(sql: string): StatementKind {
  return inspectSql(sql).kind;
}
