import { parse, stringify } from 'devalue';
import { RegionalError } from '../core/errors.js';

/**
 * Values on the wire between instances: devalue, so what JSON loses survives the trip (Date,
 * BigInt, Map, Set, undefined, NaN, -0, RegExp, typed arrays, repeated and circular
 * references), and Buffers (what node-postgres returns for `bytea`) too. devalue's `parse`
 * builds values from data only — it never evaluates code and refuses `__proto__` keys — so
 * it is safe on bytes that came from the network.
 */

const reducers = {
  // Before devalue's own Uint8Array handling, so a Buffer comes back a Buffer.
  Buffer: (value: unknown) => Buffer.isBuffer(value) && value.toString('base64'),
};
const revivers = {
  Buffer: (value: unknown) => {
    if (typeof value !== 'string') throw new Error('Invalid input');
    return Buffer.from(value, 'base64');
  },
};

/** A value that cannot travel between instances (a class instance, a function, a symbol). */
export class UnserializableValueError extends RegionalError {
  constructor(what: string, cause: unknown) {
    const path = (cause as { path?: string }).path;
    super(
      'REGIONAL_UNSERIALIZABLE',
      `${what} cannot be sent between instances${path ? ` (at ${path})` : ''}: ${(cause as Error).message}. ` +
        'Use plain objects, arrays, strings, numbers, booleans, null, undefined, Date, BigInt, Map, Set, RegExp, typed arrays or Buffers.',
      { cause },
    );
    this.name = 'UnserializableValueError';
  }
}

/**
 * Encodes `value` for the wire; `what` names it in the error if it cannot be encoded.
 *
 * @example
 * const text = encodeValue({ at: new Date(), n: 1n }, 'the input of createPost');
 * decodeValue(text); // { at: Date, n: 1n }
 */
export function encodeValue(value: unknown, what: string): string {
  try {
    return stringify(value, reducers);
  } catch (error) {
    throw new UnserializableValueError(what, error);
  }
}

/** Decodes what {@link encodeValue} made; throws on anything else. */
export function decodeValue(text: string): unknown {
  return parse(text, revivers);
}
