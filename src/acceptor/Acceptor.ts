import * as uWS from 'uWebSockets.js';
import type { HttpResponse, TemplatedApp, us_listen_socket, us_socket_context_t, WebSocket } from 'uWebSockets.js';
import type { Authenticator } from '../auth/Authenticator.js';
import type { VerifiedToken } from '../auth/TokenCache.js';
import { CloseCode, ERRORS, GatewayError } from '../errors.js';
import type { Logger } from '../log.js';
import { redactUrl } from '../log.js';
import type { Metrics } from '../metrics.js';
import { routeKey, type Route, type RouteRegistry } from '../routes/RouteRegistry.js';
import type { SessionStore } from '../sessions/SessionStore.js';
import { Admission, type Admitted } from './Admission.js';
import type { Connection, ConnectionLimits, SocketData } from './Connection.js';
import { ConnectionIndex } from './ConnectionIndex.js';
import { chooseSubprotocol, readHandshake, type HandshakeRequest } from './handshake.js';
import { errorFrame, parseClientFrame, READY_FRAME } from './protocol.js';

/** The acceptor's slice of the configuration. */
export interface AcceptorOptions {
  readonly host: string;
  readonly port: number;
  readonly tls: { readonly certFile: string; readonly keyFile: string };
  readonly maxFrameBytes: number;
  readonly heartbeatIntervalMs: number;
  readonly allowedOrigins: readonly string[];
  readonly compression: boolean;
  readonly rejectBeforeUpgrade: boolean;
  readonly limits: ConnectionLimits;
}

/** The narrow interfaces the acceptor works with; it does not know which engine fills them. */
export interface AcceptorDeps {
  readonly authenticator: Authenticator;
  readonly sessions: SessionStore;
  readonly routes: RouteRegistry;
  readonly metrics: Metrics;
  readonly log: Logger;
  /** Whether /ready should answer 200 (dependencies reachable, not draining). */
  readonly isReady: () => boolean;
}

// The repack's type declarations list the compression constants as types only; they exist at run time.
const { SHARED_COMPRESSOR, DISABLED } = uWS as unknown as { readonly SHARED_COMPRESSOR: number; readonly DISABLED: number };

// uWS drops a connection silently (1006) past maxPayloadLength, so that hard limit sits well above
// ours and the handler closes oversize frames itself with 1009 and a reason.
const HARD_PAYLOAD_FACTOR = 4;
const MISSED_PONGS_BEFORE_CLOSE = 2;
const DRAIN_STEP_MS = 50;
// uWS drops a socket's frames past its hard send limit, the 4408 close frame among them (the client
// would see 1006), so the limit leaves room for what one sweep interval can bring past the ceiling.
const BACKPRESSURE_FACTOR = 4;
const MIN_BACKPRESSURE_HEADROOM_BYTES = 1024 * 1024;
// Frames a client may send before `ready`, and their bytes in all; they are replayed in order
// once it is sent. The byte bound keeps a socket whose handshake waits on Redis to one frame's
// worth of memory (the frames a client sends are small), not 16 × MAX_FRAME_BYTES.
const MAX_EARLY_FRAMES = 16;
const MAX_EARLY_BYTES = 64 * 1024;

/** The public listener: WebSocket endpoints, /health and /ready on uWebSockets.js. */
export class Acceptor {
  readonly #app: TemplatedApp;
  readonly #admission: Admission;
  /** This pod's ready connections; dispatch delivers through it. */
  readonly connections: ConnectionIndex;
  #listenSocket: us_listen_socket | undefined;
  #heartbeat: NodeJS.Timeout | undefined;
  #accepting = true;

  constructor(
    private readonly options: AcceptorOptions,
    private readonly deps: AcceptorDeps,
  ) {
    this.#admission = new Admission(deps.authenticator, deps.sessions, deps.routes, options.limits, deps.metrics);
    const { tls } = options;
    this.#app = tls.certFile === '' ? uWS.App() : uWS.SSLApp({ cert_file_name: tls.certFile, key_file_name: tls.keyFile });
    const behavior = {
      compression: options.compression ? SHARED_COMPRESSOR : DISABLED,
      maxPayloadLength: options.maxFrameBytes * HARD_PAYLOAD_FACTOR,
      // Published frames past this are dropped by uWS for that socket; the sweep closes it with 4408
      // first unless a burst outruns it, so this bounds a slow client's memory.
      maxBackpressure: hardSendLimit(options.limits.sendBufferBytes),
      closeOnBackpressureLimit: false,
      idleTimeout: 0,
      sendPingsAutomatically: false,
      open: (ws: WebSocket<SocketData>) => void this.#establish(ws),
      message: (ws: WebSocket<SocketData>, message: ArrayBuffer, isBinary: boolean) => this.#onMessage(ws, message, isBinary),
      pong: (ws: WebSocket<SocketData>) => this.#onPong(ws),
      close: (ws: WebSocket<SocketData>, code: number) => this.#onClose(ws, code),
    };
    this.#app
      .ws<SocketData>('/ws/admin', { ...behavior, upgrade: (res, req, context) => this.#onUpgrade(res, readHandshake(req, 'admin'), context) })
      .ws<SocketData>('/ws/:company/:agent', { ...behavior, upgrade: (res, req, context) => this.#onUpgrade(res, readHandshake(req, 'user'), context) })
      .get('/health', (res) => json(res, 200, { status: 'ok' }))
      .get('/ready', (res) => (this.deps.isReady() && this.#accepting ? json(res, 200, { status: 'ready' }) : json(res, 503, { status: 'not-ready' })))
      .any('/*', (res) => json(res, 404, { code: 'NotFound', message: 'no such endpoint; WebSocket clients connect to /ws/{company}/{agent} or /ws/admin' }));
    this.connections = new ConnectionIndex(this.#app, options.compression);
  }

  /** Listens; resolves with the bound port (useful with port 0). */
  async start(): Promise<number> {
    const { host, port } = this.options;
    const socket = await new Promise<us_listen_socket | false>((resolve) => this.#app.listen(host, port, resolve));
    if (socket === false) throw new Error(`cannot listen on ${host}:${port}`);
    this.#listenSocket = socket;
    this.#heartbeat = setInterval(() => this.#sweepHeartbeats(), this.options.heartbeatIntervalMs);
    this.#heartbeat.unref();
    return uWS.us_socket_local_port(socket);
  }

  /**
   * Refuses new connections from now on (1013 after the upgrade; 503 before it with
   * REJECT_BEFORE_UPGRADE); existing ones stay until closeAll. The listener stays open until
   * `stop`, so probes keep their answers while the pod drains: `/health` 200, `/ready` 503 (a
   * closed port would fail the liveness probe too, and could get the pod killed).
   */
  stopAccepting(): void {
    this.#accepting = false;
  }

  /**
   * Closes every connection with `code`, spread evenly over `windowMs` (or over `deadlineMs`, if
   * that is shorter) so clients do not all reconnect at the same moment, and resolves once all are
   * closed or `deadlineMs` passes.
   */
  async closeAll(code: number, reason: string, windowMs: number, deadlineMs: number): Promise<void> {
    const started = Date.now();
    const connections = this.connections.snapshot();
    const steps = Math.max(1, Math.floor(Math.min(windowMs, deadlineMs) / DRAIN_STEP_MS));
    const perStep = Math.ceil(connections.length / steps);
    let next = 0;
    while (next < connections.length) {
      // Closing takes time and timers run late: past the deadline, the rest close at once.
      const end = Date.now() - started >= deadlineMs ? connections.length : next + perStep;
      for (const connection of connections.slice(next, end)) connection.close(code, reason);
      next = end;
      if (next < connections.length) await sleep(DRAIN_STEP_MS);
    }
    while (this.connections.size > 0 && Date.now() - started < deadlineMs) await sleep(10);
  }

  /** Applies reloaded rate limits to every connection, live ones included. */
  reloadLimits(limits: Pick<ConnectionLimits, 'messagesPerSecond' | 'messageBurst' | 'badFramesPerMinute'>): void {
    Object.assign(this.options.limits, limits);
  }

  /** Force-closes whatever is left and frees the app. Safe to call twice. */
  stop(): void {
    this.stopAccepting();
    if (this.#listenSocket !== undefined) uWS.us_listen_socket_close(this.#listenSocket);
    this.#listenSocket = undefined;
    clearInterval(this.#heartbeat);
    this.connections.stop();
    this.#app.close();
  }

  /** Answers the upgrade synchronously; the handshake itself finishes in #establish. */
  #onUpgrade(res: HttpResponse, request: HandshakeRequest, context: us_socket_context_t): void {
    if (this.options.allowedOrigins.length > 0 && !this.options.allowedOrigins.includes(request.origin)) {
      this.deps.metrics.authFailures.inc({ stage: 'origin', token_type: request.kind });
      json(res, 403, { code: 'Forbidden', message: 'origin not allowed' });
      return;
    }
    if (this.options.rejectBeforeUpgrade) {
      const refusal = this.#accepting ? this.#admission.precheck(request, Date.now()) : shuttingDown();
      if (refusal === 'ask-cache') {
        void this.#upgradeOnceCacheAnswers(res, request, context);
        return;
      }
      if (refusal !== undefined) {
        this.#refuseUpgrade(res, request, refusal);
        return;
      }
    }
    this.#upgrade(res, request, context);
  }

  /** A token only the token cache may know: the upgrade waits for it (uWS allows this once onAborted is set). */
  async #upgradeOnceCacheAnswers(res: HttpResponse, request: HandshakeRequest, context: us_socket_context_t): Promise<void> {
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
    });
    let checked: VerifiedToken | GatewayError;
    try {
      checked = await this.#admission.precheckCached(request, Date.now());
    } catch (err) {
      this.deps.log.error({ err, url: redactUrl(request.url) }, 'handshake failed unexpectedly');
      checked = new GatewayError('InternalServerError', 'internal error');
    }
    if (aborted) return;
    res.cork(() => (checked instanceof GatewayError ? this.#refuseUpgrade(res, request, checked) : this.#upgrade(res, request, context, checked)));
  }

  #upgrade(res: HttpResponse, request: HandshakeRequest, context: us_socket_context_t, verified?: VerifiedToken): void {
    const data: SocketData = { request, verified, connection: undefined, early: undefined, closed: false };
    res.upgrade<SocketData>(data, request.secWebSocketKey, chooseSubprotocol(request.secWebSocketProtocol), request.secWebSocketExtensions, context);
  }

  #refuseUpgrade(res: HttpResponse, request: HandshakeRequest, refusal: GatewayError): void {
    this.deps.log.debug({ url: redactUrl(request.url), code: refusal.code, reason: refusal.message }, 'handshake refused');
    json(res, ERRORS[refusal.code].http, refusal.toPayload());
  }

  /** Runs the handshake for an open socket: refusal → error frame and close; success → route, `ready`, early frames. */
  async #establish(ws: WebSocket<SocketData>): Promise<void> {
    const data = ws.getUserData();
    const { request, verified } = data;
    if (request === undefined) return;
    data.request = undefined;
    data.verified = undefined;
    // The token cache answered before the upgrade, so nothing here would wait before the session
    // and route commands go out. Sent from inside the open of an upgrade made in res.cork from
    // async code, they often got the socket dropped (1006; uWebSockets.js issue #1108, a cork after
    // an async upgrade that can close the new socket). They go on the next turn of the loop instead.
    if (verified !== undefined) await new Promise((resolve) => setImmediate(resolve));
    let outcome: Admitted;
    try {
      outcome = this.#accepting ? await this.#admission.admit(request, Date.now(), verified) : { rejection: shuttingDown() };
    } catch (err) {
      this.deps.log.error({ err, url: redactUrl(request.url) }, 'handshake failed unexpectedly');
      outcome = { rejection: new GatewayError('InternalServerError', 'internal error') };
    }
    if (data.closed) {
      if ('connection' in outcome) this.#releaseHoldings(outcome.connection);
      return;
    }
    if (!this.#accepting && 'connection' in outcome) {
      // The pod began to drain while Redis answered: closeAll's snapshot would not hold this one.
      this.#releaseHoldings(outcome.connection);
      outcome = { rejection: shuttingDown() };
    }
    if ('rejection' in outcome) {
      const { rejection } = outcome;
      this.deps.log.debug({ url: redactUrl(request.url), code: rejection.code, reason: rejection.message }, 'handshake refused');
      ws.cork(() => {
        ws.send(errorFrame(rejection.toPayload()), false);
        ws.end(ERRORS[rejection.code].close, ERRORS[rejection.code].reason);
      });
      return;
    }
    const { connection } = outcome;
    data.connection = connection;
    // A revoke that came during the handshake closes the connection here.
    connection.attach(ws);
    if (connection.closed) return;
    // Indexed only now, so no event can reach the client before `ready`.
    this.connections.add(connection);
    this.deps.metrics.connectionsActive.inc({ type: connection.type });
    this.deps.metrics.connectionsOpened.inc({ type: connection.type });
    connection.ready = true;
    connection.send(READY_FRAME);
    if (this.deps.log.isLevelEnabled('debug')) this.#log(connection).debug('connection ready');
    const early = data.early ?? [];
    data.early = undefined;
    for (const frame of early) {
      if (connection.closed) break;
      this.#handleFrame(connection, frame.message, frame.isBinary);
    }
  }

  #onMessage(ws: WebSocket<SocketData>, message: ArrayBuffer, isBinary: boolean): void {
    const data = ws.getUserData();
    if (message.byteLength > this.options.maxFrameBytes) {
      if (data.connection !== undefined) data.connection.close(CloseCode.MessageTooBig, tooBig(this.options.maxFrameBytes));
      else if (!data.closed) ws.end(CloseCode.MessageTooBig, tooBig(this.options.maxFrameBytes));
      return;
    }
    const { connection } = data;
    if (connection === undefined || !connection.ready) {
      data.early ??= [];
      const heldBytes = data.early.reduce((bytes, frame) => bytes + frame.message.byteLength, message.byteLength);
      if (data.early.length < MAX_EARLY_FRAMES && heldBytes <= MAX_EARLY_BYTES) {
        data.early.push({ message: message.slice(0), isBinary });
        return;
      }
      // No rate limit or send-buffer ceiling applies before `ready`: a client that keeps sending is
      // closed rather than answered once per frame. (The handshake still running sees it closed.)
      const excess = data.early.length < MAX_EARLY_FRAMES ? `${MAX_EARLY_BYTES} bytes` : `${MAX_EARLY_FRAMES} frames`;
      ws.cork(() => {
        ws.send(errorFrame({ code: 'BadRequest', message: `more than ${excess} before "ready"` }), false);
        ws.end(ERRORS.BadRequest.close, ERRORS.BadRequest.reason);
      });
      return;
    }
    this.#handleFrame(connection, message, isBinary);
  }

  #handleFrame(connection: Connection, message: ArrayBuffer, isBinary: boolean): void {
    const { metrics } = this.deps;
    connection.missedPongs = 0;
    const now = Date.now();
    if (!connection.takeMessage(now)) {
      metrics.rateLimitHits.inc();
      connection.rateLimitStrikes++;
      const error = new GatewayError('RateLimitExceeded', `more than ${this.options.limits.messagesPerSecond} messages per second; slow down`);
      // A client that keeps sending through a burst worth of refusals is closed.
      if (connection.rateLimitStrikes > this.options.limits.messageBurst) connection.fail(error);
      else connection.send(errorFrame(error.toPayload()));
      return;
    }
    connection.rateLimitStrikes = 0;
    if (isBinary) {
      this.#badRequest(connection, 'binary frames are not supported; send json.v1 text frames');
      return;
    }
    const parsed = parseClientFrame(Buffer.from(message).toString('utf8'));
    if (!parsed.ok) {
      this.#badRequest(connection, parsed.message);
      return;
    }
    const { identity } = connection;
    if (identity.kind !== 'user') {
      this.#badRequest(connection, 'select_chat is only for agent connections');
      return;
    }
    const previous = connection.selectedChat;
    const { chatId } = parsed.frame;
    if (previous === chatId) return;
    this.connections.selectChat(connection, chatId);
    const chatRoute = (id: string): Route => ({ kind: 'chat', companyId: identity.companyId, agentId: identity.agentId, chatId: id });
    if (previous !== undefined) this.#dropRoute(connection, chatRoute(previous));
    this.#holdRoute(connection, chatRoute(chatId)).catch((err: unknown) => {
      this.#log(connection).warn({ err, chat_id: chatId }, 'could not register the chat route; retrying shortly');
    });
  }

  #onPong(ws: WebSocket<SocketData>): void {
    const { connection } = ws.getUserData();
    if (connection !== undefined) connection.missedPongs = 0;
  }

  #onClose(ws: WebSocket<SocketData>, code: number): void {
    const data = ws.getUserData();
    data.closed = true;
    const { connection } = data;
    if (connection === undefined) return;
    connection.markClosed();
    if (this.deps.log.isLevelEnabled('debug')) this.#log(connection).debug({ code, ready: connection.ready }, 'connection closed');
    const { metrics } = this.deps;
    if (this.connections.remove(connection)) {
      metrics.connectionsActive.dec({ type: connection.type });
      if (connection.ready) metrics.connectionDuration.observe({ type: connection.type }, (Date.now() - connection.openedAtMs) / 1000);
    }
    if (connection.revoked === 'replaced') metrics.sessionReplacements.inc({ type: connection.type });
    this.#releaseHoldings(connection);
  }

  /** Gives back the connection's routes and session; their Redis commands leave together. */
  #releaseHoldings(connection: Connection): void {
    for (const route of [...connection.heldRoutes]) this.#dropRoute(connection, route);
    void this.#releaseSession(connection);
  }

  #sweepHeartbeats(): void {
    for (const connection of this.connections.values()) {
      if (connection.missedPongs >= MISSED_PONGS_BEFORE_CLOSE) {
        connection.close(CloseCode.PolicyViolation, 'heartbeat-timeout');
        continue;
      }
      connection.missedPongs++;
      connection.ping();
    }
  }

  #badRequest(connection: Connection, message: string): void {
    this.deps.metrics.badFrames.inc();
    const error = new GatewayError('BadRequest', message);
    if (connection.takeBadFrame(Date.now())) connection.send(errorFrame(error.toPayload()));
    else connection.fail(new GatewayError('BadRequest', `too many malformed frames; last: ${message}`));
  }

  async #holdRoute(connection: Connection, route: Route): Promise<void> {
    const key = routeKey(route);
    if (connection.closed || connection.heldRoutes.some((held) => routeKey(held) === key)) return;
    connection.heldRoutes.push(route);
    await this.deps.routes.retain(route);
  }

  #dropRoute(connection: Connection, route: Route): void {
    const key = routeKey(route);
    const index = connection.heldRoutes.findIndex((held) => routeKey(held) === key);
    if (index < 0) return;
    connection.heldRoutes.splice(index, 1);
    this.deps.routes.release(route).catch((err: unknown) => {
      this.#log(connection).warn({ err, route: key }, 'could not release a route; retrying shortly');
    });
  }

  async #releaseSession(connection: Connection): Promise<void> {
    const lease = connection.lease;
    connection.lease = undefined;
    try {
      await lease?.release();
    } catch (err) {
      this.#log(connection).warn({ err }, 'could not release the session; it will expire');
    }
  }

  #log(connection: Connection): Logger {
    const { identity } = connection;
    return this.deps.log.child(
      identity.kind === 'user'
        ? { connection_id: connection.id, company: identity.companyId, agent: identity.agentId, user: identity.userId }
        : { connection_id: connection.id, admin_id: identity.adminId },
    );
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function shuttingDown(): GatewayError {
  return new GatewayError('ServiceUnavailable', 'the pod is shutting down; connect again');
}

function tooBig(limit: number): string {
  return `frame over ${limit} bytes`;
}

function json(res: HttpResponse, status: number, body: unknown): void {
  res.writeStatus(STATUS_LINES[status] ?? `${status}`).writeHeader('content-type', 'application/json').end(JSON.stringify(body));
}

const STATUS_LINES: Readonly<Record<number, string>> = {
  200: '200 OK',
  400: '400 Bad Request',
  401: '401 Unauthorized',
  403: '403 Forbidden',
  404: '404 Not Found',
  409: '409 Conflict',
  429: '429 Too Many Requests',
  500: '500 Internal Server Error',
  503: '503 Service Unavailable',
};

/** A socket's hard send-buffer limit: a multiple of the ceiling, and at least a megabyte above it. */
function hardSendLimit(ceilingBytes: number): number {
  return Math.max(ceilingBytes * BACKPRESSURE_FACTOR, ceilingBytes + MIN_BACKPRESSURE_HEADROOM_BYTES);
}
