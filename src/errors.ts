/** The closed set of error codes of the json.v1 protocol and their close / HTTP mappings (DESIGN.md §4). */
export type ErrorCode =
  | 'InvalidAPIKey'
  | 'InvalidToken'
  | 'SessionConflict'
  | 'BadRequest'
  | 'RateLimitExceeded'
  | 'SlowConsumer'
  | 'ServiceUnavailable'
  | 'InternalServerError';

interface ErrorMapping {
  /** WebSocket close code sent after the error frame. */
  readonly close: number;
  /** HTTP status when answered before the upgrade or on the admin API. */
  readonly http: number;
  /** Close reason; kept well under the 123-byte limit of a close frame. */
  readonly reason: string;
}

export const ERRORS: Readonly<Record<ErrorCode, ErrorMapping>> = Object.freeze({
  InvalidAPIKey: { close: 4401, http: 401, reason: 'invalid-api-key' },
  InvalidToken: { close: 4403, http: 403, reason: 'invalid-token' },
  SessionConflict: { close: 4402, http: 409, reason: 'session-replaced' },
  BadRequest: { close: 4400, http: 400, reason: 'bad-request' },
  RateLimitExceeded: { close: 4429, http: 429, reason: 'rate-limit-exceeded' },
  SlowConsumer: { close: 4408, http: 503, reason: 'slow-consumer' },
  ServiceUnavailable: { close: 1013, http: 503, reason: 'try-again-later' },
  InternalServerError: { close: 1011, http: 500, reason: 'internal-error' },
});

/** Close codes that carry no error frame: standard WebSocket codes used by the lifecycle. */
export const CloseCode = Object.freeze({
  /** Closed on purpose (an administrator disconnected the session). */
  Normal: 1000,
  /** The pod is draining; reconnect elsewhere. */
  GoingAway: 1001,
  /** The client stopped answering pings. */
  PolicyViolation: 1008,
  /** A client frame was over the configured size limit. */
  MessageTooBig: 1009,
  /** The session lease could not be kept (coordination store unreachable); reconnect. */
  ServiceRestart: 1012,
});

/** The `error` payload sent to clients and returned by the admin API. */
export interface ErrorPayload {
  readonly code: ErrorCode;
  readonly message: string;
  readonly details?: Readonly<Record<string, unknown>>;
}

/** An expected failure carrying one of the protocol's error codes. */
export class GatewayError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    /** Sent to the client with the error: nothing internal goes here. */
    readonly details?: Readonly<Record<string, unknown>>,
    /** What went wrong underneath, for the logs only. */
    options?: { readonly cause: unknown },
  ) {
    super(message, options);
    this.name = 'GatewayError';
  }

  toPayload(): ErrorPayload {
    return this.details === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, details: this.details };
  }
}
