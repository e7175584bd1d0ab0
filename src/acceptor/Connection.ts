import type { WebSocket } from 'uWebSockets.js';
import type { AdminClaims } from '../auth/tokenCodec.js';
import type { VerifiedToken } from '../auth/TokenCache.js';
import { CloseCode, ERRORS, GatewayError } from '../errors.js';
import type { ConnectionType } from '../metrics.js';
import type { Route } from '../routes/RouteRegistry.js';
import type { Identity, RevokeReason, SessionHolder, SessionLease } from '../sessions/SessionStore.js';
import type { HandshakeRequest } from './handshake.js';
import { errorFrame } from './protocol.js';
import { TokenBucket } from './TokenBucket.js';

/** A client frame kept until the connection is ready (uWS reuses its buffers, so this is a copy). */
export interface EarlyFrame {
  readonly message: ArrayBuffer;
  readonly isBinary: boolean;
}

/**
 * What uWebSockets.js keeps per socket. The upgrade is answered at once and the handshake
 * (token cache, session) finishes after open: uWS drops sockets upgraded from async code.
 */
export interface SocketData {
  /** Dropped once the handshake is over: it carries the token and is not needed after. */
  request: HandshakeRequest | undefined;
  /** The token the token cache vouched for before the upgrade (REJECT_BEFORE_UPGRADE), so the handshake does not ask again. */
  verified: VerifiedToken | undefined;
  /** Set once the handshake admitted the connection. */
  connection: Connection | undefined;
  /** Frames that came before `ready`, replayed once it is sent; created only when one comes. */
  early: EarlyFrame[] | undefined;
  closed: boolean;
}

/** Per-connection limits. One object is shared by every connection, so a reload (SIGHUP) applies to all at once. */
export interface ConnectionLimits {
  readonly sendBufferBytes: number;
  messagesPerSecond: number;
  messageBurst: number;
  badFramesPerMinute: number;
}

/** What a connection is allowed to see of admin events; '' means unrestricted. */
export type AdminScope = Pick<AdminClaims, 'companyIdRestriction' | 'subscribedCompanyId' | 'subscribedAgentId'>;

/** Called when the connection had to be closed for overflowing its send buffer. */
export type SlowConsumerHook = (connection: Connection) => void;

/**
 * One accepted client. Wraps the uWebSockets.js socket so nothing touches it after it closed
 * (uWS throws on a closed socket) and so every send goes through the back-pressure check.
 */
export class Connection implements SessionHolder {
  #ws: WebSocket<SocketData> | undefined;
  #closed = false;
  #revoked: RevokeReason | undefined;
  lease: SessionLease | undefined;
  selectedChat: string | undefined;
  ready = false;
  missedPongs = 0;
  rateLimitStrikes = 0;
  readonly #messages: TokenBucket;
  readonly #badFrames: TokenBucket;
  /** Routes this connection holds in the registry (its agent and at most one chat), so close releases exactly those. */
  readonly heldRoutes: Route[] = [];

  constructor(
    readonly id: string,
    readonly type: ConnectionType,
    readonly identity: Identity,
    readonly adminScope: AdminScope | undefined,
    readonly openedAtMs: number,
    private readonly limits: ConnectionLimits,
    private readonly onSlowConsumer: SlowConsumerHook,
  ) {
    this.#messages = new TokenBucket(limits.messageBurst, openedAtMs);
    this.#badFrames = new TokenBucket(limits.badFramesPerMinute, openedAtMs);
  }

  /** Counts a client message against the rate limit; false when it is over. */
  takeMessage(nowMs: number): boolean {
    return this.#messages.take(nowMs, this.limits.messageBurst, this.limits.messagesPerSecond);
  }

  /** Counts a malformed frame; false once the client sent too many. */
  takeBadFrame(nowMs: number): boolean {
    return this.#badFrames.take(nowMs, this.limits.badFramesPerMinute, this.limits.badFramesPerMinute / 60);
  }

  /** The session store knows a connection by this id. */
  get connectionId(): string {
    return this.id;
  }

  get closed(): boolean {
    return this.#closed;
  }

  get revoked(): RevokeReason | undefined {
    return this.#revoked;
  }

  /** Binds the socket once it is open; a revoke that came before this is acted on now. */
  attach(ws: WebSocket<SocketData>): void {
    this.#ws = ws;
    if (this.#revoked !== undefined) this.revoke(this.#revoked);
  }

  /** Sends a frame; a client whose buffer passes the ceiling is closed with SlowConsumer. */
  send(frame: string): boolean {
    const ws = this.#ws;
    if (ws === undefined || this.#closed) return false;
    const status = ws.send(frame, false);
    // send() answers 2 when uWS dropped the frame at its own hard limit; either way the client is too slow.
    if (status === 2 || ws.getBufferedAmount() > this.limits.sendBufferBytes) {
      this.failSlow();
      return false;
    }
    return true;
  }

  subscribe(topic: string): void {
    if (this.#ws !== undefined && !this.#closed) this.#ws.subscribe(topic);
  }

  unsubscribe(topic: string): void {
    if (this.#ws !== undefined && !this.#closed) this.#ws.unsubscribe(topic);
  }

  /** True once the client stopped reading long enough to pass its send-buffer ceiling. */
  get overflowing(): boolean {
    return this.#ws !== undefined && !this.#closed && this.#ws.getBufferedAmount() > this.limits.sendBufferBytes;
  }

  /** Closes a client that overflowed its send buffer with 4408; no error frame, since it is not reading. */
  failSlow(): void {
    this.onSlowConsumer(this);
    this.close(ERRORS.SlowConsumer.close, ERRORS.SlowConsumer.reason);
  }

  ping(): void {
    if (this.#ws !== undefined && !this.#closed) this.#ws.ping();
  }

  /** Sends the error frame, then closes with the error's close code. */
  fail(error: GatewayError): void {
    const ws = this.#ws;
    if (ws === undefined || this.#closed) return;
    ws.cork(() => {
      ws.send(errorFrame(error.toPayload()), false);
      this.close(ERRORS[error.code].close, ERRORS[error.code].reason);
    });
  }

  /** Closes with a code and a short reason; a no-op once closed. */
  close(code: number, reason: string): void {
    const ws = this.#ws;
    if (ws === undefined || this.#closed) return;
    this.#closed = true;
    ws.end(code, reason);
  }

  /** The session went elsewhere (or was revoked): close with the code that tells the client why. */
  revoke(reason: RevokeReason): void {
    this.#revoked = reason;
    if (this.#ws === undefined) return;
    switch (reason) {
      case 'replaced':
        this.fail(new GatewayError('SessionConflict', 'this identity connected elsewhere'));
        return;
      case 'admin-disconnect':
        this.close(CloseCode.Normal, 'disconnected-by-admin');
        return;
      case 'lease-lost':
        this.close(CloseCode.ServiceRestart, 'session-lease-lost');
        return;
    }
  }

  /** uWS reported the socket closed; it must not be touched again. */
  markClosed(): void {
    this.#closed = true;
    this.#ws = undefined;
  }
}
