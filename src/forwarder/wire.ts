import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

// Resolved from the build (dist/src/forwarder/): proto/ sits at the project root.
const PROTO_FILE = fileURLToPath(new URL('../../../proto/switchboard/v1/forward.proto', import.meta.url));

/** An event on the wire (field names as in forward.proto). */
export interface WireEvent {
  readonly subject: string;
  readonly payload: Buffer;
  readonly request_id: string;
  readonly published_at_ms: number;
  /** '' when the event is never retried. */
  readonly delivery_key: string;
  /** '' when the payload has none. */
  readonly event_id: string;
}

export interface PushRequest {
  readonly events: readonly WireEvent[];
  readonly batch_id: number;
}

/** The answer to one batch: for each of its events, how many local connections it was written to. */
export interface BatchResult {
  readonly batch_id: number;
  readonly delivered: readonly number[];
}

/** The batches one reply answers (a busy receiver answers several at once). */
export interface PushReply {
  readonly batches: readonly BatchResult[];
}

/** The generated client of the Forwarder service. */
export interface ForwarderClient extends grpc.Client {
  Push(metadata?: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientDuplexStream<PushRequest, PushReply>;
}

interface ForwarderPackage {
  readonly switchboard: { readonly v1: { readonly Forwarder: grpc.ServiceClientConstructor } };
}

/** Loads forward.proto once: longs as numbers, so published_at_ms is a plain number. */
export function loadForwarderService(): grpc.ServiceClientConstructor {
  const definition = protoLoader.loadSync(PROTO_FILE, { keepCase: true, longs: Number, defaults: true });
  return (grpc.loadPackageDefinition(definition) as unknown as ForwarderPackage).switchboard.v1.Forwarder;
}
