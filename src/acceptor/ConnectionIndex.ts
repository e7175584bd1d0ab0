import type { EventTarget } from '../dispatch/subject.js';
import type { Connection } from './Connection.js';

/** Delivers a serialized frame to the local connections an event targets; answers how many got it. */
export interface LocalDelivery {
  deliver(target: EventTarget, frame: string): number;
}

/** The ready connections of this pod, indexed the way events address them. */
export class ConnectionIndex implements LocalDelivery {
  readonly #all = new Map<string, Connection>();
  readonly #byAgent = new Map<string, Set<Connection>>();
  readonly #byChat = new Map<string, Set<Connection>>();
  readonly #admins = new Set<Connection>();

  get size(): number {
    return this.#all.size;
  }

  /** Every indexed connection (a snapshot, safe to close while iterating). */
  snapshot(): Connection[] {
    return [...this.#all.values()];
  }

  add(connection: Connection): void {
    this.#all.set(connection.id, connection);
    const { identity } = connection;
    if (identity.kind === 'admin') {
      this.#admins.add(connection);
      return;
    }
    addTo(this.#byAgent, agentKey(identity.companyId, identity.agentId), connection);
    if (connection.selectedChat !== undefined) {
      addTo(this.#byChat, chatKey(identity.companyId, identity.agentId, connection.selectedChat), connection);
    }
  }

  /** Removes a connection; false if it was not indexed. */
  remove(connection: Connection): boolean {
    if (!this.#all.delete(connection.id)) return false;
    const { identity } = connection;
    if (identity.kind === 'admin') {
      this.#admins.delete(connection);
      return true;
    }
    removeFrom(this.#byAgent, agentKey(identity.companyId, identity.agentId), connection);
    if (connection.selectedChat !== undefined) {
      removeFrom(this.#byChat, chatKey(identity.companyId, identity.agentId, connection.selectedChat), connection);
    }
    return true;
  }

  /** Moves a user connection from its previous chat (if any) to `chatId`. */
  selectChat(connection: Connection, chatId: string): void {
    const { identity } = connection;
    if (identity.kind !== 'user') return;
    const indexed = this.#all.has(connection.id);
    if (indexed && connection.selectedChat !== undefined) {
      removeFrom(this.#byChat, chatKey(identity.companyId, identity.agentId, connection.selectedChat), connection);
    }
    connection.selectedChat = chatId;
    if (indexed) addTo(this.#byChat, chatKey(identity.companyId, identity.agentId, chatId), connection);
  }

  deliver(target: EventTarget, frame: string): number {
    let delivered = 0;
    const send = (connection: Connection) => {
      if (connection.send(frame)) delivered++;
    };
    switch (target.kind) {
      case 'agent':
        this.#byAgent.get(agentKey(target.companyId, target.agentId))?.forEach(send);
        break;
      case 'chat':
        this.#byChat.get(chatKey(target.companyId, target.agentId, target.chatId))?.forEach(send);
        break;
      case 'admins':
        for (const admin of this.#admins) {
          if (adminScopeCovers(admin, target.companyId, target.agentId)) send(admin);
        }
        break;
    }
    return delivered;
  }
}

/** An admin sees an agent's events when every scope field it carries matches ('' matches all). */
export function adminScopeCovers(connection: Connection, companyId: string, agentId: string): boolean {
  const scope = connection.adminScope;
  if (scope === undefined) return false;
  return (
    (scope.companyIdRestriction === '' || scope.companyIdRestriction === companyId) &&
    (scope.subscribedCompanyId === '' || scope.subscribedCompanyId === companyId) &&
    (scope.subscribedAgentId === '' || scope.subscribedAgentId === agentId)
  );
}

// Identifiers are validated at the handshake to exclude ':', so these keys cannot collide.
const agentKey = (companyId: string, agentId: string) => `${companyId}:${agentId}`;
const chatKey = (companyId: string, agentId: string, chatId: string) => `${companyId}:${agentId}:${chatId}`;

function addTo(map: Map<string, Set<Connection>>, key: string, connection: Connection): void {
  let set = map.get(key);
  if (set === undefined) {
    set = new Set();
    map.set(key, set);
  }
  set.add(connection);
}

function removeFrom(map: Map<string, Set<Connection>>, key: string, connection: Connection): void {
  const set = map.get(key);
  if (set === undefined) return;
  set.delete(connection);
  if (set.size === 0) map.delete(key);
}
