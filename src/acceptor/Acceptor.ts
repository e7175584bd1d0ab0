import { randomUUID } from 'node:crypto';
import * as uWS from 'uWebSockets.js';
import type { HttpResponse, TemplatedApp, us_listen_socket, us_socket_context_t, WebSocket } from 'uWebSockets.js';
import type { Authenticator } from '../auth/Authenticator.js';
import type { VerifiedToken } from '../auth/TokenCache.js';
import { CloseCode, ERRORS, GatewayError } from '../errors.js';
import type { Logger } from '../log.js';
import { redactUrl } from '../log.js';
import type { Metrics } from '../metrics.js';
import { routeKey, type Route, type RouteRegistry } from '../routes/RouteRegistry.js';
import { isValidIdentifier, type Identity, type SessionStore } from '../sessions/SessionStore.js';
import { Connection, type ConnectionLimits, type SocketData } from './Connection.js';
import type { ConnectionIndex } from './ConnectionIndex.js';
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
  readonly index: ConnectionIndex;
  readonly metrics: Metrics;
  readonly log: Logger;
  /** Whether /ready should answer 200 (dependencies reachable, not draining). */
  readonly isReady: () => boolean;
}

type Handshake = { readonly connection: Connection } | { readonly rejection: GatewayError };

// The repack's type declarations list the compression constants as types only; they exist at run time.
const { SHARED_COMPRESSOR, DISABLED } = uWS as unknown as { readonly SHARED_COMPRESSOR: number; readonly DISABLED: number };

// uWS drops a connection silently (1006) past maxPayloadLength, so that hard limit sits well above
// ours and the handler closes oversize frames itself with 1009 and a reason.
const HARD_PAYLOAD_FACTOR = 4;
const MISSED_PONGS_BEFORE_CLOSE = 2;

/** The public listener: WebSocket endpoints, /health and /ready on uWebSockets.js. */
export class Acceptor {
  readonly #app: TemplatedApp;
  #listenSocket: us_listen_socket | undefined;
  #heartbeat: NodeJS.Timeout | undefined;
  #accepting = true;

  constructor(
    private readonly options: AcceptorOptions,
    private readonly deps: AcceptorDeps,
  ) {
    const { tls } = options;
    this.#app = tls.certFile === '' ? uWS.App() : uWS.SSLApp({ cert_file_name: tls.certFile, key_file_name: tls.keyFile });
    const behavior = {
      compression: options.compression ? SHARED_COMPRESSOR : DISABLED,
      maxPayloadLength: options.maxFrameBytes * HARD_PAYLOAD_FACTOR,
      // Twice our ceiling: uWS must not drop frames before our own check closes the client with 4408.
      maxBackpressure: options.limits.sendBufferBytes * 2,
      closeOnBackpressureLimit: false,
      idleTimeout: 0,
      sendPingsAutomatically: false,
      open: (ws: WebSocket<SocketData>) => this.#onOpen(ws),
      message: (ws: WebSocket<SocketData>, message: ArrayBuffer, isBinary: boolean) => this.#onMessage(ws, message, isBinary),
      pong: (ws: WebSocket<SocketData>) => this.#onPong(ws),
      close: (ws: WebSocket<SocketData>) => this.#onClose(ws),
    };
    this.#app
      .ws<SocketData>('/ws/admin', { ...behavior, upgrade: (res, req, context) => this.#onUpgrade(res, readHandshake(req, 'admin'), context) })
      .ws<SocketData>('/ws/:company/:agent', { ...behavior, upgrade: (res, req, context) => this.#onUpgrade(res, readHandshake(req, 'user'), context) })
      .get('/health', (res) => json(res, 200, { status: 'ok' }))
      .get('/ready', (res) => (this.deps.isReady() && this.#accepting ? json(res, 200, { status: 'ready' }) : json(res, 503, { status: 'not-ready' })))
      .any('/*', (res) => json(res, 404, { code: 'NotFound', message: 'no such endpoint; WebSocket clients connect to /ws/{company}/{agent} or /ws/admin' }));
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

  /** Stops taking new connections; existing ones stay until closeAll. */
  stopAccepting(): void {
    this.#accepting = false;
    if (this.#listenSocket !== undefined) uWS.us_listen_socket_close(this.#listenSocket);
    this.#listenSocket = undefined;
  }

  /** Closes every connection with `code` and resolves once all are closed or the deadline passes. */
  async closeAll(code: number, reason: string, deadlineMs: number): Promise<void> {
    for (const connection of this.deps.index.snapshot()) connection.close(code, reason);
    const until = Date.now() + deadlineMs;
    while (this.deps.index.size > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
  }

  /** Force-closes whatever is left and frees the app. Safe to call twice. */
  stop(): void {
    this.stopAccepting();
    clearInterval(this.#heartbeat);
    this.#app.close();
  }

  #onUpgrade(res: HttpResponse, request: HandshakeRequest, context: us_socket_context_t): void {
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
    });
    if (this.options.allowedOrigins.length > 0 && !this.options.allowedOrigins.includes(request.origin)) {
      this.deps.metrics.authFailures.inc({ stage: 'origin', token_type: request.kind });
      json(res, 403, { code: 'Forbidden', message: 'origin not allowed' });
      return;
    }
    this.#handshake(request).then(
      (outcome) => {
        if (aborted) {
          if ('connection' in outcome) void this.#releaseSession(outcome.connection);
          return;
        }
        if ('rejection' in outcome) {
          this.deps.log.debug({ url: redactUrl(request.url), code: outcome.rejection.code, reason: outcome.rejection.message }, 'handshake refused');
        }
        res.cork(() => {
          if ('rejection' in outcome && this.options.rejectBeforeUpgrade) {
            const error = outcome.rejection;
            json(res, ERRORS[error.code].http, error.toPayload());
            return;
          }
          res.upgrade<SocketData>(
            outcome,
            request.secWebSocketKey,
            chooseSubprotocol(request.secWebSocketProtocol),
            request.secWebSocketExtensions,
            context,
          );
        });
      },
      (err: unknown) => {
        this.deps.log.error({ err, url: redactUrl(request.url) }, 'handshake failed unexpectedly');
        if (!aborted) res.cork(() => json(res, 500, { code: 'InternalServerError', message: 'internal error' }));
      },
    );
  }

  async #handshake(request: HandshakeRequest): Promise<Handshake> {
    const { metrics } = this.deps;
    if (!this.#accepting) return reject('ServiceUnavailable', 'the pod is shutting down; connect again');
    if (request.kind === 'user' && (!isValidIdentifier(request.companyId) || !isValidIdentifier(request.agentId))) {
      return reject('BadRequest', 'company and agent in the path must be 1-128 characters without whitespace, ".", ":", "*", ">" or "/"');
    }
    const now = Date.now();
    const auth = await this.deps.authenticator.authenticate(request.kind, request.apiKey, request.token, now);
    if (!auth.ok) {
      metrics.authFailures.inc({ stage: auth.failure.stage, token_type: request.kind });
      return reject(auth.failure.code, auth.failure.message);
    }
    const identity = identityOf(auth.token);
    const mismatch = pathMismatch(request, auth.token);
    if (mismatch !== undefined) {
      metrics.authFailures.inc({ stage: 'path', token_type: request.kind });
      return reject('InvalidToken', mismatch);
    }
    const connection = new Connection(
      randomUUID(),
      request.kind,
      identity,
      auth.token.kind === 'admin' ? auth.token.claims : undefined,
      now,
      this.options.limits,
      () => metrics.slowConsumerCloses.inc(),
    );
    try {
      connection.lease = await this.deps.sessions.acquire(identity, connection);
    } catch (err) {
      if (err instanceof GatewayError) return { rejection: err };
      throw err;
    }
    return { connection };
  }

  #onOpen(ws: WebSocket<SocketData>): void {
    const data = ws.getUserData();
    if ('rejection' in data) {
      const { rejection } = data;
      ws.cork(() => {
        ws.send(errorFrame(rejection.toPayload()), false);
        ws.end(ERRORS[rejection.code].close, ERRORS[rejection.code].reason);
      });
      return;
    }
    const { connection } = data;
    connection.attach(ws);
    if (connection.closed) return;
    this.deps.index.add(connection);
    this.deps.metrics.connectionsActive.inc({ type: connection.type });
    const route: Route =
      connection.identity.kind === 'user'
        ? { kind: 'agent', companyId: connection.identity.companyId, agentId: connection.identity.agentId }
        : { kind: 'admins' };
    this.#holdRoute(connection, route).then(
      () => {
        if (connection.closed) return;
        connection.ready = true;
        this.deps.metrics.connectionsOpened.inc({ type: connection.type });
        this.#log(connection).debug('connection ready');
        connection.send(READY_FRAME);
      },
      (err: unknown) => {
        this.#log(connection).error({ err }, 'could not register the route; closing');
        connection.fail(new GatewayError('ServiceUnavailable', 'could not register the connection; connect again'));
      },
    );
  }

  #onMessage(ws: WebSocket<SocketData>, message: ArrayBuffer, isBinary: boolean): void {
    const data = ws.getUserData();
    if (!('connection' in data)) return;
    const { connection } = data;
    const { metrics } = this.deps;
    connection.missedPongs = 0;
    if (message.byteLength > this.options.maxFrameBytes) {
      connection.close(CloseCode.MessageTooBig, `frame over ${this.options.maxFrameBytes} bytes`);
      return;
    }
    const now = Date.now();
    if (!connection.messages.take(now)) {
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
    this.deps.index.selectChat(connection, chatId);
    const chatRoute = (id: string): Route => ({ kind: 'chat', companyId: identity.companyId, agentId: identity.agentId, chatId: id });
    if (previous !== undefined) this.#dropRoute(connection, chatRoute(previous));
    this.#holdRoute(connection, chatRoute(chatId)).catch((err: unknown) => {
      this.#log(connection).error({ err, chat_id: chatId }, 'could not register the chat route');
    });
  }

  #onPong(ws: WebSocket<SocketData>): void {
    const data = ws.getUserData();
    if ('connection' in data) data.connection.missedPongs = 0;
  }

  #onClose(ws: WebSocket<SocketData>): void {
    const data = ws.getUserData();
    if (!('connection' in data)) return;
    const { connection } = data;
    connection.markClosed();
    const { index, metrics } = this.deps;
    if (index.remove(connection)) {
      metrics.connectionsActive.dec({ type: connection.type });
      if (connection.ready) metrics.connectionDuration.observe({ type: connection.type }, (Date.now() - connection.openedAtMs) / 1000);
    }
    if (connection.revoked === 'replaced') metrics.sessionReplacements.inc({ type: connection.type });
    for (const route of [...connection.heldRoutes.values()]) this.#dropRoute(connection, route);
    void this.#releaseSession(connection);
  }

  #sweepHeartbeats(): void {
    for (const connection of this.deps.index.snapshot()) {
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
    if (connection.badFrames.take(Date.now())) connection.send(errorFrame(error.toPayload()));
    else connection.fail(new GatewayError('BadRequest', `too many malformed frames; last: ${message}`));
  }

  async #holdRoute(connection: Connection, route: Route): Promise<void> {
    const key = routeKey(route);
    if (connection.closed || connection.heldRoutes.has(key)) return;
    connection.heldRoutes.set(key, route);
    await this.deps.routes.retain(route);
  }

  #dropRoute(connection: Connection, route: Route): void {
    if (!connection.heldRoutes.delete(routeKey(route))) return;
    this.deps.routes.release(route).catch((err: unknown) => {
      this.#log(connection).warn({ err, route: routeKey(route) }, 'could not release a route; it will expire');
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

function reject(code: GatewayError['code'], message: string): Handshake {
  return { rejection: new GatewayError(code, message) };
}

function identityOf(token: VerifiedToken): Identity {
  return token.kind === 'user'
    ? { kind: 'user', companyId: token.claims.companyId, agentId: token.claims.agentId, userId: token.claims.userId }
    : { kind: 'admin', adminId: token.claims.adminId };
}

/** The token's company, agent and (if given) user must match the URL. */
function pathMismatch(request: HandshakeRequest, token: VerifiedToken): string | undefined {
  if (token.kind !== 'user') return undefined;
  const { claims } = token;
  if (claims.companyId !== request.companyId || claims.agentId !== request.agentId) {
    return 'token company/agent do not match the path';
  }
  if (request.userParam !== undefined && request.userParam !== claims.userId) return 'token user does not match ?user=';
  if (!isValidIdentifier(claims.userId)) return 'token user id has characters that cannot be used';
  return undefined;
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
