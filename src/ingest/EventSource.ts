/** The header that carries an event's request id, in NATS and on admin publishes (one spelling: NATS reads headers case-sensitively). */
export const REQUEST_ID_HEADER = 'X-Request-ID';

/** What brought an event in; the label of the events-in metric. */
export type EventOrigin = 'admin_api' | 'nats' | 'peer';

/**
 * What became of an event: acknowledge it, try it again later (after the configured delay, or after
 * `retryAfterMs` when dispatch knows how long its owners may stay unknown), or drop it for good as
 * malformed.
 */
export type DispatchOutcome = 'delivered' | 'retry' | { readonly retryAfterMs: number } | 'rejected';

/** An event as it enters dispatch, whatever brought it. */
export interface InboundEvent {
  readonly origin: EventOrigin;
  readonly subject: string;
  /** The payload exactly as published (JSON text); it reaches clients unchanged. */
  readonly payload: string;
  readonly requestId: string;
  /** The payload's `event_id`, once dispatch has read it (for log lines on both pods). */
  readonly eventId?: string | undefined;
  /** When the event was published, for the delivery-latency metric. */
  readonly publishedAtMs: number;
  /**
   * Set for events that may come again (NATS): a key unique to the event (its stream sequence and publish time)
   * and whether this is a redelivery, so a retry can skip the owners that already have it.
   */
  readonly delivery?: { readonly key: string; readonly redelivered: boolean };
}

/** Receives events; resolves with what became of each. */
export type EventSink = (event: InboundEvent) => Promise<DispatchOutcome>;

/** Where events come from: NATS JetStream when NATS_URL is set, otherwise the admin API's /admin/publish. */
export interface EventSource {
  /** Begins handing events to the sink. */
  start(sink: EventSink): Promise<void>;
  /** Publishes an event (the admin API's /admin/publish). */
  publish(subject: string, payload: string, headers: Readonly<Record<string, string>>): Promise<void>;
  /** False while events cannot flow (the broker is unreachable); /ready answers 503 then. */
  isHealthy(): boolean;
  /** Stops taking new events once the ones in flight are handed over. */
  stop(): Promise<void>;
}

/** The payload's `event_id` (DESIGN.md §7), for log lines; undefined when it has none or is not JSON. */
export function eventIdOf(payload: string): string | undefined {
  try {
    const doc: unknown = JSON.parse(payload);
    return typeof doc === 'object' && doc !== null ? eventIdIn(doc as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** The `event_id` of a parsed payload, as text. */
export function eventIdIn(doc: Record<string, unknown>): string | undefined {
  const id = doc['event_id'];
  return typeof id === 'string' || typeof id === 'number' ? String(id) : undefined;
}
