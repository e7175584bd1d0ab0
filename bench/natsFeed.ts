// The NATS side of the peer servers (bare uWS, Socket.IO): the same subject read the same way, so
// only their delivery paths differ from Switchboard's.
import { connect, DeliverPolicy, type JsMsg, type Msg, type NatsConnection } from 'nats';
import { BENCH_SUBJECT, STREAM } from './fanoutProtocol.js';

const CONSUMER_BATCH = 1000;

/**
 * Hands every bench event's payload to `onPayload`: from a core subscription, or a JetStream
 * consumer of new messages. Answers the connection, for the caller to close.
 */
export async function feedFromNats(servers: string, source: string, name: string, onPayload: (data: Uint8Array) => void): Promise<NatsConnection> {
  const nc = await connect({ servers, name, maxReconnectAttempts: -1 });
  if (source === 'core') {
    nc.subscribe(BENCH_SUBJECT, { callback: (err: Error | null, msg: Msg) => err === null && onPayload(msg.data) });
    await nc.flush();
    return nc;
  }
  // A string, not an array: nats.js sends an array as filter_subjects, which nats-server 2.9
  // does not know, and consume() then retries creating the consumer for ever.
  const consumer = await nc.jetstream().consumers.get(STREAM, { filterSubjects: BENCH_SUBJECT, deliver_policy: DeliverPolicy.New });
  await consumer.consume({ max_messages: CONSUMER_BATCH, callback: (msg: JsMsg) => onPayload(msg.data) });
  return nc;
}
