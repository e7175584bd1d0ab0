import { randomUUID } from 'node:crypto';
import { GatewayError } from '../errors.js';
import { REQUEST_ID_HEADER, type EventSink, type EventSource } from '../ingest/EventSource.js';

/**
 * Events without a broker: a publish goes straight to dispatch, on the same path a NATS event
 * takes. The in-process engine's source, and a cluster pod's when NATS_URL is empty.
 */
export class LocalEventSource implements EventSource {
  #sink: EventSink | undefined;
  #stopped = false;

  async start(sink: EventSink): Promise<void> {
    this.#sink = sink;
  }

  async publish(subject: string, payload: string, headers: Readonly<Record<string, string>>): Promise<void> {
    if (this.#sink === undefined || this.#stopped) throw new GatewayError('ServiceUnavailable', 'this pod is shutting down; publish to another pod');
    const outcome = await this.#sink({ origin: 'admin_api', subject, payload, requestId: headers[REQUEST_ID_HEADER] ?? randomUUID(), publishedAtMs: Date.now() });
    // Without a broker nothing redelivers: the publisher must hear that an owner missed the event.
    if (outcome === 'retry') throw new GatewayError('ServiceUnavailable', 'an owning pod could not be reached; publish again');
    if (typeof outcome === 'object') {
      const seconds = Math.ceil(outcome.retryAfterMs / 1000);
      const message = `Redis lost its data and pods are re-asserting their routes; publish again in ${seconds} s`;
      throw new GatewayError('ServiceUnavailable', message, { retry_after_ms: outcome.retryAfterMs });
    }
  }

  isHealthy(): boolean {
    return true;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
  }
}
