import type { TemplatedApp } from 'uWebSockets.js';
import type { EventTarget } from '../dispatch/subject.js';
import type { Connection } from './Connection.js';

/** Delivers a serialized frame to the local connections an event targets; answers how many got it. */
export interface LocalDelivery {
  deliver(target: EventTarget, frame: string): number;
}

// uWS topics, one per way events address connections. Ids exclude ':' and '*', so these cannot collide.
const agentTopic = (companyId: string, agentId: string) => `agent:${companyId}:${agentId}`;
const chatTopic = (companyId: string, agentId: string, chatId: string) => `chat:${companyId}:${agentId}:${chatId}`;
const adminTopic = (companyId: string, agentId: string) => `admins:${companyId}:${agentId}`;
const ANY = '*';

/**
 * The ready connections of this pod. Delivery is uWS pub/sub: each connection subscribes to the
 * topics of its agent, its selected chat, or (admins) its scope, and one publish reaches them all
 * from C++, batched per socket. Send-buffer ceilings are enforced by the acceptor's sweep.
 */
export class ConnectionIndex implements LocalDelivery {
  readonly #all = new Map<string, Connection>();

  constructor(private readonly app: TemplatedApp) {}

  get size(): number {
    return this.#all.size;
  }

  /** Every indexed connection (a snapshot, safe to close while iterating). */
  snapshot(): Connection[] {
    return [...this.#all.values()];
  }

  /**
   * Every indexed connection, without copying: for sweeps that run several times a second over
   * every socket. Closing while iterating is safe too (a Map skips entries deleted meanwhile).
   */
  values(): IterableIterator<Connection> {
    return this.#all.values();
  }

  add(connection: Connection): void {
    this.#all.set(connection.id, connection);
    const { identity } = connection;
    if (identity.kind === 'admin') {
      connection.subscribe(adminScopeTopic(connection));
      return;
    }
    connection.subscribe(agentTopic(identity.companyId, identity.agentId));
    if (connection.selectedChat !== undefined) {
      connection.subscribe(chatTopic(identity.companyId, identity.agentId, connection.selectedChat));
    }
  }

  /** Removes a connection (its subscriptions end with its socket); false if it was not indexed. */
  remove(connection: Connection): boolean {
    return this.#all.delete(connection.id);
  }

  /** Moves a user connection from its previous chat (if any) to `chatId`. */
  selectChat(connection: Connection, chatId: string): void {
    const { identity } = connection;
    if (identity.kind !== 'user') return;
    const indexed = this.#all.has(connection.id);
    if (indexed && connection.selectedChat !== undefined) {
      connection.unsubscribe(chatTopic(identity.companyId, identity.agentId, connection.selectedChat));
    }
    connection.selectedChat = chatId;
    if (indexed) connection.subscribe(chatTopic(identity.companyId, identity.agentId, chatId));
  }

  deliver(target: EventTarget, frame: string): number {
    switch (target.kind) {
      case 'agent':
        return this.#publish(agentTopic(target.companyId, target.agentId), frame);
      case 'chat':
        return this.#publish(chatTopic(target.companyId, target.agentId, target.chatId), frame);
      case 'admins': {
        // An admin subscribes to exactly one of these, so nobody gets the event twice.
        const { companyId, agentId } = target;
        const topics = [adminTopic(ANY, ANY), adminTopic(companyId, ANY), adminTopic(ANY, agentId), adminTopic(companyId, agentId)];
        return topics.reduce((sum, topic) => sum + this.#publish(topic, frame), 0);
      }
    }
  }

  #publish(topic: string, frame: string): number {
    const subscribers = this.app.numSubscribers(topic);
    if (subscribers > 0) this.app.publish(topic, frame, false);
    return subscribers;
  }
}

/**
 * The one admin topic a connection's scope maps to: the company it is restricted or subscribed to
 * (if both are set they must agree, or it sees nothing) and the agent it is subscribed to.
 */
function adminScopeTopic(connection: Connection): string {
  const scope = connection.adminScope;
  const restriction = scope?.companyIdRestriction ?? '';
  const subscribed = scope?.subscribedCompanyId ?? '';
  if (restriction !== '' && subscribed !== '' && restriction !== subscribed) return 'admins:none';
  const company = restriction !== '' ? restriction : subscribed;
  const agent = scope?.subscribedAgentId ?? '';
  return adminTopic(company === '' ? ANY : company, agent === '' ? ANY : agent);
}
