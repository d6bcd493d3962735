/**
 * Which requests write. By method — POST, PUT, PATCH and DELETE write; GET, HEAD and OPTIONS
 * read — with exceptions both ways: `readRoutes` (a POST that only reads, like a search form)
 * and `writeRoutes` (a GET that writes, like a sign-out link or a visit counter).
 *
 * A route is `'METHOD /path'` or `'/path'` (any method), where `:name` matches one path
 * segment and `*` anything; or a RegExp tested on `'METHOD /path'`; or a function.
 */
export type RouteSpec = string | RegExp | ((method: string, path: string) => boolean);

const WRITE_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
const ROUTE = /^(?:([A-Z]+)\s+)?(\/\S*)$/;

type Matcher = (method: string, path: string) => boolean;

function compile(spec: RouteSpec, option: string): Matcher {
  if (typeof spec === 'function') return spec;
  if (spec instanceof RegExp) return (method, path) => spec.test(`${method} ${path}`);
  const match = typeof spec === 'string' ? ROUTE.exec(spec.trim()) : null;
  if (!match) {
    throw new TypeError(
      `${option}: ${JSON.stringify(spec)} is not a route; write "POST /search", "/search", "GET /posts/:id/visit" or "GET /admin/*", or give a RegExp or a function`,
    );
  }
  const [, method, pattern] = match as unknown as [string, string | undefined, string];
  const source = pattern
    .split(/(\*|:[A-Za-z0-9_]+)/)
    .map((part) =>
      part === '*'
        ? '.*'
        : part.startsWith(':')
          ? '[^/]+'
          : part.replace(/[.+?^${}()|[\]\\]/g, '\\$&'),
    )
    .join('');
  const regex = new RegExp(`^${source}$`);
  return method ? (m, path) => m === method && regex.test(path) : (_m, path) => regex.test(path);
}

const PRIMARY_ONLY_PATH = /^\/[^\s?#:]*$/;

/** Compiles a `primaryOnlyPaths` glob (`*` matches anything, as in Fly.io's replay cache). */
function compilePath(pattern: string): (path: string) => boolean {
  if (typeof pattern !== 'string' || !PRIMARY_ONLY_PATH.test(pattern)) {
    throw new TypeError(
      `primaryOnlyPaths: ${JSON.stringify(pattern)} is not a path pattern; write a path starting with "/" where "*" matches anything, e.g. "/api/topics/*/posts" (no ":name" parts, no query)`,
    );
  }
  return globMatcher(pattern);
}

/**
 * A Fly.io replay cache glob as a matcher: `*` matches anything, the rest literally. Matched
 * without a regular expression, in time proportional to glob × text at worst: a glob with
 * many `*` (`.*.*.*…` as a RegExp) would backtrack exponentially.
 *
 * @example
 * globMatcher('example.com/api/*')('example.com/api/posts'); // true
 */
export function globMatcher(glob: string): (text: string) => boolean {
  const pattern = glob.replace(/\*+/g, '*');
  return (text) => {
    let p = 0;
    let t = 0;
    let star = -1;
    let resume = 0;
    while (t < text.length) {
      if (p < pattern.length && pattern[p] !== '*' && pattern[p] === text[t]) {
        p++;
        t++;
      } else if (p < pattern.length && pattern[p] === '*') {
        star = p++;
        resume = t;
      } else if (star >= 0) {
        p = star + 1;
        t = ++resume;
      } else return false;
    }
    while (p < pattern.length && pattern[p] === '*') p++;
    return p === pattern.length;
  };
}

/** Decides per request whether it writes; built once from the options. */
export class RouteRules {
  private readonly reads: Matcher[];
  private readonly writes: Matcher[];
  private readonly primaryOnly: { pattern: string; matches: (path: string) => boolean }[];

  constructor(
    readRoutes: readonly RouteSpec[] = [],
    writeRoutes: readonly RouteSpec[] = [],
    primaryOnlyPaths: readonly string[] = [],
  ) {
    this.reads = readRoutes.map((spec) => compile(spec, 'readRoutes'));
    this.writes = writeRoutes.map((spec) => compile(spec, 'writeRoutes'));
    this.primaryOnly = primaryOnlyPaths.map((pattern) => ({
      pattern,
      matches: compilePath(pattern),
    }));
  }

  /**
   * The `primaryOnlyPaths` pattern `pathAndQuery` falls under, if any: every request there
   * writes, whatever its method, so the platform may send it straight to the primary region.
   */
  primaryOnlyPattern(pathAndQuery: string): string | undefined {
    if (this.primaryOnly.length === 0) return undefined;
    const path = withoutQuery(pathAndQuery);
    return this.primaryOnly.find(({ matches }) => matches(path))?.pattern;
  }

  /**
   * True if the request writes. `mark` is what a framework's route says (e.g. Fastify's
   * `config: { regional: 'write' }`); it wins over the lists and the method.
   */
  isWrite(method: string, pathAndQuery: string, mark?: 'read' | 'write'): boolean {
    if (mark) return mark === 'write';
    const path = withoutQuery(pathAndQuery);
    if (this.primaryOnly.length > 0 && this.primaryOnlyPattern(path) !== undefined) return true;
    if (WRITE_METHODS.has(method)) {
      for (const matches of this.reads) if (matches(method, path)) return false;
      return true;
    }
    for (const matches of this.writes) if (matches(method, path)) return true;
    return false;
  }
}

function withoutQuery(pathAndQuery: string): string {
  const query = pathAndQuery.indexOf('?');
  return query < 0 ? pathAndQuery : pathAndQuery.slice(0, query);
}
