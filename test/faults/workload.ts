import { setTimeout as sleep } from 'node:timers/promises';
import type { Agent } from 'undici';
import { FaultClient } from './client.js';
import type { Op } from './history.js';

export interface WorkloadOptions {
  /** Each region's edge entry URL. */
  entries: Record<string, string>;
  clientsPerRegion: number;
  /** Makes call keys unique across scenarios and runs (call records outlive the tables). */
  keyPrefix: string;
  agent: Agent;
  clock: () => number;
  /** Hard time-out of every request. */
  timeoutMs: number;
  /** Operations per client, at most (each call attempt counts). */
  maxOps: number;
  /** The workload stops by itself this long after it started. */
  maxDurationMs: number;
  /** Pause between a client's operations. */
  thinkMs: number;
  seed?: number;
}

/** Attempts of a call whose answer was lost (network error, time-out, 5xx), with backoff. */
const CALL_ATTEMPTS = 4;
const BACKOFF_MS = 200;

/** A small deterministic generator, so that a run's mix of operations can be repeated. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Clients in every region, each running sequentially: writes (`POST /items`), procedure
 * calls (`POST /calls`, retried with the same key while the answer is lost) and reads of its
 * own items, often a read right after a write. Bounded in operations and in time.
 */
export class Workload {
  readonly history: Op[] = [];
  private stopped = false;
  private running: Promise<void>[] = [];
  /** Calls waiting for their answer right now (to kill an instance while one is in flight). */
  callsInFlight = 0;

  constructor(private readonly options: WorkloadOptions) {}

  start(): void {
    const { entries, clientsPerRegion } = this.options;
    const regions = Object.keys(entries);
    let index = 0;
    for (let i = 0; i < clientsPerRegion; i++) {
      for (const region of regions) {
        const name = `c${index}`;
        const client = new FaultClient(name, region, entries[region] as string, {
          agent: this.options.agent,
          history: this.history,
          clock: this.options.clock,
          timeoutMs: this.options.timeoutMs,
        });
        this.running.push(this.loop(client, random((this.options.seed ?? 1) * 7919 + index)));
        index++;
      }
    }
  }

  /** Stops the clients after their current operation; resolves once they have all finished. */
  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.running);
  }

  private async loop(client: FaultClient, rand: () => number): Promise<void> {
    const { maxOps, maxDurationMs, clock, thinkMs } = this.options;
    const deadline = clock() + maxDurationMs;
    let ops = 0;
    let wrote = false;
    const more = () => !this.stopped && ops < maxOps && clock() < deadline;
    while (more()) {
      const n = ops;
      // Often a read right after a write: the moment read-your-writes is most at risk.
      if (rand() < (wrote ? 0.7 : 0.45)) {
        ops++;
        wrote = false;
        await client.send('read', 'GET', `/items?client=${client.name}`);
      } else if (rand() < 0.6) {
        ops++;
        wrote = true;
        const value = `${client.name}-${n}`;
        await client.send('write', 'POST', '/items', { value }, { client: client.name, value });
      } else {
        wrote = true;
        const value = `${client.name}-${n}`;
        const key = `${this.options.keyPrefix}-${value}`;
        for (let attempt = 1; attempt <= CALL_ATTEMPTS && more(); attempt++) {
          ops++;
          if (attempt > 1) await sleep(BACKOFF_MS * 2 ** (attempt - 2));
          this.callsInFlight++;
          const body = { client: client.name, value, key };
          const op = await client
            .send('call', 'POST', '/calls', { value, key, attempt }, body)
            .finally(() => this.callsInFlight--);
          // Retried only while the outcome is unknown: no answer, or a 5xx.
          if (op.status !== null && op.status < 500) break;
        }
      }
      if (thinkMs > 0) await sleep(thinkMs);
    }
  }
}
