/** Response header naming the region whose instance ran the handler. */
export const REGION_HEADER = 'x-regional-region';
/** Response header (and request header, from API clients) carrying the consistency token. */
export const TOKEN_HEADER = 'x-regional-token';
/** Request header naming the region that replayed a request here (informational, unsigned). */
export const REPLAYED_FROM_HEADER = 'x-regional-replayed-from';

/** Headers that describe one connection, never passed on by a proxy (RFC 9110 §7.6.1). */
export const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/** One `Server-Timing` entry: `name;dur=12.3;desc="…"`. */
export function timing(name: string, ms: number | null, description?: string): string {
  let entry = name;
  if (ms !== null) entry += `;dur=${Math.max(0, ms).toFixed(1)}`;
  if (description) entry += `;desc="${description.replace(/["\\]/g, '')}"`;
  return entry;
}

/** The request a view describes has a body (a length above 0, or chunked). */
export function hasBody(header: (name: string) => string | undefined): boolean {
  const length = header('content-length');
  if (length !== undefined) return length.trim() !== '0';
  return header('transfer-encoding') !== undefined;
}
