/** A route: the set of pods that hold connections interested in some events (DESIGN.md §6). */
export type Route =
  | { readonly kind: 'agent'; readonly companyId: string; readonly agentId: string }
  | { readonly kind: 'chat'; readonly companyId: string; readonly agentId: string; readonly chatId: string }
  | { readonly kind: 'admins' };

/**
 * Which pods want which events. A pod retains a route once per interested connection and
 * releases it when that connection goes; the registry counts, so the pod stays listed until
 * its last interested connection leaves.
 */
export interface RouteRegistry {
  /** Counts one more interested local connection; resolves once the route names this pod. */
  retain(route: Route): Promise<void>;
  /** Counts one interested local connection less; the pod leaves the route at zero. */
  release(route: Route): Promise<void>;
  /** The pod ids that currently hold the route. */
  owners(route: Route): Promise<RouteOwners>;
  /**
   * The owners as this pod last read them, if it has a copy it is told about changes to: dispatch
   * delivers to them at once and asks `confirm` before it acks. Absent where a lookup costs nothing.
   */
  remembered?(route: Route): RememberedOwners | undefined;
}

/** A route's owners as a lookup found them. */
export interface RouteOwners {
  readonly pods: readonly string[];
  /**
   * Above 0 while the answer may miss owners: Redis lost its data and pods are still re-asserting
   * their routes. Ask again after this many ms.
   */
  readonly incompleteForMs: number;
}

/** A local copy of a route's owners. */
export interface RememberedOwners {
  readonly owners: readonly string[];
  /**
   * Resolves once this pod has heard every change announced before the call: true when the copy
   * was still current, false when it may have missed an owner (the caller then looks the route up).
   */
  confirm(): Promise<boolean>;
}

/** A stable string for a route, for maps and logs. */
export function routeKey(route: Route): string {
  switch (route.kind) {
    case 'agent':
      return `${route.companyId}:${route.agentId}:chats`;
    case 'chat':
      return `${route.companyId}:${route.agentId}:messages:${route.chatId}`;
    case 'admins':
      return 'admins';
  }
}
