/**
 * A replicated data source whose positions contexts and tokens carry: a Postgres cluster
 * (positions are commit LSNs), a Redis history (replication offsets). The HTTP layer waits
 * on every source a client's token names before the handler runs (or, for a source that
 * {@link ReplicatedSource.checksOnRead}, lets its first read check).
 *
 * @example
 * const sources: ReplicatedSource[] = [pool, sharedStore];
 * for (const [key, position] of token.entries()) {
 *   const source = await findByKey(sources, key);
 *   await source?.waitFor(position, 1000);
 * }
 */
export interface ReplicatedSource {
  /**
   * The source's identity and its key in contexts and tokens, e.g. `pg:<system identifier>`.
   * Positions under another key belong to another source and are never compared with this one's.
   */
  sourceKey(): Promise<string>;
  /**
   * Resolves with the milliseconds waited once this region's replica has `position` (at once
   * where reads go to the primary). Rejects with `ReplicationTimeoutError` past `timeoutMs`,
   * or `ReplicaUnavailableError` when the replica cannot be asked.
   */
  waitFor(position: bigint, timeoutMs: number): Promise<number>;
  /** True if this region's replica is known to have `position` already, without asking it. */
  hasReplayed(position: bigint): boolean;
  /**
   * True if this source's reads check a position the replica is not known to have in their own
   * round trip, and wait only when the replica turns out to be behind (`RegionalPool`). The
   * HTTP layer then leaves the check to the handler's first read instead of waiting before
   * the handler runs, which saves a round trip to the replica.
   */
  readonly checksOnRead?: boolean;
}
