import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { runInContext } from '../../core/context.js';
import { hasBody } from '../headers.js';
import type { RegionalHttp } from '../regional-http.js';
import type { ReplaySource } from '../replay.js';
import type { RequestState, RequestView } from '../request-state.js';
import { takeOver, writeAnswer } from './response-io.js';

export interface NodeExchangeOptions {
  /** Path and query as the client sent them (Express: `req.originalUrl`). Default `req.url`. */
  path?: string;
  /** The route's own marking, where the framework has one. */
  mark?: 'read' | 'write';
}

function firstHeader(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** The framework-neutral view of a node:http request. */
export function nodeView(req: IncomingMessage, options: NodeExchangeOptions = {}): RequestView {
  const header = (name: string) => firstHeader(req, name);
  return {
    method: (req.method ?? 'GET').toUpperCase(),
    path: options.path ?? req.url ?? '/',
    header,
    https:
      (req.socket as TLSSocket).encrypted === true ||
      header('x-forwarded-proto')?.split(',')[0]?.trim() === 'https',
    mark: options.mark,
  };
}

/**
 * One node:http request/response pair going through Regional: what node:http, Express and
 * Fastify adapters share. `begin` decides; then either `answer()` (replayed or refused: no
 * handler runs here) or `run(handler)`, which runs it in the request's context, adds
 * Regional's headers as the response starts, and replays the request instead if its handler
 * turns out to write while nothing has been sent.
 */
export class NodeExchange {
  private answering: Promise<void> | null = null;

  private constructor(
    readonly regional: RegionalHttp,
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly state: RequestState,
  ) {}

  static async begin(
    regional: RegionalHttp,
    req: IncomingMessage,
    res: ServerResponse,
    options?: NodeExchangeOptions,
  ): Promise<NodeExchange> {
    const state = await regional.begin(nodeView(req, options));
    return new NodeExchange(regional, req, res, state);
  }

  /** True if no handler runs here: call {@link answer}. */
  get handled(): boolean {
    return this.state.action !== 'run';
  }

  /** Writes the answer of a replayed or refused request. */
  async answer(): Promise<void> {
    const { regional, state, req } = this;
    if (
      state.action === 'replay' &&
      regional.settings.mode === 'proxy' &&
      hasBody(state.view.header) &&
      req.readableDidRead
    ) {
      // A body parser ran before Regional: the body is gone and cannot be forwarded.
      state.reject(
        500,
        'REGIONAL_BODY_ALREADY_READ',
        `${state.view.method} ${state.view.path} must be replayed in ${regional.settings.primaryRegion}, but its body was already read: mount Regional's middleware before any body parser.`,
      );
    }
    if (state.action === 'answer') return writeAnswer(this.res, regional.answer(state));
    return writeAnswer(this.res, await regional.replay(state, this.replaySource()));
  }

  /**
   * Prepares the response (Regional's headers as it starts; take-over if a write is stopped)
   * and runs `fn` in the request's consistency context.
   */
  run<T>(fn: () => T): T {
    this.hookHeaders();
    this.state.onBlocked = () => takeOver(this.res, () => void this.replayNow());
    return runInContext(this.state.context, fn);
  }

  /**
   * The handler threw `error`. True if the request is being replayed instead (a stopped write,
   * or a replica's 25006, while nothing has been sent); false if the error is the caller's.
   */
  failed(error: unknown): boolean {
    if (!this.state.replayInstead(error)) return false;
    takeOver(this.res, () => void this.replayNow());
    void this.replayNow();
    return true;
  }

  /**
   * The handler threw `error`, which is not a replay: if it is one of Regional's that a client
   * can act on (503/504 with its code), answers it and resolves true; else false (the caller's).
   */
  async answerError(error: unknown): Promise<boolean> {
    const answer = this.regional.errorAnswer(this.state, error);
    if (!answer) return false;
    if (this.res.headersSent) this.res.destroy();
    else await writeAnswer(this.res, answer);
    return true;
  }

  /** The handler finished: if a write was stopped and it answered nothing, replay now. */
  finished(): void {
    if (this.state.blocked) void this.replayNow();
  }

  private replayNow(): Promise<void> {
    this.answering ??= (async () => {
      try {
        await writeAnswer(this.res, await this.regional.replay(this.state, this.replaySource()));
      } catch (error) {
        this.res.destroy(error as Error);
      }
    })();
    return this.answering;
  }

  private replaySource(): ReplaySource {
    const req = this.req;
    return {
      // Read only in proxy mode: no copy for a fly-replay answer.
      get headers() {
        return Object.entries(req.headers);
      },
      // Late replays (after the handler ran) only happen for requests without a body.
      body: () => (hasBody(this.state.view.header) && !req.readableDidRead ? req : null),
    };
  }

  /** Adds Regional's headers at the moment the handler's response starts. */
  private hookHeaders(): void {
    const res = this.res;
    const writeHead = res.writeHead;
    const exchange = this;
    res.writeHead = function (this: ServerResponse, ...args: unknown[]) {
      res.writeHead = writeHead;
      const state = exchange.state;
      if (!state.blocked) {
        const [status, second, third] = args as [number, unknown, unknown];
        const reason = typeof second === 'string' ? second : undefined;
        applyHeaders(res, typeof second === 'string' ? third : second);
        state.responseStarted = true;
        for (const [name, value] of exchange.regional.responseHeaders(state)) {
          if (name === 'set-cookie' || name === 'server-timing') res.appendHeader(name, value);
          else res.setHeader(name, value);
        }
        return (writeHead as (...a: unknown[]) => ServerResponse).call(
          this,
          status,
          ...(reason === undefined ? [] : [reason]),
        );
      }
      return (writeHead as (...a: unknown[]) => ServerResponse).apply(this, args);
    } as ServerResponse['writeHead'];
  }
}

/** Applies the headers given to `writeHead` with set/append, so that ours can be added after. */
function applyHeaders(res: ServerResponse, headers: unknown): void {
  if (!headers || typeof headers !== 'object') return;
  if (Array.isArray(headers)) {
    if (headers.length > 0 && Array.isArray(headers[0])) {
      for (const [name, value] of headers as [string, string][]) res.appendHeader(name, value);
    } else {
      for (let i = 0; i + 1 < headers.length; i += 2)
        res.appendHeader(headers[i] as string, headers[i + 1] as string);
    }
    return;
  }
  for (const [name, value] of Object.entries(headers as Record<string, unknown>)) {
    if (value !== undefined) res.setHeader(name, value as string | string[]);
  }
}
