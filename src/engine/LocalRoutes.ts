import { routeKey, type Route, type RouteOwners, type RouteRegistry } from '../routes/RouteRegistry.js';

/** The in-process route registry: reference counts for the one pod there is. */
export class LocalRoutes implements RouteRegistry {
  readonly #counts = new Map<string, number>();

  constructor(private readonly podId: string) {}

  async retain(route: Route): Promise<void> {
    const key = routeKey(route);
    this.#counts.set(key, (this.#counts.get(key) ?? 0) + 1);
  }

  async release(route: Route): Promise<void> {
    const key = routeKey(route);
    const count = (this.#counts.get(key) ?? 0) - 1;
    if (count > 0) this.#counts.set(key, count);
    else this.#counts.delete(key);
  }

  async owners(route: Route): Promise<RouteOwners> {
    return { pods: this.#counts.has(routeKey(route)) ? [this.podId] : [], incompleteForMs: 0 };
  }
}
