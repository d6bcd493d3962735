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
  /** A read that locks (rows, or an advisory lock): why it needs the primary. */
  lock?: boolean;
}

const READ_STARTS = new Set(['select', 'values', 'table', 'show', 'with', 'explain']);
const WRITING_KEYWORDS = new Set(['insert', 'update', 'delete', 'merge']);
const LOCK_AFTER_FOR = new Set(['update', 'share', 'no', 'key']);
// Functions that write, or whose effect only makes sense on the primary.
export const PRIMARY_FUNCTIONS: ReadonlySet<string> = new Set([
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
  /** An unquoted word, lower-cased as Postgres folds it; '' for a quoted name (never a keyword). */
  word: string;
  /**
   * The name the token spells: the lower-cased word, or a quoted name's exact text (`""`
   * unescaped; `null` for a `U&"…"` name, whose escapes could spell anything).
   */
  name: string | null;
  depth: number;
  /** The next significant character after the token, past whitespace and comments (to spot calls). */
  next: string;
}

/** The index of the first character at or after `i` that is neither whitespace nor in a comment. */
function skipBlank(sql: string, i: number): number {
  const n = sql.length;
  while (i < n) {
    const c = sql.charCodeAt(i);
    if (c === 32 || (c >= 9 && c <= 13)) i++;
    else if (c === 45 /* - */ && sql.charCodeAt(i + 1) === 45) {
      const end = sql.indexOf('\n', i);
      i = end === -1 ? n : end + 1;
    } else if (c === 47 /* / */ && sql.charCodeAt(i + 1) === 42 /* * */) {
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
    } else break;
  }
  return i;
}

/** Splits SQL into statements of tokens (words and quoted names), skipping strings and comments. */
function tokenize(sql: string): Token[][] {
  const statements: Token[][] = [[]];
  let depth = 0;
  let i = 0;
  const n = sql.length;
  const current = () => statements[statements.length - 1] as Token[];
  while (i < n) {
    i = skipBlank(sql, i);
    if (i >= n) break;
    const ch = sql[i] as string;
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
      // A quoted name: case-sensitive, and a name even when it spells a keyword.
      const unicode = sql[i - 1] === '&' && /u/i.test(sql[i - 2] ?? '');
      const start = ++i;
      while (i < n) {
        if (sql[i] === '"') {
          if (sql[i + 1] === '"') i += 2;
          else break;
        } else i++;
      }
      const name = unicode ? null : sql.slice(start, i).replaceAll('""', '"');
      i++;
      current().push({ word: '', name, depth, next: sql[skipBlank(sql, i)] ?? '' });
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
      const word = sql.slice(start, i).toLowerCase();
      current().push({ word, name: word, depth, next: sql[skipBlank(sql, i)] ?? '' });
      continue;
    }
    i++;
  }
  if (current().length === 0) statements.pop();
  return statements;
}

/**
 * Whether a call of `name` needs the primary. Conservative about quoted names: `"PG_ADVISORY_LOCK"`
 * is case-sensitive, so a user's own function rather than the built-in, and a `U&"…"` name is
 * not decoded; both still go to the primary, which runs any statement correctly, while a lock
 * taken on a replica would silently lock nothing the primary knows about.
 */
function callNeedsPrimary(name: string | null): boolean {
  return name === null || PRIMARY_FUNCTIONS.has(name.toLowerCase());
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
      return { kind: 'write', lock: true };
    if (token.word === 'into' && token.depth === 0 && first !== 'explain') return { kind: 'write' };
    if (token.next === '(' && callNeedsPrimary(token.name))
      return token.name?.includes('advisory') ? { kind: 'write', lock: true } : { kind: 'write' };
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
