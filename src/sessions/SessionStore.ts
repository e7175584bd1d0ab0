/** Who a session belongs to; one live connection per identity unless multi-device mode is on. */
export type Identity =
  | { readonly kind: 'user'; readonly companyId: string; readonly agentId: string; readonly userId: string }
  | { readonly kind: 'admin'; readonly adminId: string };

/** Why a pod must close a connection whose session it no longer holds. */
export type RevokeReason = 'replaced' | 'admin-disconnect' | 'lease-lost';

/** The connection side of a session: told when it must go. */
export interface SessionHolder {
  readonly connectionId: string;
  revoke(reason: RevokeReason): void;
}

/** A held session; release it when the connection closes. Releasing twice is harmless. */
export interface SessionLease {
  release(): Promise<void>;
}

/** One live session, as the admin API lists it. */
export interface SessionInfo {
  readonly identity: Identity;
  readonly connectionId: string;
  readonly podId: string;
  readonly sinceMs: number;
}

/** Exclusive (or limited multi-device) sessions per identity, across every pod of the engine. */
export interface SessionStore {
  /** Takes the session for a new connection, revoking whichever connection it replaces. */
  acquire(identity: Identity, holder: SessionHolder): Promise<SessionLease>;
  /** Revokes every connection of the identity wherever it lives; false if there was none. */
  disconnect(identity: Identity): Promise<boolean>;
  /** Every live session. */
  list(): Promise<readonly SessionInfo[]>;
}

/** A stable string for an identity, for maps, keys and logs. */
export function identityKey(identity: Identity): string {
  return identity.kind === 'admin'
    ? `admin:${identity.adminId}`
    : `${identity.companyId}:${identity.agentId}:${identity.userId}`;
}

// Identifiers end up in Redis keys and NATS subjects, where these characters are separators or wildcards.
const IDENTIFIER = /^[^\s.:*>/?#]{1,128}$/;
/** IDENTIFIER in words, for the errors that refuse an id. */
export const IDENTIFIER_RULE = '1-128 characters without whitespace, ".", ":", "*", ">", "/", "?" or "#"';

/** True when an id from a path, token or request can be used in keys and subjects. */
export function isValidIdentifier(id: string): boolean {
  return IDENTIFIER.test(id);
}
