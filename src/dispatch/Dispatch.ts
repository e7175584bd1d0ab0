import type { LocalDelivery } from '../acceptor/ConnectionIndex.js';
import { eventFrame } from '../acceptor/protocol.js';
import type { InboundEvent } from '../ingest/EventSource.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { Route, RouteRegistry } from '../routes/RouteRegistry.js';
import { parseSubject, type EventTarget } from './subject.js';

/** What dispatch needs: who owns a route, and how to write to this pod's sockets. */
export interface DispatchDeps {
  readonly routes: RouteRegistry;
  readonly local: LocalDelivery;
  readonly podId: string;
}

/** An event that can be delivered, or why it never can be, whatever happens to the cluster. */
export type EventCheck =
  | { readonly ok: true; readonly target: EventTarget }
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
  try {
    const doc: unknown = JSON.parse(payload);
    if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
      return { ok: false, reason: 'payload', message: 'payload must be a JSON object' };
    }
  } catch {
    return { ok: false, reason: 'payload', message: 'payload is not valid JSON' };
  }
  return { ok: true, target };
}

/** For each event: find the pods that own its route and deliver to this pod's connections. */
export class Dispatch {
  constructor(
    private readonly deps: DispatchDeps,
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {}

  /** Handles one event; malformed ones are counted and logged, never retried. */
  readonly handle = async (event: InboundEvent): Promise<void> => {
    this.metrics.eventsIn.inc({ source: event.origin });
    const check = checkEvent(event.subject, event.payload);
    if (!check.ok) {
      this.metrics.eventsRejected.inc({ reason: check.reason });
      this.log.warn({ request_id: event.requestId, subject: event.subject, reason: check.message }, 'event refused');
      return;
    }
    const { target } = check;
    const owners = await this.deps.routes.owners(routeFor(target));
    const remote = owners.filter((pod) => pod !== this.deps.podId);
    if (remote.length > 0) {
      // Pod-to-pod forwarding is not in this version: say so rather than lose events quietly.
      this.metrics.eventsFannedOut.inc({ outcome: 'dropped' }, remote.length);
      this.log.warn({ request_id: event.requestId, subject: event.subject, pods: remote }, 'event owners on other pods cannot be reached: forwarding is not available');
    }
    if (!owners.includes(this.deps.podId)) {
      if (owners.length === 0) this.metrics.eventsFannedOut.inc({ outcome: 'dropped' });
      this.log.debug({ request_id: event.requestId, subject: event.subject }, 'no connection on this pod wants this event');
      return;
    }
    const delivered = this.deps.local.deliver(target, eventFrame(event.payload));
    this.metrics.eventsFannedOut.inc({ outcome: 'local' }, delivered);
    this.metrics.eventDeliveryLatency.observe(Math.max(0, Date.now() - event.publishedAtMs) / 1000);
    this.log.debug({ request_id: event.requestId, subject: event.subject, delivered }, 'event delivered');
  };
}

/** The route whose owners receive an event for `target`. */
function routeFor(target: EventTarget): Route {
  return target.kind === 'admins' ? { kind: 'admins' } : target;
}
