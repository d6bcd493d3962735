/**
 * `regional/prisma`: Prisma 7 over a `RegionalPool`. Reads on the local replica after this
 * context's writes, writes and transactions on the primary; `readOnly` for transactions on the
 * replica, `prismaProcedure` for a whole transaction in the primary region in one round trip.
 *
 * @example
 * import { RegionalPool } from 'regional/pg';
 * import { PrismaRegional, regionalExtension } from 'regional/prisma';
 * const prisma = new PrismaClient({ adapter: new PrismaRegional(new RegionalPool()) }).$extends(
 *   regionalExtension,
 * );
 */

export type { PrismaRegionalOptions } from './adapter.js';
export { PrismaRegional, prismaProcedure } from './adapter.js';
export { regionalExtension } from './batches.js';
export { readOnly } from './scope.js';
