import { randomUUID } from 'node:crypto';
import type { EventSink, EventSource } from '../ingest/EventSource.js';

const REQUEST_ID_HEADER = 'x-request-id';

/** The in-process event source: a publish goes straight to dispatch, on the same path a NATS event takes. */
export class LocalEventSource implements EventSource {
  #sink: EventSink | undefined;
  #stopped = false;

  async start(sink: EventSink): Promise<void> {
    this.#sink = sink;
  }

  async publish(subject: string, payload: string, headers: Readonly<Record<string, string>>): Promise<void> {
    if (this.#sink === undefined || this.#stopped) throw new Error('event source is not running');
    const requestId = Object.entries(headers).find(([name]) => name.toLowerCase() === REQUEST_ID_HEADER)?.[1];
    await this.#sink({ origin: 'admin_api', subject, payload, requestId: requestId ?? randomUUID(), publishedAtMs: Date.now() });
  }

  isHealthy(): boolean {
    return true;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
  }
}
