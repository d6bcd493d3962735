import type { Redis } from 'ioredis';
import { type ConnectionSettings, connect, connectionFailure, ready } from './connection.js';
import { CachePurgeError } from './errors.js';

/** One purge: keys and tags of one cache namespace to drop in every region. */
export interface Purge {
  namespace: string;
  keys: readonly string[];
  tags: readonly string[];
  /** Region that issued it. */
  region: string;
  /** When it was issued (`Date.now()` there). */
  at: number;
  /** Its id in the purge log. */
  id?: string;
}

/** Entries kept in the purge log; a region that falls further behind drops its whole cache. */
const LOG_LENGTH = 10_000;
const BLOCK_MS = 1_000;
const RETRY_MS = 200;

/**
 * Appends a purge to the purge log: a Redis stream on the primary, so it reaches every region
 * through replication — no server of its own — and a region that was away reads what it missed.
 */
export async function publishPurge(primary: Redis, stream: string, purge: Purge): Promise<string> {
  try {
    await ready(primary);
    return (await primary.xadd(
      stream,
      'MAXLEN',
      '~',
      LOG_LENGTH,
      '*',
      'n',
      purge.namespace,
      'k',
      JSON.stringify(purge.keys),
      't',
      JSON.stringify(purge.tags),
      'r',
      purge.region,
      'at',
      purge.at,
    )) as string;
  } catch (error) {
    throw new CachePurgeError(
      `The purge of ${describe(purge)} was applied in this region but could not be sent to the others ` +
        `(the primary Redis is unreachable: ${(error as Error).message}); their entries stay until they expire.`,
      { cause: error },
    );
  }
}

const describe = (purge: Purge) =>
  [
    purge.keys.length ? `key${purge.keys.length > 1 ? 's' : ''} ${purge.keys.join(', ')}` : '',
    purge.tags.length ? `tag${purge.tags.length > 1 ? 's' : ''} ${purge.tags.join(', ')}` : '',
  ]
    .filter(Boolean)
    .join(' and ');

/**
 * Thrown by `apply` when the cache cannot take purges now: the follower keeps its place and
 * retries without a warning of its own (the cache has said it is unreachable).
 */
export class ApplyLater extends Error {
  override name = 'ApplyLater';
}

/** Compares two stream ids (`ms-seq`). */
export function compareStreamIds(a: string, b: string): number {
  const [am = '0', as = '0'] = a.split('-');
  const [bm = '0', bs = '0'] = b.split('-');
  const ms = BigInt(am) - BigInt(bm);
  if (ms !== 0n) return ms < 0n ? -1 : 1;
  const seq = BigInt(as) - BigInt(bs);
  return seq === 0n ? 0 : seq < 0n ? -1 : 1;
}

export interface PurgeFollowerOptions {
  stream: string;
  /** Where the log is read: the local replica (`null` in the primary region), else the primary. */
  replicaUrl: string | null;
  primaryUrl: string;
  connection?: ConnectionSettings | undefined;
  /** After the replica fails, read the primary this long before trying it again. */
  replicaRetryMs: number;
  /** The cursor saved where the cache is, so a restarted process resumes where its region was. */
  loadCursor: () => Promise<string | null>;
  saveCursor: (cursor: string) => Promise<unknown>;
  /** Applies purges to the cache and saves the cursor; rejects if the cache cannot be reached. */
  apply: (purges: Purge[], cursor: string) => Promise<void>;
  /** Drops the whole cache namespace: purges were missed. */
  resync: (reason: string) => Promise<void>;
  onWarning: (message: string, error?: unknown) => void;
}

type StreamReply = [string, [string, string[]][]][] | null;

/**
 * Reads the purge log from this region's replica (blocking reads on a connection of its own)
 * and applies each purge to this region's cache, in order, saving its place as it goes. When
 * the cache cannot be reached it keeps its place and retries; when the log no longer holds
 * everything after its place (trimmed while it was away), it drops the whole namespace.
 */
export class PurgeFollower {
  private readonly clients = new Map<'replica' | 'primary', Redis>();
  private replicaDownUntil = 0;
  private cursor: string | null = null;
  private closed = false;
  private warned = false;
  private readonly done: Promise<void>;
  private startedResolve!: () => void;
  /** Resolves once the follower has its place in the log and is reading. */
  readonly started: Promise<void>;

  constructor(private readonly options: PurgeFollowerOptions) {
    this.started = new Promise((resolve) => {
      this.startedResolve = resolve;
    });
    this.done = this.run();
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const client of this.clients.values()) client.disconnect();
    await this.done;
  }

  private async run(): Promise<void> {
    let checkGap = true;
    while (!this.closed) {
      const which =
        this.options.replicaUrl !== null && Date.now() >= this.replicaDownUntil
          ? 'replica'
          : 'primary';
      try {
        const client = this.client(which);
        await ready(client);
        if (this.cursor === null) await this.findPlace(client);
        else if (checkGap) await this.checkGap(client);
        checkGap = false;
        this.startedResolve();
        const reply = (await client.xread(
          'COUNT',
          500,
          'BLOCK',
          BLOCK_MS,
          'STREAMS',
          this.options.stream,
          this.cursor as string,
        )) as StreamReply;
        const entries = reply?.[0]?.[1] ?? [];
        if (entries.length === 0) continue;
        const last = (entries.at(-1) as [string, string[]])[0];
        await this.options.apply(entries.map(toPurge), last);
        this.cursor = last;
        this.recovered();
      } catch (error) {
        if (this.closed) break;
        // After any failure the log may have moved on without us: check for a gap next time.
        checkGap = true;
        if (which === 'replica' && connectionFailure(error))
          this.replicaDownUntil = Date.now() + this.options.replicaRetryMs;
        this.failed(error);
        await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
      }
    }
  }

  /** The first start: resume from the cursor the cache holds, or from the end of the log. */
  private async findPlace(client: Redis): Promise<void> {
    const saved = await this.options.loadCursor().catch(() => null);
    if (saved) {
      this.cursor = saved;
      await this.checkGap(client);
      return;
    }
    const last = (await client.xrevrange(this.options.stream, '+', '-', 'COUNT', 1)) as [
      string,
      string[],
    ][];
    this.cursor = last[0]?.[0] ?? '0-0';
    // Saved at once, so a region that stops before any purge arrives still resumes from here.
    await this.options.saveCursor(this.cursor).catch(() => {});
  }

  private async checkGap(client: Redis): Promise<void> {
    const cursor = this.cursor as string;
    let info: unknown[];
    try {
      info = (await client.call('xinfo', 'stream', this.options.stream)) as unknown[];
    } catch (error) {
      if (!/no such key/i.test((error as Error).message)) throw error;
      // No log yet is no gap; a log that existed past our place and is gone is one.
      if (cursor !== '0-0') await this.resync(client, 'the purge log was deleted');
      return;
    }
    const field = (name: string) => info[info.indexOf(name) + 1];
    const length = Number(field('length'));
    const added = field('entries-added'); // Redis 7+
    const maxDeleted = field('max-deleted-entry-id'); // Redis 7+: entries removed by XDEL
    const first = (field('first-entry') as [string] | null)?.[0];
    let gap: boolean;
    if (typeof added === 'number' && added === length)
      gap = false; // nothing ever removed
    else if (typeof maxDeleted === 'string' && compareStreamIds(maxDeleted, cursor) > 0) gap = true;
    // Trimmed: if the oldest entry left is after our place, what lay between may be lost.
    else if (first !== undefined) gap = compareStreamIds(first, cursor) > 0;
    else gap = compareStreamIds(String(field('last-generated-id')), cursor) > 0;
    if (!gap) return;
    await this.resync(
      client,
      `purges after ${cursor} were trimmed from the log while this region was not reading it`,
    );
  }

  /** Drops the namespace, and goes on from the end of the log. */
  private async resync(client: Redis, reason: string): Promise<void> {
    await this.options.resync(reason);
    const last = (await client.xrevrange(this.options.stream, '+', '-', 'COUNT', 1)) as [
      string,
      string[],
    ][];
    this.cursor = last[0]?.[0] ?? '0-0';
    await this.options.saveCursor(this.cursor).catch(() => {});
  }

  private client(which: 'replica' | 'primary'): Redis {
    let client = this.clients.get(which);
    if (!client) {
      const url = which === 'replica' ? this.options.replicaUrl : this.options.primaryUrl;
      client = connect(url as string, {
        commandTimeoutMs: BLOCK_MS + 2_000,
        connectTimeoutMs: 2_000,
        settings: { ...this.options.connection, connectionName: 'regional-purge-follower' },
        // Failures reach the loop through its commands.
        onError: () => {},
      });
      this.clients.set(which, client);
    }
    return client;
  }

  private failed(error: unknown): void {
    if (this.warned || error instanceof ApplyLater) return;
    this.warned = true;
    this.options.onWarning(
      `Cache purges from other regions are held up (${(error as Error)?.message ?? error}); they are applied once this is resolved.`,
      error,
    );
  }

  private recovered(): void {
    if (!this.warned) return;
    this.warned = false;
    this.options.onWarning('Cache purges from other regions are applied again.');
  }
}

function toPurge([id, fields]: [string, string[]]): Purge {
  const get = (name: string) => fields[fields.indexOf(name) + 1] ?? '';
  const list = (name: string): string[] => {
    try {
      const value = JSON.parse(get(name)) as unknown;
      return Array.isArray(value) ? value.map(String) : [];
    } catch {
      return [];
    }
  };
  return {
    id,
    namespace: get('n'),
    keys: list('k'),
    tags: list('t'),
    region: get('r'),
    at: Number(get('at')),
  };
}
