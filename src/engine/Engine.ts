import type { TokenCache } from '../auth/TokenCache.js';
import type { DeliveryLedger } from '../dispatch/DeliveryLedger.js';
import type { PodDirectory } from '../routes/PodDirectory.js';
import type { RouteRegistry } from '../routes/RouteRegistry.js';
import type { SessionStore } from '../sessions/SessionStore.js';

/** The shared state of the cluster: in process for one pod, in Redis for many. */
export interface Engine {
  readonly name: 'in-process' | 'redis';
  readonly sessions: SessionStore;
  readonly routes: RouteRegistry;
  readonly tokenCache: TokenCache;
  readonly pods: PodDirectory;
  /** Shared record of partial deliveries; absent where nothing is retried across pods. */
  readonly deliveryLedger: DeliveryLedger | undefined;
  /** False while the engine cannot take new sessions; /ready answers 503 then. */
  isHealthy(): boolean;
  start(): Promise<void>;
  /** Releases what this pod holds; called after its connections are closed. */
  stop(): Promise<void>;
}
