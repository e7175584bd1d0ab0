import type { LocalDelivery } from '../acceptor/ConnectionIndex.js';
import { eventFrame } from '../acceptor/protocol.js';
import { eventIdIn, type DispatchOutcome, type InboundEvent } from '../ingest/EventSource.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { Route, RouteRegistry } from '../routes/RouteRegistry.js';
import type { DeliveryLedger } from './DeliveryLedger.js';
import { parseSubject, type EventTarget } from './subject.js';

/** Hands an event to another pod; resolves once that pod has it, rejects when it cannot be reached. */
export interface PeerPush {
  push(podId: string, event: InboundEvent): Promise<void>;
}

/** What dispatch needs: who owns a route, how to write to this pod's sockets, and how to reach the others. */
export interface DispatchDeps {
  readonly routes: RouteRegistry;
  readonly local: LocalDelivery;
  readonly podId: string;
  /** Absent on the in-process engine, where this pod is the only owner there is. */
  readonly peers: PeerPush | undefined;
  /** Absent on the in-process engine, where nothing is ever retried. */
  readonly ledger: DeliveryLedger | undefined;
}

/** An event that can be delivered, or why it never can be, whatever happens to the cluster. */
export type EventCheck =
  | { readonly ok: true; readonly target: EventTarget; readonly eventId: string | undefined }
  | { readonly ok: false; readonly reason: 'subject' | 'payload'; readonly message: string };

/** Checks an event before dispatch; the admin API answers 400 with the same messages. */
export function checkEvent(subject: string, payload: string): EventCheck {
  const target = parseSubject(subject);
  if (target === undefined) {
    return {
      ok: false,
      reason: 'subject',
      message: 'subject must be websocket.{company}.{agent}.chats, .messages.{chat_id} or .agents',
    };
  }
  let doc: unknown;
  try {
    doc = JSON.parse(payload);
  } catch {
    return { ok: false, reason: 'payload', message: 'payload is not valid JSON' };
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    return { ok: false, reason: 'payload', message: 'payload must be a JSON object' };
  }
  return { ok: true, target, eventId: eventIdIn(doc as Record<string, unknown>) };
}

/** An event being dispatched, with what its check found out. */
interface DispatchedEvent extends InboundEvent {
  readonly target: EventTarget;
}

/** What an event's log lines carry: the ids and names an operator searches by. */
function eventFields(event: DispatchedEvent): Record<string, string | undefined> {
  return { request_id: event.requestId, event_id: event.eventId, company: event.target.companyId, agent: event.target.agentId, subject: event.subject };
}

/** For each event: find the pods that own its route, deliver to this pod's connections, push to the others. */
export class Dispatch {
  /** Delivery keys of events written here lately: a retry whose first attempt did arrive is not written twice. */
  readonly #recent = new Set<string>();

  constructor(
    private readonly deps: DispatchDeps,
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {}

  /**
   * Handles one event from the event source. `delivered` means every live owner has it (or there is
   * none), `retry` that an owner could not be reached, `rejected` that it is malformed (poison).
   */
  readonly handle = async (inbound: InboundEvent): Promise<DispatchOutcome> => {
    this.metrics.eventsIn.inc({ source: inbound.origin });
    const check = checkEvent(inbound.subject, inbound.payload);
    if (!check.ok) {
      this.metrics.eventsRejected.inc({ reason: check.reason });
      this.log.warn({ request_id: inbound.requestId, subject: inbound.subject, reason: check.message }, 'event refused');
      return 'rejected';
    }
    const event: DispatchedEvent = { ...inbound, eventId: check.eventId, target: check.target };
    const route = routeFor(check.target);
    const served = await this.#alreadyServed(event);
    // A redelivery always asks Redis: it is being retried because something changed.
    const remembered = event.delivery?.redelivered === true ? undefined : this.deps.routes.remembered?.(route);
    if (remembered === undefined) {
      const found = await this.deps.routes.owners(route);
      // An event without a delivery key (the admin API without a broker) could not be told from its
      // repeat: while owners may be missing it goes to nobody, and its publisher is asked again.
      const pods = found.incompleteForMs > 0 && event.delivery === undefined ? [] : found.pods;
      return this.#settle(event, await this.#deliverTo(event, pods, served), found.incompleteForMs);
    }
    // Delivered from the pod's copy of the owners at once; confirmed (or completed) before the ack.
    // The confirm starts first, so it hears the route changes made before the event arrived (and
    // within its few milliseconds of gathering), not those made while the pushes to peers were answered.
    const confirmed = remembered.confirm();
    const first = await this.#deliverTo(event, remembered.owners, served);
    if (await confirmed) return this.#settle(event, first, 0);
    this.metrics.routeCopyMisses.inc();
    const found = await this.deps.routes.owners(route);
    const missed = found.pods.filter((pod) => !remembered.owners.includes(pod));
    const second = await this.#deliverTo(event, missed, served);
    const attempt = { owners: first.owners + second.owners, reached: [...first.reached, ...second.reached], complete: first.complete && second.complete };
    return this.#settle(event, attempt, found.incompleteForMs);
  };

  /** Writes to this pod's connections if it is an owner and pushes to the other owners not yet served. */
  async #deliverTo(event: DispatchedEvent, owners: readonly string[], served: ReadonlySet<string>): Promise<Attempt> {
    const pending = owners.filter((pod) => !served.has(pod));
    const reached: string[] = [];
    if (pending.includes(this.deps.podId)) {
      this.#deliverLocally(event);
      reached.push(this.deps.podId);
    }
    const remote = pending.filter((pod) => pod !== this.deps.podId);
    if (remote.length === 0) return { owners: owners.length, reached, complete: true };
    const forwarded = await this.#forward(remote, event);
    reached.push(...forwarded);
    return { owners: owners.length, reached, complete: forwarded.length === remote.length };
  }

  /**
   * `delivered` once every owner has the event; otherwise remembers who has it and asks for a retry,
   * after `incompleteForMs` when the owners looked up may not be all of them yet.
   */
  async #settle(event: DispatchedEvent, attempt: Attempt, incompleteForMs: number): Promise<DispatchOutcome> {
    if (incompleteForMs > 0) {
      // Owners that have not re-asserted their routes yet would be skipped for good: held until they have.
      this.metrics.eventsFannedOut.inc({ outcome: 'deferred' });
      this.#debug(event, 'route owners may be incomplete; the event will be retried', { retry_after_ms: incompleteForMs });
      await this.#remember(event, attempt.reached);
      return { retryAfterMs: incompleteForMs };
    }
    if (attempt.owners === 0) {
      this.metrics.eventsFannedOut.inc({ outcome: 'dropped' });
      this.#debug(event, 'no connection wants this event');
      return 'delivered';
    }
    if (attempt.complete) return 'delivered';
    await this.#remember(event, attempt.reached);
    return 'retry';
  }

  /** Handles events pushed by a peer: local connections only. Answers how many connections got each. */
  deliverFromPeer(events: readonly InboundEvent[]): number[] {
    return events.map((inbound) => {
      this.metrics.eventsIn.inc({ source: inbound.origin });
      const target = parseSubject(inbound.subject);
      if (target === undefined) return 0;
      const event: DispatchedEvent = { ...inbound, target };
      this.#debug(event, 'event received from a peer');
      return this.#deliverLocally(event);
    });
  }

  #deliverLocally(event: DispatchedEvent): number {
    const key = event.delivery?.key;
    if (key !== undefined) {
      if (this.#recent.has(key)) {
        this.#debug(event, 'event already delivered here; skipped');
        return 0;
      }
      this.#recent.add(key);
      // A Set iterates in insertion order: the first key is the oldest.
      if (this.#recent.size > RECENT_DELIVERIES) this.#recent.delete(this.#recent.values().next().value ?? '');
    }
    const delivered = this.deps.local.deliver(event.target, eventFrame(event.payload));
    this.metrics.eventsFannedOut.inc({ outcome: 'local' }, delivered);
    // Publish → socket write: a pod that wrote to no socket has nothing to add.
    if (delivered > 0) this.metrics.eventDeliveryLatency.observe(Math.max(0, Date.now() - event.publishedAtMs) / 1000);
    this.#debug(event, 'event delivered', { delivered });
    return delivered;
  }

  /** Pushes to other owners; answers the pods that have it now. */
  async #forward(pods: readonly string[], event: DispatchedEvent): Promise<string[]> {
    const { peers } = this.deps;
    if (peers === undefined) {
      this.metrics.eventsFannedOut.inc({ outcome: 'dropped' }, pods.length);
      this.log.warn({ ...eventFields(event), pods }, 'owners on other pods but no forwarder; dropping');
      return [...pods];
    }
    const results = await Promise.allSettled(pods.map((pod) => peers.push(pod, event)));
    const reached = pods.filter((_, i) => results[i]?.status === 'fulfilled');
    this.metrics.eventsFannedOut.inc({ outcome: 'forwarded' }, reached.length);
    if (reached.length === pods.length) {
      this.#debug(event, 'event forwarded', { pods });
    } else {
      const failed = pods.filter((pod) => !reached.includes(pod));
      this.log.warn({ ...eventFields(event), pods: failed }, 'could not reach every owner; the event will be retried');
    }
    return reached;
  }

  /** On a redelivery, the owners an earlier attempt already reached (a failed read means none). */
  async #alreadyServed(event: InboundEvent): Promise<ReadonlySet<string>> {
    const { ledger } = this.deps;
    if (ledger === undefined || event.delivery === undefined || !event.delivery.redelivered) return new Set();
    try {
      return await ledger.served(event.delivery.key);
    } catch (err) {
      this.log.warn({ err, request_id: event.requestId, event_id: event.eventId }, 'could not read which owners have the event; delivering to all');
      return new Set();
    }
  }

  /** The per-event debug lines: their fields are built only when debug logging is on (this is the hot path). */
  #debug(event: DispatchedEvent, message: string, extra?: Record<string, unknown>): void {
    if (this.log.isLevelEnabled('debug')) this.log.debug({ ...eventFields(event), ...extra }, message);
  }

  async #remember(event: DispatchedEvent, reached: readonly string[]): Promise<void> {
    const { ledger } = this.deps;
    if (ledger === undefined || event.delivery === undefined) return;
    try {
      await ledger.record(event.delivery.key, reached);
    } catch (err) {
      this.log.warn({ err, ...eventFields(event) }, 'could not record which owners have the event; a retry may repeat it');
    }
  }
}

/** One pass of delivering an event to a set of owners. */
interface Attempt {
  /** How many owners the pass was given (served or not). */
  readonly owners: number;
  /** The pods that have the event after it. */
  readonly reached: readonly string[];
  /** Every owner not served before has it now. */
  readonly complete: boolean;
}

/** How many delivery keys a pod remembers: comfortably more than the events retried within a nak delay. */
const RECENT_DELIVERIES = 50_000;

/** The route whose owners receive an event for `target`. */
function routeFor(target: EventTarget): Route {
  return target.kind === 'admins' ? { kind: 'admins' } : target;
}
