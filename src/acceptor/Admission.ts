import { randomUUID } from 'node:crypto';
import type { AuthResult, Authenticator } from '../auth/Authenticator.js';
import type { VerifiedToken } from '../auth/TokenCache.js';
import { GatewayError, type ErrorCode } from '../errors.js';
import type { AuthStage, Metrics } from '../metrics.js';
import type { Route, RouteRegistry } from '../routes/RouteRegistry.js';
import { IDENTIFIER_RULE, isValidIdentifier, type Identity, type SessionStore } from '../sessions/SessionStore.js';
import { Connection, type ConnectionLimits } from './Connection.js';
import type { HandshakeRequest } from './handshake.js';

/** A handshake's outcome: an admitted connection holding its session, or why it was refused. */
export type Admitted = { readonly connection: Connection } | { readonly rejection: GatewayError };

/** Who may connect: path, API key, token, path match; then what it holds: its session and its route. */
export class Admission {
  /** One hook for every connection rather than a closure each: idle connections are counted in the 100,000s. */
  readonly #countSlowConsumer = () => this.metrics.slowConsumerCloses.inc();

  constructor(
    private readonly authenticator: Authenticator,
    private readonly sessions: SessionStore,
    private readonly routes: RouteRegistry,
    private readonly limits: ConnectionLimits,
    private readonly metrics: Metrics,
  ) {}

  /**
   * Everything that needs no I/O, for refusing with an HTTP status before the upgrade; 'ask-cache'
   * for a token under a key this pod lacks, which another pod may have verified (`precheckCached`).
   */
  precheck(request: HandshakeRequest, nowMs: number): GatewayError | 'ask-cache' | undefined {
    const badPath = this.#checkPath(request);
    if (badPath !== undefined) return badPath;
    const auth = this.authenticator.authenticateNow(request.kind, request.apiKey, request.token, nowMs);
    if (!auth.ok && auth.failure.cacheMayKnow) return 'ask-cache';
    const result = this.#checkAuth(request, auth);
    return result instanceof GatewayError ? result : undefined;
  }

  /**
   * The credentials checked through the token cache, for a precheck that asked for it: the token
   * the cache vouched for (handed to `admit`, so the handshake does not ask again), or the refusal.
   */
  async precheckCached(request: HandshakeRequest, nowMs: number): Promise<VerifiedToken | GatewayError> {
    return this.#checkAuth(request, await this.authenticator.authenticate(request.kind, request.apiKey, request.token, nowMs));
  }

  /**
   * The whole handshake: credentials (through the token cache), then the session and the route
   * of the connection's agent (or of admins). An admitted connection holds both; a refused one neither.
   * `verified` is what `precheckCached` answered for this request, if it was asked.
   */
  async admit(request: HandshakeRequest, nowMs: number, verified?: VerifiedToken): Promise<Admitted> {
    const badPath = this.#checkPath(request);
    if (badPath !== undefined) return { rejection: badPath };
    const auth = verified ?? this.#checkAuth(request, await this.authenticator.authenticate(request.kind, request.apiKey, request.token, nowMs));
    if (auth instanceof GatewayError) return { rejection: auth };
    const connection = new Connection(
      randomUUID(),
      request.kind,
      identityOf(auth),
      auth.kind === 'admin' ? auth.claims : undefined,
      nowMs,
      this.limits,
      this.#countSlowConsumer,
    );
    const route = routeOf(connection.identity);
    connection.heldRoutes.push(route);
    // Independent keys, so both are asked for at once: one round trip to the engine, not two.
    const [session, routed] = await Promise.allSettled([this.sessions.acquire(connection.identity, connection), this.routes.retain(route)]);
    if (session.status === 'fulfilled') connection.lease = session.value;
    if (session.status === 'fulfilled' && routed.status === 'fulfilled') return { connection };
    connection.heldRoutes.length = 0;
    // Given back without waiting: on a hung Redis the cleanup takes a command timeout of its own,
    // and the client would hear its refusal only after it.
    void Promise.allSettled([this.routes.release(route), connection.lease?.release()]);
    connection.lease = undefined;
    const err: unknown = session.status === 'rejected' ? session.reason : routed.status === 'rejected' ? routed.reason : undefined;
    if (err instanceof GatewayError) return { rejection: err };
    throw err;
  }

  #checkPath(request: HandshakeRequest): GatewayError | undefined {
    if (request.kind === 'user' && (!isValidIdentifier(request.companyId) || !isValidIdentifier(request.agentId))) {
      return new GatewayError('BadRequest', `company and agent in the path must be ${IDENTIFIER_RULE}`);
    }
    return undefined;
  }

  /** The verified token, or the refusal (counted by stage). */
  #checkAuth(request: HandshakeRequest, auth: AuthResult): VerifiedToken | GatewayError {
    if (!auth.ok) return this.#refuse(request, auth.failure.stage, auth.failure.code, auth.failure.message);
    const mismatch = pathMismatch(request, auth.token);
    return mismatch === undefined ? auth.token : this.#refuse(request, 'path', 'InvalidToken', mismatch);
  }

  #refuse(request: HandshakeRequest, stage: AuthStage, code: ErrorCode, message: string): GatewayError {
    this.metrics.authFailures.inc({ stage, token_type: request.kind });
    return new GatewayError(code, message);
  }
}

/** The route every connection of this identity needs before it may be `ready`. */
function routeOf(identity: Identity): Route {
  return identity.kind === 'user' ? { kind: 'agent', companyId: identity.companyId, agentId: identity.agentId } : { kind: 'admins' };
}

function identityOf(token: VerifiedToken): Identity {
  return token.kind === 'user'
    ? { kind: 'user', companyId: token.claims.companyId, agentId: token.claims.agentId, userId: token.claims.userId }
    : { kind: 'admin', adminId: token.claims.adminId };
}

/**
 * The token's company, agent and (if given) user must match the URL. Ids a token carries are held to
 * the same rules as ids in paths: an admin id with a ":" would share a session key with a user, and
 * an admin scope of "*" would read as every company.
 */
function pathMismatch(request: HandshakeRequest, token: VerifiedToken): string | undefined {
  if (token.kind !== 'user') {
    const { adminId, companyIdRestriction, subscribedCompanyId, subscribedAgentId } = token.claims;
    if (!isValidIdentifier(adminId)) return 'token admin id has characters that cannot be used';
    const scope = [companyIdRestriction, subscribedCompanyId, subscribedAgentId].filter((id) => id !== '');
    return scope.every(isValidIdentifier) ? undefined : 'token admin scope has characters that cannot be used';
  }
  const { claims } = token;
  if (claims.companyId !== request.companyId || claims.agentId !== request.agentId) {
    return 'token company/agent do not match the path';
  }
  if (request.userParam !== undefined && request.userParam !== claims.userId) return 'token user does not match ?user=';
  if (!isValidIdentifier(claims.userId)) return 'token user id has characters that cannot be used';
  return undefined;
}
