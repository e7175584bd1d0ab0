import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';

/**
 * A TCP relay to a port on 127.0.0.1 that a test can shut, cutting what it relays and refusing
 * new connections, and open again: one process loses its server while the others keep theirs.
 */
export class TcpGate {
  readonly #sockets = new Set<Socket>();
  #open = true;
  #port = 0;

  private constructor(private readonly server: Server) {}

  static async start(targetPort: number): Promise<TcpGate> {
    const gate = new TcpGate(createServer((downstream) => gate.#relay(downstream, targetPort)));
    await new Promise<void>((resolve, reject) => {
      gate.server.once('error', reject);
      gate.server.listen(0, '127.0.0.1', resolve);
    });
    gate.#port = (gate.server.address() as AddressInfo).port;
    return gate;
  }

  /** Where to point a client, as a Redis URL. */
  get redisUrl(): string {
    return `redis://127.0.0.1:${this.#port}`;
  }

  shut(): void {
    this.#open = false;
    for (const socket of this.#sockets) socket.destroy();
    this.#sockets.clear();
  }

  open(): void {
    this.#open = true;
  }

  async stop(): Promise<void> {
    this.shut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  #relay(downstream: Socket, targetPort: number): void {
    if (!this.#open) {
      downstream.destroy();
      return;
    }
    const upstream = connect(targetPort, '127.0.0.1');
    for (const [from, to] of [
      [downstream, upstream],
      [upstream, downstream],
    ] as const) {
      this.#sockets.add(from);
      from.pipe(to);
      from.on('error', () => to.destroy());
      from.on('close', () => {
        this.#sockets.delete(from);
        to.destroy();
      });
    }
  }
}
