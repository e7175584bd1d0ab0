/** What brought an event in; the label of the events-in metric. */
export type EventOrigin = 'admin_api';

/** An event as it enters dispatch, whatever brought it. */
export interface InboundEvent {
  readonly origin: EventOrigin;
  readonly subject: string;
  /** The payload exactly as published (JSON text); it reaches clients unchanged. */
  readonly payload: string;
  readonly requestId: string;
  /** When the event was published, for the delivery-latency metric. */
  readonly publishedAtMs: number;
}

/** Receives events; resolves once they are delivered or definitively refused. */
export type EventSink = (event: InboundEvent) => Promise<void>;

/** Where events come from: NATS JetStream in a cluster, the admin API on the in-process engine. */
export interface EventSource {
  /** Begins handing events to the sink. */
  start(sink: EventSink): Promise<void>;
  /** Publishes an event (the admin API's /admin/publish). */
  publish(subject: string, payload: string, headers: Readonly<Record<string, string>>): Promise<void>;
  /** Stops taking new events once the ones in flight are handed over. */
  stop(): Promise<void>;
}
