import {
  identityKey,
  type Identity,
  type SessionHolder,
  type SessionInfo,
  type SessionLease,
  type SessionStore,
} from '../sessions/SessionStore.js';

interface Held {
  readonly identity: Identity;
  readonly holder: SessionHolder;
  readonly sinceMs: number;
}

/** Limits of the session store; `maxDevices` 1 is the exclusive, newest-wins mode. */
export interface SessionLimits {
  readonly maxDevices: number;
}

/** The in-process session store: newest wins; in multi-device mode the oldest beyond the limit is replaced. */
export class LocalSessions implements SessionStore {
  readonly #byIdentity = new Map<string, Held[]>();

  constructor(
    private readonly podId: string,
    private readonly limits: SessionLimits,
  ) {}

  async acquire(identity: Identity, holder: SessionHolder): Promise<SessionLease> {
    const key = identityKey(identity);
    const held = this.#byIdentity.get(key) ?? [];
    held.push({ identity, holder, sinceMs: Date.now() });
    this.#byIdentity.set(key, held);
    const evicted = held.splice(0, Math.max(0, held.length - this.limits.maxDevices));
    for (const old of evicted) old.holder.revoke('replaced');
    return { release: async () => this.#release(key, holder) };
  }

  async disconnect(identity: Identity): Promise<boolean> {
    const key = identityKey(identity);
    const held = this.#byIdentity.get(key);
    if (held === undefined) return false;
    this.#byIdentity.delete(key);
    for (const entry of held) entry.holder.revoke('admin-disconnect');
    return true;
  }

  async list(): Promise<readonly SessionInfo[]> {
    return [...this.#byIdentity.values()].flatMap((held) =>
      held.map((entry) => ({
        identity: entry.identity,
        connectionId: entry.holder.connectionId,
        podId: this.podId,
        sinceMs: entry.sinceMs,
      })),
    );
  }

  #release(key: string, holder: SessionHolder): void {
    const held = this.#byIdentity.get(key);
    if (held === undefined) return;
    const remaining = held.filter((entry) => entry.holder !== holder);
    if (remaining.length === 0) this.#byIdentity.delete(key);
    else this.#byIdentity.set(key, remaining);
  }
}
