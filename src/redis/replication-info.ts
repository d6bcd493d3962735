/** A Redis server's place in replication, from `INFO replication`. */
export interface ReplicationInfo {
  role: 'master' | 'slave';
  /**
   * The history its offsets belong to (`master_replid`). A primary that restarts without its
   * replication state, or a replica that resynchronises from such a primary, starts a new one;
   * offsets of two histories are never compared.
   */
  replid: string;
  /** On a primary, its replication offset; on a replica, the offset it has processed. */
  offset: bigint;
  /** On a replica, whether its link to the primary is up; always true on a primary. */
  linkUp: boolean;
}

// INFO fields are lines `name:value`; the reply starts with `# Replication`, so every field
// follows a newline. indexOf is cheaper than a regular expression per field on the poll path.
function field(text: string, name: string): string | undefined {
  const key = `\n${name}:`;
  const start = text.indexOf(key);
  if (start < 0) return undefined;
  const from = start + key.length;
  const end = text.indexOf('\n', from);
  return (end < 0 ? text.slice(from) : text.slice(from, end)).trim();
}

/**
 * Parses the reply of `INFO replication`.
 *
 * @example
 * const info = parseReplicationInfo(await redis.info('replication'));
 * info.replid; // '1f8a83a3…'
 * info.offset; // 2123n
 */
export function parseReplicationInfo(text: string): ReplicationInfo {
  const role = field(text, 'role');
  const replid = field(text, 'master_replid');
  if ((role !== 'master' && role !== 'slave') || !replid) {
    throw new Error(
      `Unexpected reply to INFO replication (is this a Redis server?): ${text.slice(0, 120)}`,
    );
  }
  const offset = field(text, role === 'slave' ? 'slave_repl_offset' : 'master_repl_offset');
  return {
    role,
    replid,
    offset: offset !== undefined && /^-?\d+$/.test(offset) ? BigInt(offset) : -1n,
    linkUp: role === 'master' || field(text, 'master_link_status') === 'up',
  };
}
