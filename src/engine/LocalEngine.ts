import type { Engine } from './Engine.js';
import { LocalPods } from './LocalPods.js';
import { LocalRoutes } from './LocalRoutes.js';
import { LocalSessions } from './LocalSessions.js';
import { LocalTokenCache } from './LocalTokenCache.js';

const TOKEN_CACHE_ENTRIES = 100_000;

/** One pod, everything in memory: what `npm start` runs on a bare machine. */
export class LocalEngine implements Engine {
  readonly name = 'in-process';
  readonly sessions: LocalSessions;
  readonly routes: LocalRoutes;
  readonly tokenCache = new LocalTokenCache(TOKEN_CACHE_ENTRIES);
  readonly pods: LocalPods;
  readonly deliveryLedger = undefined;

  constructor(podId: string, maxDevices: number, connectionCount: () => number) {
    this.sessions = new LocalSessions(podId, { maxDevices });
    this.routes = new LocalRoutes(podId);
    this.pods = new LocalPods(podId, Date.now(), connectionCount);
  }

  isHealthy(): boolean {
    return true;
  }

  async start(): Promise<void> {}

  async stop(): Promise<void> {}
}
