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

/** Decides per request whether it writes; built once from the options. */
export class RouteRules {
  private readonly reads: Matcher[];
  private readonly writes: Matcher[];

  constructor(readRoutes: readonly RouteSpec[] = [], writeRoutes: readonly RouteSpec[] = []) {
    this.reads = readRoutes.map((spec) => compile(spec, 'readRoutes'));
    this.writes = writeRoutes.map((spec) => compile(spec, 'writeRoutes'));
  }

  /**
   * True if the request writes. `mark` is what a framework's route says (e.g. Fastify's
   * `config: { regional: 'write' }`); it wins over the lists and the method.
   */
  isWrite(method: string, pathAndQuery: string, mark?: 'read' | 'write'): boolean {
    if (mark) return mark === 'write';
    const query = pathAndQuery.indexOf('?');
    const path = query < 0 ? pathAndQuery : pathAndQuery.slice(0, query);
    if (WRITE_METHODS.has(method)) {
      for (const matches of this.reads) if (matches(method, path)) return false;
      return true;
    }
    for (const matches of this.writes) if (matches(method, path)) return true;
    return false;
  }
}
