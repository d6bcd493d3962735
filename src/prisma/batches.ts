import { Prisma } from '@prisma/client/extension';
import { ConsistencyContext, currentContext, runInContext } from '../core/context.js';
import { inScope } from './scope.js';

/** The operations Prisma runs together when several are made in the same tick. */
const BATCHED = new Set(['findUnique', 'findUniqueOrThrow']);

/** Contexts with a batchable read in flight, and how many each has. */
const inFlight = new Map<ConsistencyContext, number>();

/**
 * The Prisma client extension `regional/prisma` needs: `new PrismaClient({ adapter: new
 * PrismaRegional(pool) }).$extends(regionalExtension)`. Prisma runs `findUnique` calls made in
 * the same tick as one query, in the context of whichever caller came first; a read right
 * after its own write in another request would run with the first caller's positions and
 * could miss that write. The extension notes each caller's context while its `findUnique` is
 * in flight, and such a query then waits for what all of them need. Without it, the adapter
 * refuses to run (`REGIONAL_PRISMA_NOT_EXTENDED`).
 *
 * @example
 * import { PrismaRegional, regionalExtension } from 'regional/prisma';
 * const prisma = new PrismaClient({ adapter: new PrismaRegional(pool) }).$extends(regionalExtension);
 */
export const regionalExtension = Prisma.defineExtension({
  name: 'regional',
  query: {
    $allOperations({ operation, args, query }) {
      // A Prisma promise runs when awaited: awaited here, it runs in the scope.
      const run = () => inScope({ extended: true }, async () => await query(args));
      if (!BATCHED.has(operation)) return run();
      const context = currentContext();
      inFlight.set(context, (inFlight.get(context) ?? 0) + 1);
      return run().finally(() => {
        const left = (inFlight.get(context) ?? 1) - 1;
        if (left === 0) inFlight.delete(context);
        else inFlight.set(context, left);
      });
    },
  },
});

/**
 * Runs `read` (a statement outside any transaction) so that it sees at least what every
 * context with a batchable read in flight needs: in the current context if that already
 * covers them, else in one that needs all of it. Positions the read records (a read served by
 * the primary) go back to every one of those contexts, so none of them reads less later.
 */
export function withBatchNeeds<T>(read: () => Promise<T>): Promise<T> {
  if (inFlight.size === 0) return read();
  const current = currentContext();
  let merged: ConsistencyContext | null = null;
  for (const other of inFlight.keys()) {
    if (other === current) continue;
    for (const [source, position] of other.entries()) {
      if ((current.position(source) ?? -1n) >= position) continue;
      merged ??= mergeable(current);
      merged.observe(source, position);
    }
  }
  if (!merged) return read();
  const members = [current, ...inFlight.keys()];
  const before = new Map(merged.entries());
  const context = merged;
  return runInContext(context, read).finally(() => {
    current.waitedMs += context.waitedMs;
    for (const [source, position] of context.entries()) {
      if (before.get(source) === position) continue;
      for (const member of members) member.observe(source, position);
    }
  });
}

/** A context starting from `current`'s positions, bound and lag handling. */
function mergeable(current: ConsistencyContext): ConsistencyContext {
  const context = new ConsistencyContext(current.entries());
  context.maxWaitMs = current.maxWaitMs;
  context.onLag = current.onLag;
  context.recordsReads = current.recordsReads;
  return context;
}
