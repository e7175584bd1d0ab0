/** A live pod as the admin API lists it. */
export interface PodInfo {
  readonly podId: string;
  readonly connections: number;
  readonly startedAtMs: number;
  readonly lastSeenMs: number;
}

/** The live pods of the cluster. */
export interface PodDirectory {
  list(): Promise<readonly PodInfo[]>;
}
