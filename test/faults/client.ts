import { Agent, request } from 'undici';
import type { Op, OpKind } from './history.js';

/** Keep-alive connections to the edge, shared by every client of a run. */
export function clientAgent(): Agent {
  return new Agent({ keepAliveTimeout: 10_000, connections: 256 });
}

/**
 * One user: its own cookie jar (the consistency token travels as a cookie, nothing else
 * special is sent), one request at a time, through its region's edge entry. Every request
 * has a hard time-out and ends up in the history, answered or not.
 */
export class FaultClient {
  private readonly cookies = new Map<string, string>();

  constructor(
    readonly name: string,
    readonly region: string,
    private readonly base: string,
    private readonly options: {
      agent: Agent;
      history: Op[];
      /** ms since the run began. */
      clock: () => number;
      timeoutMs: number;
    },
  ) {}

  async send(
    kind: OpKind,
    method: 'GET' | 'POST',
    path: string,
    fields: Pick<Op, 'value' | 'key' | 'attempt'> = {},
    json?: unknown,
  ): Promise<Op> {
    const { clock, timeoutMs } = this.options;
    const headers: Record<string, string> = {};
    if (this.cookies.size > 0)
      headers.cookie = [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
    if (json !== undefined) headers['content-type'] = 'application/json';
    const op: Op = {
      client: this.name,
      region: this.region,
      kind,
      ...fields,
      invoke: clock(),
      complete: 0,
      status: null,
    };
    try {
      const response = await request(`${this.base}${path}`, {
        method,
        headers,
        body: json === undefined ? undefined : JSON.stringify(json),
        dispatcher: this.options.agent,
        signal: AbortSignal.timeout(timeoutMs),
      });
      const text = await response.body.text();
      op.status = response.statusCode;
      this.keepCookies(response.headers['set-cookie']);
      const header = (name: string) => {
        const value = response.headers[name];
        return Array.isArray(value) ? value.join(', ') : value;
      };
      const servedBy = header('x-regional-region');
      if (servedBy) op.servedBy = servedBy;
      if (header('x-regional-token')) op.token = true;
      const timing = header('server-timing');
      if (timing) op.serverTiming = timing;
      try {
        op.body = JSON.parse(text);
      } catch {
        op.text = text;
      }
      const body = op.body as { mine?: unknown; maxId?: unknown } | undefined;
      if (kind === 'read' && op.status === 200 && Array.isArray(body?.mine)) {
        op.mine = body.mine as string[];
        op.maxId = Number(body.maxId);
      }
    } catch (error) {
      const e = error as Error & { code?: string };
      op.timedOut = e.name === 'TimeoutError';
      op.error = op.timedOut
        ? `no answer within ${timeoutMs} ms`
        : `${e.code ?? e.name}: ${e.message}`;
    }
    op.complete = clock();
    this.options.history.push(op);
    return op;
  }

  private keepCookies(setCookie: string | string[] | undefined): void {
    for (const line of setCookie === undefined ? [] : [setCookie].flat()) {
      const pair = line.split(';')[0] ?? '';
      const eq = pair.indexOf('=');
      if (eq > 0) this.cookies.set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim());
    }
  }
}
