import WebSocket, { type ClientOptions } from 'ws';

/** A parsed server frame. */
export interface ServerFrame {
  readonly type: string;
  readonly payload?: unknown;
}

/** How the server closed the connection. */
export interface CloseInfo {
  readonly code: number;
  readonly reason: string;
}

/** A WebSocket test client with event-driven waits: frames queue up until a test takes them. */
export class TestClient {
  readonly #queue: ServerFrame[] = [];
  readonly #waiters: Array<() => void> = [];
  readonly closed: Promise<CloseInfo>;
  #closeInfo: CloseInfo | undefined;
  /** The transport error, if the connection failed with one (it explains a 1006). */
  error: Error | undefined;
  /** Raw text of every frame received, in order (for the fuzz test's well-formedness checks). */
  readonly raw: string[] = [];

  constructor(readonly ws: WebSocket) {
    ws.on('message', (data, isBinary) => {
      const text = isBinary ? `<binary ${String(data)}>` : String(data);
      this.raw.push(text);
      this.#queue.push(JSON.parse(text) as ServerFrame);
      this.#wake();
    });
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        this.#closeInfo = { code, reason: reason.toString() };
        resolve(this.#closeInfo);
        this.#wake();
      });
    });
    ws.on('error', (err) => {
      this.error = err;
      this.#wake();
    });
  }

  get isOpen(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  /** Frames received and not yet taken. */
  get pending(): readonly ServerFrame[] {
    return this.#queue;
  }

  /** The next frame, or a rejection naming what was expected. */
  async next(timeoutMs = 2000): Promise<ServerFrame> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const frame = this.#queue.shift();
      if (frame !== undefined) return frame;
      if (this.ws.readyState === WebSocket.CLOSED) {
        throw new Error(
          `connection closed (${JSON.stringify(this.#closeInfo)}${this.error === undefined ? '' : `, ${this.error.message}`}) while waiting for a frame; received ${JSON.stringify(this.raw)}`,
        );
      }
      const left = until - Date.now();
      if (left <= 0) throw new Error(`no frame within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** The next frame, which must have `type`. */
  async expect(type: string, timeoutMs = 2000): Promise<ServerFrame> {
    const frame = await this.next(timeoutMs);
    if (frame.type !== type) throw new Error(`expected a ${type} frame, got ${JSON.stringify(frame)}`);
    return frame;
  }

  /** Asserts no frame arrives for `ms`. */
  async expectSilence(ms: number): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, ms));
    if (this.#queue.length > 0) throw new Error(`expected no frame, got ${JSON.stringify(this.#queue[0])}`);
  }

  /** Resolves with the close, or rejects after `timeoutMs`. */
  async closeInfo(timeoutMs = 3000): Promise<CloseInfo> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`connection not closed within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      return await Promise.race([this.closed, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Selects a chat and waits until the server has applied it. json.v1 has no acknowledgement, but
   * frames on one socket are handled in order, so the BadRequest answer to a follow-up frame proves it.
   */
  async selectChat(chatId: string, form: 'top-level' | 'payload' = 'top-level'): Promise<void> {
    this.send(JSON.stringify(form === 'top-level' ? { type: 'select_chat', chat_id: chatId } : { type: 'select_chat', payload: { chat_id: chatId } }));
    this.send('{"type":"sync"}');
    const frame = await this.expect('error');
    if ((frame.payload as { code?: string }).code !== 'BadRequest') throw new Error(`select_chat failed: ${JSON.stringify(frame)}`);
  }

  /** Resolves once the server has handled every frame sent before: it answers a ping after them. */
  async roundTrip(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.ws.once('pong', () => resolve());
      this.ws.ping();
    });
  }

  send(data: string | Buffer, binary = false): void {
    this.ws.send(data, { binary });
  }

  close(): void {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.terminate();
  }

  #wake(): void {
    for (const waiter of this.#waiters.splice(0)) waiter();
  }
}

/** The replaced side of a takeover: a SessionConflict error frame, then 4402 `session-replaced`. */
export async function expectReplaced(client: TestClient): Promise<void> {
  const frame = await client.expect('error');
  const code = (frame.payload as { code?: string }).code;
  if (code !== 'SessionConflict') throw new Error(`expected SessionConflict, got ${JSON.stringify(frame)}`);
  const closed = await client.closeInfo();
  if (closed.code !== 4402 || closed.reason !== 'session-replaced') throw new Error(`expected close 4402 session-replaced, got ${JSON.stringify(closed)}`);
}

/** Opens a connection; resolves once the socket is open (before any frame). */
export async function openClient(url: string, options: ClientOptions & { protocols?: string[] } = {}): Promise<TestClient> {
  const { protocols, ...rest } = options;
  const ws = new WebSocket(url, protocols ?? ['json.v1'], rest);
  const client = new TestClient(ws);
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('unexpected-response', (_req, res) => reject(new UpgradeRefused(res.statusCode ?? 0)));
    ws.once('error', reject);
  });
  return client;
}

/** The server answered the upgrade with an HTTP status instead. */
export class UpgradeRefused extends Error {
  constructor(readonly status: number) {
    super(`upgrade refused with HTTP ${status}`);
  }
}
