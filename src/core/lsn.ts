/**
 * A Postgres WAL position (log sequence number). Its text form is `X/Y`, two hexadecimal
 * numbers of at most 8 digits each; underneath it is a 64-bit integer, held here as a
 * `bigint` so that comparisons are exact. Never compare LSNs as strings: `'0/9' > '0/10'`.
 */
export type Lsn = bigint;

/** The smallest LSN, `0/0`. */
export const ZERO_LSN: Lsn = 0n;

const MAX_LSN = (1n << 64n) - 1n;
const LSN_TEXT = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;

/** An LSN that is not of the form `X/Y`; `input` holds what was given. */
export class LsnFormatError extends TypeError {
  constructor(readonly input: unknown) {
    super(
      `Not an LSN: ${typeof input === 'bigint' ? `${input}n` : JSON.stringify(input)}. An LSN is two hexadecimal numbers of 1 to 8 digits separated by a slash, like "16/B374D848".`,
    );
    this.name = 'LsnFormatError';
  }
}

/**
 * Parses the text form of an LSN.
 *
 * @example
 * parseLsn('16/B374D848'); // 97500059720n
 * parseLsn('nonsense'); // throws LsnFormatError
 */
export function parseLsn(text: string): Lsn {
  const match = typeof text === 'string' ? LSN_TEXT.exec(text) : null;
  if (!match) throw new LsnFormatError(text);
  return (BigInt(`0x${match[1]}`) << 32n) | BigInt(`0x${match[2]}`);
}

/**
 * Formats an LSN the way Postgres prints it (upper-case hexadecimal, no padding).
 *
 * @example
 * formatLsn(97500059720n); // '16/B374D848'
 */
export function formatLsn(lsn: Lsn): string {
  if (typeof lsn !== 'bigint' || lsn < 0n || lsn > MAX_LSN) throw new LsnFormatError(lsn);
  const high = (lsn >> 32n).toString(16).toUpperCase();
  const low = (lsn & 0xffffffffn).toString(16).toUpperCase();
  return `${high}/${low}`;
}

/**
 * Compares two LSNs: negative if `a` is earlier, 0 if equal, positive if later.
 *
 * @example
 * ['0/10', '0/9'].map(parseLsn).sort(compareLsn).map(formatLsn); // ['0/9', '0/10']
 */
export function compareLsn(a: Lsn, b: Lsn): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The later of two LSNs. */
export function maxLsn(a: Lsn, b: Lsn): Lsn {
  return a > b ? a : b;
}
