// What the benchmark scripts share: a record of every process
// they started, stopped newest first at the end or on an interrupt, and the Redis + NATS (with the
// events stream) that every server under test runs against.
import type { NatsConnection } from 'nats';
import { randomKeys } from '../test/support/gateway.js';
import { NatsServer } from '../test/support/nats.js';
import { RedisServer } from '../test/support/redis.js';
import { STREAM, STREAM_SUBJECTS } from './fanoutProtocol.js';
import type { Infra } from './fanoutTargets.js';

/** Anything a benchmark starts and must stop. */
export interface Stoppable {
  stop(): Promise<unknown>;
}

/** Every process a benchmark started and has not stopped; SIGINT or SIGTERM stops them all. */
export class StartedProcesses {
  readonly #running: Stoppable[] = [];

  constructor() {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      process.once(signal, () => {
        process.stderr.write(`\n${signal}: stopping every process this benchmark started\n`);
        void this.stopAll().then(() => process.exit(130));
      });
    }
  }

  track<T extends Stoppable>(thing: T): T {
    this.#running.push(thing);
    return thing;
  }

  /** Stops tracking without stopping (something else that is tracked now stops it). */
  untrack(thing: Stoppable): void {
    const at = this.#running.indexOf(thing);
    if (at >= 0) this.#running.splice(at, 1);
  }

  /** Stops one tracked thing now. */
  async release(thing: Stoppable): Promise<void> {
    this.untrack(thing);
    await thing.stop();
  }

  /** Stops everything still running, newest first. */
  async stopAll(): Promise<void> {
    const all = this.#running.splice(0).reverse();
    await Promise.allSettled(all.map((thing) => thing.stop()));
  }
}

/** A Redis and a NATS of one's own, with the events stream, and a publishing connection to that NATS. */
export interface Testbed {
  readonly infra: Infra;
  readonly nc: NatsConnection;
  readonly redis: RedisServer;
  readonly nats: NatsServer;
}

/** Starts a Redis and a NATS (tracked), creates the events stream, and answers what the targets need. */
export async function startInfra(started: StartedProcesses, podNodeArgs: readonly string[] = []): Promise<Testbed> {
  const redis = started.track(await RedisServer.start());
  const nats = started.track(await NatsServer.start());
  const nc = await nats.client();
  const jsm = await nc.jetstreamManager();
  await jsm.streams.add({ name: STREAM, subjects: [STREAM_SUBJECTS] }).catch(() => undefined);
  return { infra: { redisUrl: redis.url, natsUrl: nats.url, jsm, keys: randomKeys(), podNodeArgs }, nc, redis, nats };
}

/** The names in a comma-separated flag, each one of `known`; otherwise an error that lists the choices. */
export function chooseFrom<T extends string>(flag: string, known: readonly T[], what: string): T[] {
  const isKnown = (name: string): name is T => (known as readonly string[]).includes(name);
  return flag.split(',').map((name) => {
    if (!isKnown(name)) throw new Error(`unknown ${what} ${name}: use ${known.join(', ')}`);
    return name;
  });
}
