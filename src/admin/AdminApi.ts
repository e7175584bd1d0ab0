import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import type { Authenticator } from '../auth/Authenticator.js';
import type { TokenCodec, TokenKind } from '../auth/tokenCodec.js';
import { checkEvent } from '../dispatch/Dispatch.js';
import { ERRORS, GatewayError, type ErrorCode } from '../errors.js';
import { REQUEST_ID_HEADER, type EventSource } from '../ingest/EventSource.js';
import type { Logger } from '../log.js';
import type { PodDirectory } from '../routes/PodDirectory.js';
import { identityKey, type SessionStore } from '../sessions/SessionStore.js';
import {
  parseAdminTokenRequest,
  parseDisconnectRequest,
  parsePublishRequest,
  parseUserTokenRequest,
  type Parsed,
} from './requests.js';

/** What the admin API serves from. */
export interface AdminDeps {
  readonly authenticator: Authenticator;
  readonly codecs: Readonly<Record<TokenKind, TokenCodec>>;
  readonly events: EventSource;
  readonly sessions: SessionStore;
  readonly pods: PodDirectory;
  readonly registry: Registry;
  readonly log: Logger;
}

type Handler = (req: IncomingMessage, res: ServerResponse) => Promise<void>;

interface Endpoint {
  readonly method: 'GET' | 'POST';
  /** Which API key guards it, if any. */
  readonly guard: TokenKind | undefined;
  readonly handle: Handler;
}

const MAX_BODY_BYTES = 1024 * 1024;

/** The admin listener: metrics, token minting and connection admin over plain HTTP. */
export class AdminApi {
  readonly #server: Server;
  readonly #endpoints: ReadonlyMap<string, Endpoint>;

  constructor(
    private readonly options: { readonly host: string; readonly port: number },
    private readonly deps: AdminDeps,
  ) {
    this.#endpoints = new Map<string, Endpoint>([
      ['/metrics', { method: 'GET', guard: undefined, handle: (_req, res) => this.#metrics(res) }],
      ['/generate-token', { method: 'POST', guard: 'user', handle: (req, res) => this.#generateUserToken(req, res) }],
      ['/admin/generate-token', { method: 'POST', guard: 'admin', handle: (req, res) => this.#generateAdminToken(req, res) }],
      ['/admin/publish', { method: 'POST', guard: 'admin', handle: (req, res) => this.#publish(req, res) }],
      ['/admin/disconnect', { method: 'POST', guard: 'admin', handle: (req, res) => this.#disconnect(req, res) }],
      ['/admin/sessions', { method: 'GET', guard: 'admin', handle: (_req, res) => this.#sessions(res) }],
      ['/admin/pods', { method: 'GET', guard: 'admin', handle: (_req, res) => this.#pods(res) }],
    ]);
    this.#server = createServer((req, res) => {
      this.#route(req, res).catch((err: unknown) => {
        if (res.headersSent) return;
        // The client went away mid-request (or the request timed out): nobody is left to answer. (Not
        // req.destroyed: a request whose body was read to its end is destroyed too.)
        if (req.socket.destroyed) {
          this.deps.log.debug({ err, path: pathOf(req) }, 'admin request abandoned by its client');
          return;
        }
        // Expected failures (NATS or Redis unreachable) carry their own code; anything else is a bug.
        if (err instanceof GatewayError) {
          sendJson(res, ERRORS[err.code].http, err.toPayload());
          return;
        }
        this.deps.log.error({ err, path: pathOf(req) }, 'admin request failed');
        sendError(res, 'InternalServerError', 'internal error');
      });
    });
    this.#server.requestTimeout = 10_000;
  }

  /** Listens; resolves with the bound port. */
  async start(): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(this.options.port, this.options.host, () => {
        this.#server.off('error', reject);
        resolve();
      });
    });
    return (this.#server.address() as AddressInfo).port;
  }

  /** Stops listening and closes idle keep-alive sockets. Safe to call twice. */
  async stop(): Promise<void> {
    if (!this.#server.listening) return;
    await new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
  }

  async #route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = pathOf(req);
    const endpoint = this.#endpoints.get(path);
    if (endpoint === undefined) {
      sendJson(res, 404, { code: 'NotFound', message: `no endpoint ${path}; see the README for the admin API` });
      return;
    }
    if (req.method !== endpoint.method) {
      res.setHeader('allow', endpoint.method);
      sendJson(res, 405, { code: 'MethodNotAllowed', message: `${path} accepts ${endpoint.method} only` });
      return;
    }
    if (endpoint.guard !== undefined && !this.deps.authenticator.apiKeyMatches(endpoint.guard, header(req, 'x-api-key'))) {
      const which = endpoint.guard === 'user' ? 'SECRET_TOKEN' : 'ADMIN_SECRET_TOKEN';
      sendError(res, 'InvalidAPIKey', `missing or wrong X-API-Key (expects ${which})`);
      return;
    }
    await endpoint.handle(req, res);
  }

  async #metrics(res: ServerResponse): Promise<void> {
    const text = await this.deps.registry.metrics();
    res.writeHead(200, { 'content-type': this.deps.registry.contentType });
    res.end(text);
  }

  async #generateUserToken(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const request = await readParsed(req, res, parseUserTokenRequest);
    if (request === undefined) return;
    const token = this.deps.codecs.user.mintUser({ ...request, expiresAtMs: Date.now() + request.expiresInSeconds * 1000 });
    sendJson(res, 200, { token });
  }

  async #generateAdminToken(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const request = await readParsed(req, res, parseAdminTokenRequest);
    if (request === undefined) return;
    const token = this.deps.codecs.admin.mintAdmin({ ...request, expiresAtMs: Date.now() + request.expiresInSeconds * 1000 });
    sendJson(res, 200, { token });
  }

  async #publish(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const request = await readParsed(req, res, parsePublishRequest);
    if (request === undefined) return;
    const check = checkEvent(request.subject, request.payload);
    if (!check.ok) {
      sendError(res, 'BadRequest', check.message);
      return;
    }
    const requestId = header(req, 'x-request-id');
    const headers = requestId === undefined ? request.headers : { [REQUEST_ID_HEADER]: requestId, ...request.headers };
    await this.deps.events.publish(request.subject, request.payload, headers);
    sendJson(res, 202, { status: 'accepted' });
  }

  async #disconnect(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const identity = await readParsed(req, res, parseDisconnectRequest);
    if (identity === undefined) return;
    if (await this.deps.sessions.disconnect(identity)) {
      this.deps.log.info({ session: identityKey(identity) }, 'session disconnected by admin');
      sendJson(res, 200, { status: 'disconnected' });
    } else {
      sendJson(res, 404, { code: 'NotFound', message: 'no live session for that identity' });
    }
  }

  async #sessions(res: ServerResponse): Promise<void> {
    const sessions = await this.deps.sessions.list();
    sendJson(res, 200, {
      sessions: sessions.map((s) => ({
        ...(s.identity.kind === 'user'
          ? { type: 'user', company_id: s.identity.companyId, agent_id: s.identity.agentId, user_id: s.identity.userId }
          : { type: 'admin', admin_id: s.identity.adminId }),
        connection_id: s.connectionId,
        pod_id: s.podId,
        since: new Date(s.sinceMs).toISOString(),
      })),
    });
  }

  async #pods(res: ServerResponse): Promise<void> {
    const pods = await this.deps.pods.list();
    sendJson(res, 200, {
      pods: pods.map((p) => ({
        pod_id: p.podId,
        connections: p.connections,
        started_at: new Date(p.startedAtMs).toISOString(),
        last_seen: new Date(p.lastSeenMs).toISOString(),
      })),
    });
  }
}

/** The request's path as sent, without its query (endpoints are matched exactly). */
function pathOf(req: IncomingMessage): string {
  return (req.url ?? '/').split('?', 1)[0] ?? '/';
}

/** Reads and validates a JSON body; on failure answers 400 (or 413) itself and returns undefined. */
async function readParsed<T>(req: IncomingMessage, res: ServerResponse, parse: (body: unknown) => Parsed<T>): Promise<T | undefined> {
  const chunks = await readBody(req);
  if (chunks === 'too-large') {
    sendJson(res, 413, { code: 'BadRequest', message: `body over ${MAX_BODY_BYTES} bytes` });
    return undefined;
  }
  let body: unknown;
  try {
    body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    sendError(res, 'BadRequest', 'body is not valid JSON');
    return undefined;
  }
  const parsed = parse(body);
  if (!parsed.ok) {
    sendError(res, 'BadRequest', parsed.message);
    return undefined;
  }
  return parsed.value;
}

/**
 * The whole body, or 'too-large' past MAX_BODY_BYTES. An oversized body is still read to its end
 * (and thrown away; the server's request timeout bounds how long): a request destroyed while its
 * client is still sending resets the connection, and the client sees that instead of the 413.
 */
async function readBody(req: IncomingMessage): Promise<Buffer[] | 'too-large'> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) chunks.push(chunk);
      else chunks.length = 0;
    });
    req.on('end', () => resolve(size > MAX_BODY_BYTES ? 'too-large' : chunks));
    req.on('error', reject);
  });
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  const first = Array.isArray(value) ? value[0] : value;
  return first === '' ? undefined : first;
}

function sendError(res: ServerResponse, code: ErrorCode, message: string): void {
  sendJson(res, ERRORS[code].http, new GatewayError(code, message).toPayload());
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}
