import { request } from 'undici';
import { type Keyring, RequestVerifier, SIGNATURE_HEADER, signRequest } from '../core/signing.js';

/** Where every instance answers a signed ping. */
export const PING_PATH = '/_regional/ping';

/** What an instance answers to a good ping. */
export interface PingAnswer {
  region: string | null;
  /** The instance's clock (ms since the epoch) when it answered. */
  time: number;
  /** Id of the key it signs with (never the key). */
  keyId: string;
}

export interface PingHandlerOptions {
  keyring: Keyring;
  region: string | null;
  verifier?: RequestVerifier;
}

/**
 * Answers `GET /_regional/ping` signed with a shared secret: 200 with the instance's region,
 * clock and key id, or 401 naming why the signature was refused. Other requests: `null`.
 * `regional doctor` uses it to find instances that do not share the secret, and clock skew.
 *
 * @example
 * const ping = pingHandler({ keyring, region: 'iad' });
 * const response = await ping(request); // Response | null
 */
export function pingHandler(
  options: PingHandlerOptions,
): (request: Request) => Promise<Response | null> {
  const verifier = options.verifier ?? new RequestVerifier(options.keyring);
  return async (req) => {
    const url = new URL(req.url);
    if (url.pathname !== PING_PATH) return null;
    if (req.method !== 'GET')
      return Response.json({ error: 'method', message: 'use GET' }, { status: 405 });
    const failure = verifier.verify(req.headers.get(SIGNATURE_HEADER), {
      method: 'GET',
      path: url.pathname + url.search,
      body: '',
    });
    if (failure) {
      return Response.json(
        { error: 'signature', reason: failure, message: `ping refused: signature ${failure}` },
        { status: 401 },
      );
    }
    const answer: PingAnswer = {
      region: options.region,
      time: Date.now(),
      keyId: options.keyring.current.id,
    };
    return Response.json(answer);
  };
}

export type PingResult =
  | { ok: true; answer: PingAnswer; rttMs: number; skewMs: number }
  | { ok: false; status: number | null; reason: string };

/**
 * Pings the instance at `baseUrl` with a signed request. `skewMs` estimates how far its clock
 * is ahead of ours (half the round trip corrected).
 */
export async function pingInstance(
  baseUrl: string,
  keyring: Keyring,
  timeoutMs = 5000,
): Promise<PingResult> {
  const url = new URL(PING_PATH, baseUrl);
  const sent = Date.now();
  try {
    const response = await request(url, {
      method: 'GET',
      headers: {
        [SIGNATURE_HEADER]: signRequest(keyring, { method: 'GET', path: url.pathname, body: '' }),
      },
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
    });
    const received = Date.now();
    const text = await response.body.text();
    if (response.statusCode !== 200) {
      let reason = text;
      try {
        reason = (JSON.parse(text) as { reason?: string; message?: string }).reason ?? reason;
      } catch {
        // Not our JSON: keep the text.
      }
      return { ok: false, status: response.statusCode, reason: reason.slice(0, 200) };
    }
    const answer = JSON.parse(text) as PingAnswer;
    const rttMs = received - sent;
    return { ok: true, answer, rttMs, skewMs: answer.time - (sent + rttMs / 2) };
  } catch (error) {
    return { ok: false, status: null, reason: (error as Error).message };
  }
}
