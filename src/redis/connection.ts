import { type RedisOptions as IoredisOptions, Redis } from 'ioredis';

/** Extra ioredis settings for Regional's connections (not the URL, not the failure behaviour). */
export type ConnectionSettings = Omit<
  IoredisOptions,
  'enableOfflineQueue' | 'maxRetriesPerRequest' | 'autoResendUnfulfilledCommands' | 'lazyConnect'
>;

export interface ConnectOptions {
  /** Gives up on a command with no answer after this long. */
  commandTimeoutMs: number;
  connectTimeoutMs?: number;
  settings?: ConnectionSettings;
  /** Receives the connection's errors (ioredis reports each failed reconnection). */
  onError: (error: Error) => void;
}

/**
 * A connection that fails fast instead of queueing: a command issued while the server is
 * unreachable is rejected at once (never sent later), and a command in flight when the
 * connection breaks is rejected, never resent — so a write is either answered, or reported as
 * not sent, or reported as of unknown outcome. It reconnects in the background.
 */
export function connect(url: string, options: ConnectOptions): Redis {
  const client = new Redis(url, {
    ...options.settings,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    commandTimeout: options.commandTimeoutMs,
    connectTimeout: options.connectTimeoutMs ?? 5_000,
    retryStrategy: (attempt) => Math.min(attempt * 50, 500),
  });
  client.on('error', options.onError);
  return client;
}

/** The connection attempt each client is in, shared by everyone waiting for it. */
const attempts = new WeakMap<Redis, Promise<void>>();

/**
 * Resolves once `client` can take commands. Only a connection attempt in progress is waited
 * for (the first one, or a reconnection underway); between attempts it rejects at once, so a
 * server that is down costs a request nothing.
 */
export function ready(client: Redis): Promise<void> {
  if (client.status === 'ready') return Promise.resolve();
  if (client.status === 'wait') return client.connect();
  if (client.status !== 'connecting' && client.status !== 'connect') {
    return Promise.reject(new Error(`not connected (${client.status})`));
  }
  let attempt = attempts.get(client);
  if (!attempt) {
    attempt = new Promise<void>((resolve, reject) => {
      const done = (error?: Error) => {
        client.off('ready', onReady);
        client.off('error', onError);
        client.off('close', onClose);
        attempts.delete(client);
        if (error) reject(error);
        else resolve();
      };
      const onReady = () => done();
      const onError = (error: Error) => done(error);
      const onClose = () => done(new Error('connection closed while connecting'));
      client.once('ready', onReady);
      client.once('error', onError);
      client.once('close', onClose);
    });
    attempts.set(client, attempt);
  }
  return attempt;
}

const UNSENT = ["Stream isn't writeable", 'not connected', 'connection closed while connecting'];
const IN_FLIGHT = ['Connection is closed', 'Command timed out', 'Reached the max retries'];
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ENOTFOUND']);

/**
 * How a command failed: `unsent` (it never left: not applied), `in-flight` (the connection
 * broke or timed out with it outstanding: outcome unknown), or `null` for an answer from the
 * server (a command error such as WRONGTYPE), which says nothing about the connection.
 */
export function connectionFailure(error: unknown): 'unsent' | 'in-flight' | null {
  const message = (error as Error | undefined)?.message ?? '';
  if (UNSENT.some((text) => message.startsWith(text))) return 'unsent';
  if (IN_FLIGHT.some((text) => message.startsWith(text))) return 'in-flight';
  // A server still loading its data after a restart refuses everything: not applied.
  if (message.startsWith('LOADING')) return 'unsent';
  // A replica cut off from its primary that is set not to serve stale data.
  if (message.startsWith('MASTERDOWN')) return 'unsent';
  if (NETWORK_CODES.has((error as { code?: string } | undefined)?.code ?? '')) return 'unsent';
  return null;
}
