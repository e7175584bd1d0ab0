import type { PodDirectory, PodInfo } from '../routes/PodDirectory.js';

/** The in-process pod directory: the one pod there is. */
export class LocalPods implements PodDirectory {
  constructor(
    private readonly podId: string,
    private readonly startedAtMs: number,
    private readonly connectionCount: () => number,
  ) {}

  async list(): Promise<readonly PodInfo[]> {
    return [{ podId: this.podId, connections: this.connectionCount(), startedAtMs: this.startedAtMs, lastSeenMs: Date.now() }];
  }
}
