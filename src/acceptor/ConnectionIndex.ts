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
/** How soon after a publish the send buffers of its topic's members are checked. */
const SLOW_CONSUMER_SWEEP_MS = 100;

/**
 * The ready connections of this pod. Delivery is uWS pub/sub: each connection subscribes to the
 * topics of its agent, its selected chat, or (admins) its scope, and one publish reaches them all
 * from C++, batched per socket. uWS reports no back-pressure for a publish, so the index also
 * keeps each topic's members, and a sweep shortly after a publish closes those of them past their
 * send-buffer ceiling with 4408. Only topics published to are swept, and an idle pod sets no timer.
 */
export class ConnectionIndex implements LocalDelivery {
  readonly #all = new Map<string, Connection>();
  readonly #members = new Map<string, Set<Connection>>();
  /** Topics published to since the last sweep. */
  #published = new Set<string>();
  #sweep: NodeJS.Timeout | undefined;

  constructor(
    private readonly app: TemplatedApp,
    /** Compress published events for clients that negotiated permessage-deflate (WS_COMPRESSION). */
    private readonly compress: boolean,
  ) {}

  get size(): number {
    return this.#all.size;
  }

  /** Every indexed connection (a snapshot, safe to close while iterating). */
  snapshot(): Connection[] {
    return [...this.#all.values()];
  }

  /**
   * Every indexed connection, without copying: for the heartbeat sweep over every socket.
   * Closing while iterating is safe too (a Map skips entries deleted meanwhile).
   */
  values(): IterableIterator<Connection> {
    return this.#all.values();
  }

  add(connection: Connection): void {
    this.#all.set(connection.id, connection);
    for (const topic of topicsOf(connection)) this.#join(connection, topic);
  }

  /** Removes a connection (its uWS subscriptions end with its socket); false if it was not indexed. */
  remove(connection: Connection): boolean {
    if (!this.#all.delete(connection.id)) return false;
    for (const topic of topicsOf(connection)) this.#leave(connection, topic);
    return true;
  }

  /** Moves a user connection from its previous chat (if any) to `chatId`. */
  selectChat(connection: Connection, chatId: string): void {
    const { identity } = connection;
    if (identity.kind !== 'user') return;
    const indexed = this.#all.has(connection.id);
    if (indexed && connection.selectedChat !== undefined) {
      this.#leave(connection, chatTopic(identity.companyId, identity.agentId, connection.selectedChat));
    }
    connection.selectedChat = chatId;
    if (indexed) this.#join(connection, chatTopic(identity.companyId, identity.agentId, chatId));
  }

  /** Drops a pending sweep (the sockets are about to close). */
  stop(): void {
    clearTimeout(this.#sweep);
    this.#sweep = undefined;
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
    if (subscribers === 0) return 0;
    this.app.publish(topic, frame, false, this.compress);
    this.#published.add(topic);
    this.#sweep ??= setTimeout(() => this.#sweepPublished(), SLOW_CONSUMER_SWEEP_MS).unref();
    return subscribers;
  }

  /** Runs after uWS has written what was published: fails each member of those topics past its ceiling. */
  #sweepPublished(): void {
    this.#sweep = undefined;
    const published = this.#published;
    this.#published = new Set();
    for (const topic of published) {
      for (const connection of this.#members.get(topic) ?? []) {
        if (connection.overflowing) connection.failSlow();
      }
    }
  }

  #join(connection: Connection, topic: string): void {
    connection.subscribe(topic);
    let members = this.#members.get(topic);
    if (members === undefined) {
      members = new Set();
      this.#members.set(topic, members);
    }
    members.add(connection);
  }

  /** Leaves a topic; on a closed connection the unsubscribe is a no-op (its socket took its subscriptions along). */
  #leave(connection: Connection, topic: string): void {
    connection.unsubscribe(topic);
    const members = this.#members.get(topic);
    if (members === undefined) return;
    members.delete(connection);
    if (members.size === 0) this.#members.delete(topic);
  }
}

/** The topics a connection is subscribed to: its admin scope, or its agent and its selected chat. */
function topicsOf(connection: Connection): string[] {
  const { identity } = connection;
  if (identity.kind === 'admin') return [adminScopeTopic(connection)];
  const topics = [agentTopic(identity.companyId, identity.agentId)];
  if (connection.selectedChat !== undefined) topics.push(chatTopic(identity.companyId, identity.agentId, connection.selectedChat));
  return topics;
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
