import {
  type Keyring,
  RequestVerifier,
  type SignatureFailure,
  signRequest,
} from '../core/signing.js';

/** Request header by which a proxying instance marks a request it replays. */
export const REPLAY_HEADER = 'x-regional-replay';
/** Request header Fly's proxy (and the local edge) adds to a request replayed by `fly-replay`. */
export const FLY_REPLAY_SRC = 'fly-replay-src';

/** What a request's replay marker says. */
export type MarkerCheck =
  | { kind: 'none' }
  | { kind: 'trusted' }
  | { kind: 'untrusted'; why: SignatureFailure };

/**
 * The "already replayed" marker. A replayed request must never be replayed again, and a client
 * must not be able to claim that its request was replayed (to slip a write past the replay, or
 * to make an instance loop): the marker is a request signature (shared secret, timestamp,
 * nonce accepted once) over method and path. In `proxy` mode it travels as the
 * `x-regional-replay` header; in `fly-replay` mode as the `state` that Fly's proxy hands back
 * in `fly-replay-src`.
 */
export class ReplayMarkers {
  private readonly verifier: RequestVerifier;

  constructor(private readonly keyring: Keyring) {
    // The body is streamed on (proxy) or re-sent by the platform (fly-replay): not covered.
    this.verifier = new RequestVerifier(keyring, { allowUnsignedBody: true });
  }

  /** The `x-regional-replay` header value for a request being replayed now. */
  header(method: string, path: string): string {
    return signRequest(this.keyring, { method, path, body: null });
  }

  /** The `state` of a `fly-replay` answer: the same signature, in characters Fly passes on. */
  flyState(method: string, path: string): string {
    return Buffer.from(this.header(method, path)).toString('base64url');
  }

  /**
   * Checks the marker a request carries (each genuine marker is accepted once). Both forms are
   * looked at, so a client's bogus header cannot hide a genuine marker.
   */
  check(method: string, path: string, header: (name: string) => string | undefined): MarkerCheck {
    const state = flyReplayField(header(FLY_REPLAY_SRC), 'state');
    const candidates = [
      header(REPLAY_HEADER),
      state === undefined ? undefined : Buffer.from(state, 'base64url').toString('utf8'),
    ];
    let failure: SignatureFailure | null = null;
    for (const signature of candidates) {
      if (signature === undefined) continue;
      const why = this.verifier.verify(signature, { method, path, body: null });
      if (why === null) return { kind: 'trusted' };
      failure ??= why;
    }
    return failure === null ? { kind: 'none' } : { kind: 'untrusted', why: failure };
  }
}

/** A field of a `fly-replay-src` header (`instance=…;region=…;t=…;state=…`). */
export function flyReplayField(value: string | undefined, name: string): string | undefined {
  if (!value) return undefined;
  for (const field of value.split(';')) {
    const eq = field.indexOf('=');
    if (eq > 0 && field.slice(0, eq).trim() === name) return field.slice(eq + 1).trim();
  }
  return undefined;
}
