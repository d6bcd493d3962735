import type { IncomingMessage, ServerResponse } from 'node:http';
import { withContext } from '../core/context.js';
import {
  BODY_DIGEST_HEADER,
  type RequestVerifier,
  SIGNATURE_HEADER,
  sha256Hex,
} from '../core/signing.js';
import {
  CONTENT_TYPE,
  envelopeVersion,
  formatRange,
  MalformedCallError,
  type ProcedureEnvelope,
  readProcedureEnvelope,
  readStatementEnvelope,
  type StatementEnvelope,
  VERSIONS_HEADER,
  type VersionRange,
  type WireError,
} from './protocol.js';

/** A request as the handler needs it, from node:http or the Fetch API. */
export interface IncomingCall {
  method: string;
  /** Path and query string, as signed. */
  path: string;
  header(name: string): string | null;
  body: AsyncIterable<Uint8Array> | null;
}

/** What the handler answers. */
export interface OutgoingAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** What a call resolves to on the instance that runs it. */
export interface Executed {
  encoded: string;
  lsn: string | null;
  replayed: boolean;
}

/** What the server runs calls with: the Procedures instance behind it. */
export interface CallExecutor {
  readonly region: string | null;
  has(name: string): boolean;
  runProcedure(name: string, call: ProcedureEnvelope): Promise<Executed>;
  /** `null` when this instance does not serve forwarded statements. */
  runStatement: ((call: StatementEnvelope) => Promise<Executed>) | null;
  sourceKey(): Promise<string>;
  /** Counts refused requests by status. */
  refused(status: number): void;
}

export interface CallServerOptions {
  basePath: string;
  maxBodyBytes: number;
  retentionMs: number;
  debug: boolean;
  protocol: VersionRange;
  /** `null` without a secret: every call is refused (503). */
  verifier: RequestVerifier | null;
  /** Longest a signed call's body may take to arrive, in ms (default {@link BODY_TIMEOUT_MS}). */
  bodyTimeoutMs?: number;
}

/** Default read deadline for a call's body: generous for a 1 MiB body across the world. */
export const BODY_TIMEOUT_MS = 10_000;

/** A refusal: answered with `status` and a Regional error code, nothing ran. */
class Refusal {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly message: string,
    readonly reason?: string,
  ) {}
}

/** The error as it travels: name, message, SQLSTATE or Regional code; the stack only in debug. */
export function toWireError(error: unknown, debug: boolean): WireError {
  if (!(error instanceof Error)) return { name: 'Error', message: String(error) };
  const e = error as Error & { code?: unknown; detail?: unknown; constraint?: unknown };
  // node-postgres names its DatabaseError "error"; the class name says more.
  const name = e.name === 'error' ? (e.constructor?.name ?? 'Error') : e.name;
  return {
    name,
    message: e.message,
    ...(typeof e.code === 'string' ? { code: e.code } : {}),
    ...(typeof e.detail === 'string' ? { detail: e.detail } : {}),
    ...(typeof e.constraint === 'string' ? { constraint: e.constraint } : {}),
    ...(debug && e.stack ? { stack: e.stack } : {}),
  };
}

/**
 * Reads a body of at most `limit` bytes within `timeoutMs`. Stops reading (and stops the source:
 * a Node stream is destroyed, a web stream cancelled) as soon as it is larger or late.
 */
async function readBody(
  body: AsyncIterable<Uint8Array> | null,
  limit: number,
  timeoutMs: number,
): Promise<Buffer | 'too-large' | 'timeout'> {
  if (!body) return Buffer.alloc(0);
  const iterator = body[Symbol.asyncIterator]();
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), timeoutMs);
  });
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    for (;;) {
      const next = await Promise.race([iterator.next(), late]);
      if (next === 'timeout') return 'timeout';
      if (next.done) return Buffer.concat(chunks);
      size += next.value.byteLength;
      if (size > limit) return 'too-large';
      chunks.push(next.value);
    }
  } finally {
    clearTimeout(timer);
    iterator.return?.()?.catch(() => {});
  }
}

const hasBody = (call: IncomingCall) =>
  Number(call.header('content-length') ?? 0) > 0 || call.header('transfer-encoding') !== null;

const PROCEDURE_NAME = /^[A-Za-z_][A-Za-z0-9_.-]{0,127}$/;

/** True for a name a procedure may have: a letter or `_`, then letters, digits, `_ . -` (128 at most). */
export const isProcedureName = (name: string) => PROCEDURE_NAME.test(name);

/**
 * The instance side of procedure calls and forwarded statements: declared size, signature (from
 * the headers, over the body's digest), then the body (size limit, read deadline, digest),
 * protocol version, region, age, then the call. Anything refused runs nothing.
 */
export class CallServer {
  private readonly rpcPrefix: string;
  private readonly statementPath: string;

  constructor(
    private readonly options: CallServerOptions,
    private readonly executor: CallExecutor,
  ) {
    this.rpcPrefix = `${options.basePath}/rpc/`;
    this.statementPath = `${options.basePath}/statement`;
  }

  /** True if `path` is one this server answers. */
  owns(path: string): boolean {
    const bare = path.split('?')[0] as string;
    return bare.startsWith(this.rpcPrefix) || bare === this.statementPath;
  }

  /** Answers `call`, or `null` if its path is not ours. */
  async handle(call: IncomingCall): Promise<OutgoingAnswer | null> {
    if (!this.owns(call.path)) return null;
    const state = { bodyRead: false };
    try {
      return await this.serve(call, state);
    } catch (error) {
      if (error instanceof Refusal) {
        this.executor.refused(error.status);
        return this.answer(
          error.status,
          {
            error: {
              name: 'CallRefusedError',
              message: error.message,
              code: error.code,
              ...(error.reason ? { reason: error.reason } : {}),
            },
          },
          undefined,
          // A body refused unread (or partly read): close rather than wait for the rest of it.
          !state.bodyRead && hasBody(call),
        );
      }
      return this.answer(500, { error: toWireError(error, this.options.debug) });
    }
  }

  private async serve(call: IncomingCall, state: { bodyRead: boolean }): Promise<OutgoingAnswer> {
    const { verifier, maxBodyBytes, protocol } = this.options;
    if (!verifier) {
      throw new Refusal(
        503,
        'REGIONAL_RPC_DISABLED',
        'This instance has no REGIONAL_SECRET, so it cannot verify calls and serves none.',
      );
    }
    if (call.method.toUpperCase() !== 'POST')
      throw new Refusal(405, 'REGIONAL_METHOD', 'Calls are POST requests.');
    const declared = Number(call.header('content-length') ?? Number.NaN);
    if (declared > maxBodyBytes) throw this.tooLarge();

    // The signature first, from the headers alone: it covers the body's digest, so nothing of
    // an unsigned (or forged, stale, replayed) call's body is read or held.
    const signature = call.header(SIGNATURE_HEADER);
    const digest = call.header(BODY_DIGEST_HEADER)?.trim() ?? null;
    if (signature && digest === null) {
      throw new Refusal(
        401,
        'REGIONAL_UNAUTHORIZED',
        `The call has no ${BODY_DIGEST_HEADER} header: send the SHA-256 of the body (lowercase hex) in it, and sign over it.`,
        'body-digest-missing',
      );
    }
    const failure = verifier.verify(signature, {
      method: call.method,
      path: call.path,
      body: { sha256: digest ?? '' },
    });
    if (failure) {
      throw new Refusal(
        401,
        'REGIONAL_UNAUTHORIZED',
        'The call is not signed with an accepted REGIONAL_SECRET, or its signature is stale or was used before.',
        failure,
      );
    }

    const body = await readBody(
      call.body,
      maxBodyBytes,
      this.options.bodyTimeoutMs ?? BODY_TIMEOUT_MS,
    );
    if (body === 'too-large') throw this.tooLarge();
    if (body === 'timeout') {
      throw new Refusal(
        408,
        'REGIONAL_BODY_TIMEOUT',
        `The call's body did not arrive within ${this.options.bodyTimeoutMs ?? BODY_TIMEOUT_MS} ms.`,
      );
    }
    state.bodyRead = true;
    if (sha256Hex(body) !== digest) {
      throw new Refusal(
        400,
        'REGIONAL_BODY_MISMATCH',
        `The call's body does not match the SHA-256 its signature covers (${BODY_DIGEST_HEADER}): it was changed on the way, or the caller signed another body.`,
      );
    }

    let parsed: ReturnType<typeof envelopeVersion>;
    try {
      parsed = envelopeVersion(body.toString('utf8'));
    } catch (error) {
      throw new Refusal(400, 'REGIONAL_MALFORMED', (error as Error).message);
    }
    if (parsed.version < protocol.min || parsed.version > protocol.max) {
      throw new Refusal(
        400,
        'REGIONAL_PROTOCOL_VERSION',
        `The call is written in procedure protocol ${parsed.version}; this instance speaks ${formatRange(protocol)}.`,
      );
    }

    const bare = call.path.split('?')[0] as string;
    if (bare === this.statementPath) {
      const envelope = this.read(() => readStatementEnvelope(parsed.envelope, parsed.version));
      this.check(envelope);
      if (!this.executor.runStatement) {
        throw new Refusal(
          403,
          'REGIONAL_FORWARDING_OFF',
          `This instance does not run forwarded statements: set REGIONAL_WRITES=forward (or writes: 'forward') on it too.`,
        );
      }
      const run = this.executor.runStatement;
      return this.ok(await withContext(() => run(envelope), { inherit: false }), parsed.version);
    }
    const name = safeDecode(bare.slice(this.rpcPrefix.length));
    const envelope = this.read(() => readProcedureEnvelope(parsed.envelope, parsed.version));
    this.check(envelope);
    if (!isProcedureName(name) || !this.executor.has(name)) {
      throw new Refusal(
        404,
        'REGIONAL_PROCEDURE_NOT_FOUND',
        `No procedure "${name.slice(0, 128)}" is registered on this instance${this.executor.region ? ` (in ${this.executor.region})` : ''}.`,
      );
    }
    return this.ok(
      await withContext(() => this.executor.runProcedure(name, envelope), { inherit: false }),
      parsed.version,
    );
  }

  private read<T>(read: () => T): T {
    try {
      return read();
    } catch (error) {
      if (error instanceof MalformedCallError)
        throw new Refusal(400, 'REGIONAL_MALFORMED', error.message);
      throw error;
    }
  }

  /** The call is meant for this region and young enough that its record still exists. */
  private check(envelope: { region: string | null; at: number }): void {
    const here = this.executor.region;
    if (envelope.region !== null && here !== null && envelope.region !== here) {
      throw new Refusal(
        421,
        'REGIONAL_MISDIRECTED',
        `The call is meant for region ${envelope.region}, but this instance runs in ${here}: check the URL the caller uses (REGIONAL_PRIMARY_URL / REGIONAL_REGION_URL).`,
      );
    }
    if (Date.now() - envelope.at > this.options.retentionMs / 2) {
      throw new Refusal(
        410,
        'REGIONAL_CALL_EXPIRED',
        `The call was made more than half the retention (${this.options.retentionMs} ms) ago; its record may be gone, so it is not run again.`,
      );
    }
  }

  private tooLarge(): Refusal {
    return new Refusal(
      413,
      'REGIONAL_TOO_LARGE',
      `The call's body is larger than ${this.options.maxBodyBytes} bytes (REGIONAL_RPC_MAX_BODY_BYTES).`,
    );
  }

  private async ok(executed: Executed, version: number): Promise<OutgoingAnswer> {
    const { encoded, lsn, replayed } = executed;
    const source = lsn === null ? null : await this.executor.sourceKey();
    return this.answer(200, { result: encoded, lsn, source, replayed }, version);
  }

  /** An answer in protocol `version` (the caller's; for refusals before it is known, our newest). */
  private answer(
    status: number,
    payload: Record<string, unknown>,
    version = this.options.protocol.max,
    close = false,
  ): OutgoingAnswer {
    return {
      status,
      headers: {
        'content-type': CONTENT_TYPE,
        'cache-control': 'no-store',
        [VERSIONS_HEADER]: `${this.options.protocol.min}-${this.options.protocol.max}`,
        // A body not read to its end: don't reuse the connection.
        ...(close ? { connection: 'close' } : {}),
      },
      body: JSON.stringify({ v: version, ...payload }),
    };
  }
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** A node:http request as an {@link IncomingCall}. */
export function fromNode(req: IncomingMessage): IncomingCall {
  return {
    method: req.method ?? 'GET',
    path: req.url ?? '/',
    header: (name) => {
      const value = req.headers[name];
      return (Array.isArray(value) ? value[0] : value) ?? null;
    },
    body: req,
  };
}

/** Writes an answer to a node:http response. */
export function toNode(answer: OutgoingAnswer, res: ServerResponse): void {
  res.writeHead(answer.status, answer.headers);
  res.end(answer.body);
}

/** A Fetch API request as an {@link IncomingCall}. */
export function fromWeb(request: Request): IncomingCall {
  const url = new URL(request.url);
  return {
    method: request.method,
    path: url.pathname + url.search,
    header: (name) => request.headers.get(name),
    body: request.body as AsyncIterable<Uint8Array> | null,
  };
}

/** An answer as a Fetch API response. */
export const toWeb = (answer: OutgoingAnswer) =>
  new Response(answer.body, { status: answer.status, headers: answer.headers });
