// Publishes benchmark events at a steady rate with core NATS publishes: JetStream stores a core
// publish to a stream subject like any other, and the publisher skips waiting for a PubAck per
// event, so its own cost stays small next to what is measured.
import type { NatsConnection } from 'nats';
import { BENCH_SUBJECT, eventPayload } from './fanoutProtocol.js';

/** Timer period; each tick publishes whatever is due, so timer jitter delays events but never drops them. */
const TICK_MS = 1;

/** What one paced run did. */
export interface PublishRun {
  readonly published: number;
  readonly elapsedMs: number;
  /** CPU of this (the orchestrator's) process while publishing, in ms. */
  readonly cpuMs: number;
}

/**
 * Publishes `rate` events per second for `durationMs`, each stamped with its own send time (and
 * carrying `padding`, to set the event size); flushes at the end.
 */
export async function publishPaced(nc: NatsConnection, phase: string, rate: number, durationMs: number, padding = ''): Promise<PublishRun> {
  const total = Math.round((rate * durationMs) / 1000);
  const cpuBefore = process.cpuUsage();
  const startedAt = performance.now();
  let seq = 0;
  await new Promise<void>((resolve) => {
    const publishDue = () => {
      // Due by the clock since the start, not by ticks: a late tick catches up in one batch.
      const due = Math.min(total, Math.floor(((performance.now() - startedAt) * rate) / 1000) + 1);
      for (; seq < due; seq++) nc.publish(BENCH_SUBJECT, eventPayload(phase, seq, padding));
      if (seq >= total) {
        clearInterval(timer);
        resolve();
      }
    };
    const timer = setInterval(publishDue, TICK_MS);
    publishDue();
  });
  await nc.flush();
  const cpu = process.cpuUsage(cpuBefore);
  return { published: seq, elapsedMs: performance.now() - startedAt, cpuMs: (cpu.user + cpu.system) / 1000 };
}
