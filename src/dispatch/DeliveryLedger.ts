/**
 * Which pods already have an event that is being retried, shared by every pod that may handle a
 * redelivery, so a retry reaches only the owners that missed it. Written only when a delivery
 * fails part-way; read only for redeliveries. The happy path never touches it.
 */
export interface DeliveryLedger {
  /** The pods recorded as having the event. */
  served(key: string): Promise<ReadonlySet<string>>;
  /** Records pods that now have the event. */
  record(key: string, pods: readonly string[]): Promise<void>;
}
