import { Prisma } from '@prisma/client/extension';
import {
  activeContext,
  ConsistencyContext,
  currentContext,
  runInContext,
} from '../core/context.js';
import { RegionalError } from '../core/errors.js';

/** Adapters whose Prisma client has `regionalExtension`: the only ones allowed to run. */
export const extendedAdapters = new WeakSet<object>();

/** Prisma's request loader, as far as this module uses it (Prisma 7's `DataLoader`). */
interface Loader {
  request(request: object): Promise<unknown>;
  options: {
    singleLoader(request: object): Promise<unknown>;
    batchLoader(requests: object[]): Promise<unknown>;
  };
}

const patched = new WeakSet<Loader>();

/**
 * The Prisma client extension `regional/prisma` needs: `new PrismaClient({ adapter: new
 * PrismaRegional(pool) }).$extends(regionalExtension)`. Prisma runs the queries made in one
 * tick on one turn of the event loop, and `findUnique` calls of the same shape as one query,
 * all in the context of whichever caller came first: a read right after its own write in
 * another request would run with the first caller's positions and could miss that write. With
 * the extension each query runs in its caller's context, and a query serving several callers
 * in one that needs what all of them need. It adds no per-query work of Prisma's own
 * extension machinery (no query hook). Without it, the adapter refuses to run
 * (`REGIONAL_PRISMA_NOT_EXTENDED`).
 *
 * @example
 * import { PrismaRegional, regionalExtension } from 'regional/prisma';
 * const prisma = new PrismaClient({ adapter: new PrismaRegional(pool) }).$extends(regionalExtension);
 */
export const regionalExtension = Prisma.defineExtension((client) => {
  keepContexts(client);
  return client;
});

/** Makes the queries of `client` run in their callers' contexts (see {@link regionalExtension}). */
function keepContexts(client: unknown): void {
  const internals = client as {
    _requestHandler?: { dataloader?: Partial<Loader> };
    _engineConfig?: { adapter?: unknown };
    _clientVersion?: string;
  };
  const loader = internals._requestHandler?.dataloader;
  if (
    typeof loader?.request !== 'function' ||
    typeof loader.options?.singleLoader !== 'function' ||
    typeof loader.options.batchLoader !== 'function'
  ) {
    throw new RegionalError(
      'REGIONAL_PRISMA_VERSION',
      `regional/prisma knows how Prisma 7 runs the queries made in one tick; this Prisma client (${internals._clientVersion ?? 'unknown version'}) works differently inside. Use @prisma/client 7.x.`,
    );
  }
  const adapter = internals._engineConfig?.adapter;
  if (adapter) extendedAdapters.add(adapter);
  const known = loader as Loader;
  if (patched.has(known)) return;
  patched.add(known);

  const contexts = new WeakMap<object, ConsistencyContext>();
  const { request } = known;
  const { singleLoader, batchLoader } = known.options;
  known.request = function (this: Loader, made: object) {
    contexts.set(made, currentContext());
    return request.call(this, made);
  };
  known.options.singleLoader = (made) =>
    inContextOf([contexts.get(made)], () => singleLoader(made));
  known.options.batchLoader = (made) =>
    inContextOf(
      made.map((one) => contexts.get(one)),
      () => batchLoader(made),
    );
}

/**
 * Runs `run` in the context of its callers: the one context they share, or a context that
 * needs what each of them needs. Positions the run records (a read served by the primary, a
 * commit) then go to every caller, so none of them reads less later.
 */
function inContextOf<T>(
  callers: (ConsistencyContext | undefined)[],
  run: () => Promise<T>,
): Promise<T> {
  const members = [...new Set(callers.filter((c): c is ConsistencyContext => c !== undefined))];
  const [first] = members;
  if (!first) return run();
  if (members.length === 1) return activeContext() === first ? run() : runInContext(first, run);
  const merged = new ConsistencyContext(first.entries());
  merged.maxWaitMs = first.maxWaitMs;
  merged.onLag = first.onLag;
  merged.recordsReads = members.some((member) => member.recordsReads);
  for (const member of members.slice(1)) {
    for (const [source, position] of member.entries()) merged.observe(source, position);
  }
  const before = new Map(merged.entries());
  return runInContext(merged, run).finally(() => {
    for (const member of members) member.waitedMs += merged.waitedMs;
    for (const [source, position] of merged.entries()) {
      if (before.get(source) === position) continue;
      for (const member of members) member.observe(source, position);
    }
  });
}
