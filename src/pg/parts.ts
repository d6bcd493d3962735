import type { RegionalConfig } from '../core/config.js';
import type { SourceKey } from '../core/route.js';
import type { Reader } from './reader.js';
import type { Writer } from './writer.js';

/**
 * What the other parts of Regional need of a pool (`regional/rpc` its writer, its source key),
 * kept off the pool's public type: found through {@link partsOf}, which is not exported from
 * `regional/pg`.
 */
export interface PoolParts {
  readonly config: RegionalConfig;
  readonly key: SourceKey;
  readonly reader: Reader;
  readonly writer: Writer;
}

const registry = new WeakMap<object, PoolParts>();

/** Registers `pool`'s parts; the pool does this in its constructor. */
export function registerParts(pool: object, parts: PoolParts): void {
  registry.set(pool, parts);
}

/** The parts of a `RegionalPool` (a `TypeError` for anything else). */
export function partsOf(pool: object): PoolParts {
  const parts = registry.get(pool);
  if (!parts) throw new TypeError('pool: expected a RegionalPool (from regional/pg)');
  return parts;
}
