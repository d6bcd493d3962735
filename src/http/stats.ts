/** Counters of a {@link RegionalHttp} since it was made. */
export interface HttpStats {
  /** Requests seen. */
  requests: number;
  /** Requests replayed in the primary region, by why. */
  replays: {
    /** A writing request (by method or `writeRoutes`) arriving in a replica region. */
    write: number;
    /** A read request whose handler tried to write (blocked write or SQLSTATE 25006). */
    writeInRead: number;
    /** The local replica had not replayed the client's token within `maxWaitMs` (before the handler, or at its first read). */
    lag: number;
  };
  /** Proxied replays that failed (the primary region's instances unreachable, or timed out). */
  replayFailures: number;
  /** Replayed requests (trusted marker) served here, never replayed again. */
  replayedServed: number;
  /** Markers claiming a replay that were refused (forged, other secret, reused, stale). */
  untrustedMarkers: number;
  /** Read requests that tried to write when they could no longer be replayed. */
  writeInReadFailures: number;
  /** Requests that waited for the local replica to reach their token. */
  tokenWaits: number;
  /** Of those, the ones that missed `maxWaitMs` (or found the replica unavailable). */
  tokenWaitTimeouts: number;
  /**
   * Requests whose token a pool's first read checks in its own round trip instead (lag policy
   * `replay`); one whose replica stays behind is counted under `replays.lag`.
   */
  tokenChecksOnRead: number;
  /** Tokens ignored, never waited on, by why. */
  tokensIgnored: { malformed: number; forged: number; unknownKey: number; expired: number };
  /** Tokens put on responses. */
  tokensIssued: number;
  /**
   * Handler errors of Regional's own that were answered 503/504 with their code (the primary
   * or a replica unavailable, a time-out), instead of a bare 500.
   */
  errorsAnswered: number;
}

export function emptyStats(): HttpStats {
  return {
    requests: 0,
    replays: { write: 0, writeInRead: 0, lag: 0 },
    replayFailures: 0,
    replayedServed: 0,
    untrustedMarkers: 0,
    writeInReadFailures: 0,
    tokenWaits: 0,
    tokenWaitTimeouts: 0,
    tokenChecksOnRead: 0,
    tokensIgnored: { malformed: 0, forged: 0, unknownKey: 0, expired: 0 },
    tokensIssued: 0,
    errorsAnswered: 0,
  };
}
