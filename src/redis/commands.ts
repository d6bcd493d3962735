import { exists, hasFlag } from '@ioredis/commands';
import { RedisUnsupportedCommandError } from './errors.js';

/** An argument of a Redis command. */
export type RedisArg = string | number | Buffer;

/** Where a command goes: `read`s to the local replica, `write`s (and anything unknown) to the primary. */
export type CommandKind = 'read' | 'write';

const kinds = new Map<string, CommandKind>();

const CONNECTION_STATE =
  'it changes the state of a connection the store shares between callers: use store.primary.duplicate() for a connection of your own';

/**
 * What a command is, from Redis's own command table (`@ioredis/commands`): commands flagged
 * read-only are reads; everything else — writes, scripts, PUBLISH, commands it does not know —
 * goes to the primary. Commands that would block or take over the shared connection are refused.
 *
 * @example
 * commandKind('get'); // 'read'
 * commandKind('incr'); // 'write'
 * commandKind('eval'); // 'write' (a script may write; EVAL_RO is a read)
 */
export function commandKind(name: string, args: readonly RedisArg[] = []): CommandKind {
  const command = name.toLowerCase();
  const known = kinds.get(command);
  if (known) {
    if (command === 'xread' || command === 'xreadgroup') assertNotBlocking(command, args);
    return known;
  }
  if (['multi', 'exec', 'discard', 'watch', 'unwatch'].includes(command)) {
    throw new RedisUnsupportedCommandError(
      command,
      'use store.transaction([...commands]) for MULTI/EXEC',
    );
  }
  if (
    exists(command) &&
    (hasFlag(command, 'pubsub') || ['monitor', 'select', 'client', 'reset'].includes(command)) &&
    command !== 'publish' &&
    command !== 'spublish' &&
    command !== 'pubsub'
  ) {
    throw new RedisUnsupportedCommandError(command, CONNECTION_STATE);
  }
  if (
    exists(command) &&
    hasFlag(command, 'blocking') &&
    command !== 'xread' &&
    command !== 'xreadgroup'
  ) {
    throw new RedisUnsupportedCommandError(
      command,
      `it blocks, holding up every command behind it on the shared connection: ${CONNECTION_STATE.split(': ')[1]}`,
    );
  }
  const kind: CommandKind =
    exists(command) && hasFlag(command, 'readonly') && !hasFlag(command, 'write')
      ? 'read'
      : 'write';
  kinds.set(command, kind);
  if (command === 'xread' || command === 'xreadgroup') assertNotBlocking(command, args);
  return kind;
}

function assertNotBlocking(command: string, args: readonly RedisArg[]): void {
  if (args.some((arg) => typeof arg === 'string' && arg.toUpperCase() === 'BLOCK')) {
    throw new RedisUnsupportedCommandError(
      command,
      'with BLOCK it holds up the shared connection: read a stream without BLOCK, or use a connection of your own (store.replica.duplicate())',
    );
  }
}
