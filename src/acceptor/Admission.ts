import { randomUUID } from 'node:crypto';
import type { AuthResult, Authenticator } from '../auth/Authenticator.js';
import type { VerifiedToken } from '../auth/TokenCache.js';
import { GatewayError, type ErrorCode } from '../errors.js';
import type { AuthStage, Metrics } from '../metrics.js';
import { isValidIdentifier, type Identity, type SessionStore } from '../sessions/SessionStore.js';
import { Connection, type ConnectionLimits } from './Connection.js';
import type { HandshakeRequest } from './handshake.js';

/** A handshake's outcome: an admitted connection holding its session, or why it was refused. */
export type Admitted = { readonly connection: Connection } | { readonly rejection: GatewayError };

/** Who may connect: path, API key, token, path match, then the session. */
export class Admission {
  constructor(
    private readonly authenticator: Authenticator,
    private readonly sessions: SessionStore,
    private readonly limits: ConnectionLimits,
    private readonly metrics: Metrics,
  ) {}

  /** Everything that needs no I/O, for refusing with an HTTP status before the upgrade. */
  precheck(request: HandshakeRequest, nowMs: number): GatewayError | undefined {
    const result = this.#checkPath(request) ?? this.#checkAuth(request, this.authenticator.authenticateNow(request.kind, request.apiKey, request.token, nowMs));
    return result instanceof GatewayError ? result : undefined;
  }

  /** The whole handshake: credentials (through the token cache), then the session. */
  async admit(request: HandshakeRequest, nowMs: number): Promise<Admitted> {
    const badPath = this.#checkPath(request);
    if (badPath !== undefined) return { rejection: badPath };
    const auth = this.#checkAuth(request, await this.authenticator.authenticate(request.kind, request.apiKey, request.token, nowMs));
    if (auth instanceof GatewayError) return { rejection: auth };
    const connection = new Connection(
      randomUUID(),
      request.kind,
      identityOf(auth),
      auth.kind === 'admin' ? auth.claims : undefined,
      nowMs,
      this.limits,
      () => this.metrics.slowConsumerCloses.inc(),
    );
    try {
      connection.lease = await this.sessions.acquire(connection.identity, connection);
    } catch (err) {
      if (err instanceof GatewayError) return { rejection: err };
      throw err;
    }
    return { connection };
  }

  #checkPath(request: HandshakeRequest): GatewayError | undefined {
    if (request.kind === 'user' && (!isValidIdentifier(request.companyId) || !isValidIdentifier(request.agentId))) {
      return new GatewayError('BadRequest', 'company and agent in the path must be 1-128 characters without whitespace, ".", ":", "*", ">" or "/"');
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
