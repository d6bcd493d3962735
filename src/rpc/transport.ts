import { setTimeout as sleep } from 'node:timers/promises';
import type { Dispatcher } from 'undici';
import { RegionalError } from '../core/errors.js';
import { isConnectionError, type RegionInstances } from '../core/instances.js';
import {
  BODY_DIGEST_HEADER,
  type Keyring,
  SIGNATURE_HEADER,
  sha256Hex,
  signRequest,
} from '../core/signing.js';
import {
  CallRefusedError,
  InstancesUnreachableError,
  ProcedureError,
  ProcedureNotFoundError,
  ProtocolVersionError,
} from './errors.js';
import {
  CONTENT_TYPE,
  commonVersion,
  type ErrorEnvelope,
  formatRange,
  parseRange,
  type ResultEnvelope,
  VERSIONS_HEADER,
  type VersionRange,
} from './protocol.js';

/** The instances of one region, as a call target. */
export interface Target {
  region: string;
  instances: RegionInstances;
  /** Names where the URL came from, for messages: `REGIONAL_PRIMARY_URL=http://…`. */
  label: string;
}

/** One call to send. */
export interface Outgoing {
  path: string;
  id: string;
  /** Names the call in messages: `procedure "createPost"`. */
  what: string;
  /** For errors that come back: the procedure's name (or `statement`). */
  procedure: string;
  /** The body in protocol `version`. */
  encode(version: number): string;
  /** May the request be sent again (to this or another instance) after `error`? */
  retryable(error: unknown): boolean;
  /** What to throw for an error that may not be retried (default: the error). */
  unretryable?(error: unknown): Error;
  timeoutMs: number;
}

/** Largest answer read from an instance. */
const MAX_ANSWER_BYTES = 64 * 1024 * 1024;
const GATEWAY_STATUSES = new Set([502, 503, 504]);

/** An answer that is no answer: a proxy in between said the instance is unavailable. */
class UnavailableError extends RegionalError {
  constructor(status: number) {
    super('REGIONAL_INSTANCE_UNAVAILABLE', `a proxy answered ${status} instead of the instance`);
  }
}

/** True for a failure after which the request may have reached the instance or not. */
export function isTransportFailure(error: unknown): boolean {
  return isConnectionError(error) || error instanceof UnavailableError;
}

/** True for a failure that shows the request cannot have reached any instance. */
export function isUndelivered(error: unknown): boolean {
  const code = (error as { code?: string } | undefined)?.code ?? '';
  return [
    'ECONNREFUSED',
    'ENOTFOUND',
    'EAI_AGAIN',
    'EHOSTUNREACH',
    'ENETUNREACH',
    'UND_ERR_CONNECT_TIMEOUT',
  ].includes(code);
}

interface Answer {
  status: number;
  versions: VersionRange | null;
  envelope: ResultEnvelope | ErrorEnvelope | null;
  contentType: string;
}

async function readAnswer(response: Dispatcher.ResponseData, timeoutMs: number): Promise<Answer> {
  const timer = setTimeout(() => {
    response.body.destroy(
      Object.assign(new Error(`the answer's body did not arrive within ${timeoutMs} ms`), {
        code: 'UND_ERR_BODY_TIMEOUT',
      }),
    );
  }, timeoutMs);
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of response.body) {
      size += (chunk as Buffer).length;
      if (size > MAX_ANSWER_BYTES) {
        response.body.destroy();
        throw new RegionalError(
          'REGIONAL_ANSWER_TOO_LARGE',
          `The answer is larger than ${MAX_ANSWER_BYTES} bytes; return less from the procedure.`,
        );
      }
      chunks.push(chunk as Buffer);
    }
  } finally {
    clearTimeout(timer);
  }
  const header = (name: string) => {
    const value = response.headers[name];
    return Array.isArray(value) ? value[0] : value;
  };
  const versions = parseRange(header(VERSIONS_HEADER));
  const contentType = header('content-type') ?? '';
  let envelope: Answer['envelope'] = null;
  if (versions && contentType.startsWith(CONTENT_TYPE)) {
    try {
      envelope = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      envelope = null;
    }
  }
  return { status: response.statusCode, versions, envelope, contentType };
}

/**
 * Sends signed calls to a region's instances: each attempt signed afresh (a nonce is accepted
 * once), the same call id on every attempt, the protocol version negotiated during deploys.
 */
export class Transport {
  /** The version last agreed with each target, while it differs from ours. */
  private readonly versions = new WeakMap<RegionInstances, number>();

  constructor(
    private readonly keyring: Keyring,
    private readonly protocol: VersionRange,
    private readonly attempts: number,
    private readonly onRetry: () => void,
  ) {}

  /** Sends `call` and resolves with the result envelope; throws what the instance answered otherwise. */
  async send(target: Target, call: Outgoing): Promise<ResultEnvelope> {
    let version = this.versions.get(target.instances) ?? this.protocol.max;
    let negotiated = false;
    let lastError: unknown;
    for (let attempt = 1; attempt <= this.attempts; attempt++) {
      if (attempt > 1) {
        this.onRetry();
        await sleep(Math.min(1000, 50 * 2 ** (attempt - 1)));
      }
      const body = call.encode(version);
      // The signature covers the body through its digest, so the instance can check the
      // signature before it reads the body.
      const sha256 = sha256Hex(body);
      let answer: Answer;
      try {
        const response = await target.instances.request(
          {
            method: 'POST',
            path: call.path,
            headers: {
              'content-type': CONTENT_TYPE,
              [BODY_DIGEST_HEADER]: sha256,
              [SIGNATURE_HEADER]: signRequest(this.keyring, {
                method: 'POST',
                path: call.path,
                body: { sha256 },
              }),
            },
            body,
            headersTimeoutMs: call.timeoutMs,
          },
          call.retryable,
        );
        answer = await readAnswer(response, call.timeoutMs);
        if (!answer.versions && GATEWAY_STATUSES.has(answer.status))
          throw new UnavailableError(answer.status);
      } catch (error) {
        if (!call.retryable(error)) throw call.unretryable?.(error) ?? error;
        lastError = error;
        continue;
      }
      const error = answer.envelope && 'error' in answer.envelope ? answer.envelope.error : null;
      if (error?.code === 'REGIONAL_PROTOCOL_VERSION' && answer.versions && !negotiated) {
        const common = commonVersion(this.protocol, answer.versions);
        if (common !== null && common !== version) {
          // The other side is older or newer: write again in a version both speak.
          version = common;
          this.versions.set(target.instances, common);
          negotiated = true;
          attempt--;
          continue;
        }
      }
      return this.interpret(target, call, answer, version);
    }
    throw new InstancesUnreachableError(
      target.region,
      call.id,
      `No instance in ${target.region} (${target.label}) answered ${call.what} after ${this.attempts} attempt${this.attempts > 1 ? 's' : ''} ` +
        `(last: ${(lastError as Error)?.message ?? lastError}). Whether it ran there is unknown; calling again with the same id (callId ${call.id}) runs it at most once.`,
      { cause: lastError },
    );
  }

  private interpret(
    target: Target,
    call: Outgoing,
    answer: Answer,
    version: number,
  ): ResultEnvelope {
    const { envelope, versions } = answer;
    if (!envelope || !versions) {
      throw new CallRefusedError(
        answer.status,
        'REGIONAL_NOT_REGIONAL',
        `The instance in ${target.region} (${target.label}) answered ${call.what} with HTTP ${answer.status} ` +
          `(${answer.contentType || 'no content type'}), not as Regional does: is the procedures handler mounted there, at ${call.path.replace(/\/[^/]*$/, '')}?`,
      );
    }
    if (answer.status === 200 && 'result' in envelope) {
      // Remember what the target speaks now (a deploy may have finished), up to our newest.
      const common = commonVersion(this.protocol, versions);
      if (common !== null && common !== version) this.versions.set(target.instances, common);
      return envelope;
    }
    const wire =
      'error' in envelope ? envelope.error : { name: 'Error', message: 'no error given' };
    if (wire.code === 'REGIONAL_PROTOCOL_VERSION') {
      throw new ProtocolVersionError(
        `This instance speaks procedure protocol ${formatRange(this.protocol)}; the instance in ${target.region} (${target.label}) ` +
          `speaks ${formatRange(versions)}. They share no version, so they cannot call each other: finish the deploy, ` +
          'or deploy first a version that speaks both.',
      );
    }
    if (answer.status === 404 && wire.code === 'REGIONAL_PROCEDURE_NOT_FOUND') {
      throw new ProcedureNotFoundError(
        call.procedure,
        `on the instance in ${target.region} (${target.label})`,
      );
    }
    if (answer.status >= 500) throw new ProcedureError(call.procedure, target.region, wire);
    throw new CallRefusedError(
      answer.status,
      wire.code ?? 'REGIONAL_CALL_REFUSED',
      `The instance in ${target.region} refused ${call.what} (HTTP ${answer.status}${wire.reason ? `, ${wire.reason}` : ''}): ${wire.message}`,
    );
  }
}
