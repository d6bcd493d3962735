import { AsyncLocalStorage } from 'node:async_hooks';
import type { TransactionClient } from '../pg/transaction.js';

/** What the Prisma calls of a block run under. */
export interface PrismaScope {
  /** Inside {@link readOnly}: transactions begin READ ONLY, on the replica. */
  readonly readOnly?: boolean;
  /** Inside a procedure body: every statement runs in the procedure's transaction. */
  readonly tx?: TransactionClient;
}

const storage = new AsyncLocalStorage<PrismaScope>();

/** The scope the current code runs in, if any. */
export function currentScope(): PrismaScope | undefined {
  return storage.getStore();
}

/** Runs `fn` in the current scope with `changes` applied. */
export function inScope<T>(changes: PrismaScope, fn: () => T): T {
  return storage.run({ ...storage.getStore(), ...changes }, fn);
}

/**
 * Runs `fn` so that Prisma's transactions in it (`$transaction`, interactive or batch) begin
 * `READ ONLY` and run on this region's replica, after this context's writes like any read.
 * Prisma has no read-only transaction of its own; without this every `$transaction` goes to
 * the primary and pays a round trip to the primary region per statement. A write inside fails
 * (the replica refuses it: SQLSTATE 25006).
 *
 * @example
 * import { readOnly } from 'regional/prisma';
 * const [topic, posts] = await readOnly(() =>
 *   prisma.$transaction([prisma.topic.findUnique({ where: { id } }), prisma.post.findMany({ where: { topicId: id } })]),
 * );
 */
export function readOnly<T>(fn: () => T): T {
  return inScope({ readOnly: true }, fn);
}
