import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { isDeepStrictEqual } from 'node:util';
import WebSocket from 'ws';
import { parseAesKeys, TokenCodec } from '../../src/auth/tokenCodec.js';
import { CloseCode, ERRORS, type ErrorCode } from '../../src/errors.js';
import { brokenFraming, FrameFuzzer, handshakeCase, invalidUtf8, Rng, upgradeRequest, type FuzzFrame, type HandshakeCase } from '../support/fuzzInput.js';
import { randomKeys, startGateway, type TestGateway, type TestKeys } from '../support/gateway.js';
import { waitFor } from '../support/wait.js';

// Fixed so a failure replays; FUZZ_SEED=<n> tries another stream of inputs.
const SEED = Number(process.env['FUZZ_SEED'] ?? 0x5eed2026);
const SEED_HEX = `0x${(SEED >>> 0).toString(16)}`;
const MAX_FRAME_BYTES = 4096;
const ROUNDS = 4; // the first is the warm-up the heap is measured from
const FRAME_WORKERS = 6;
const FRAMES_PER_WORKER = 220;
const RECONNECTS_PER_WORKER = 6;
const HANDSHAKES_PER_ROUND = 520;
const EVENTS_PER_ROUND = 30;
const HTTP_HANDSHAKES = 520;
const HANDSHAKE_BATCH = 50;
const FLOOD_WORKERS = 6;
const FLOODS_PER_WORKER = 6;
const WAIT_MS = 5000;
const WIRE_ATTEMPTS = 300;
const WIRE_WAIT_MS = 300;
const HEAP_GROWTH_LIMIT = 30 * 1024 * 1024;
const PREFIX = 'switchboard_';

const ERROR_CODES: ReadonlySet<string> = new Set(Object.keys(ERRORS));
const REPLY_TYPES: ReadonlySet<string> = new Set(['ready', 'error', 'event']);

/** Counts by label, printed as diagnostics. */
class Tally {
  readonly #counts = new Map<string, number>();

  add(key: string, n = 1): void {
    this.#counts.set(key, (this.#counts.get(key) ?? 0) + n);
  }

  get total(): number {
    let sum = 0;
    for (const n of this.#counts.values()) sum += n;
    return sum;
  }

  get(key: string): number {
    return this.#counts.get(key) ?? 0;
  }

  toString(): string {
    return [...this.#counts.entries()]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, n]) => `${k}=${n}`)
      .join(' ');
  }
}

const sent = new Tally();
const replies = new Tally();
const closes = new Tally();
const handshakes = new Tally();
const verdicts = new Tally();
let fragmented = 0;
/** Events published during the fuzz, by event_id: each must reach clients unchanged. */
const published = new Map<string, Record<string, unknown>>();
const violations: string[] = [];
let violationCount = 0;

function violation(message: string): void {
  violationCount++;
  if (violations.length < 40) violations.push(message);
}

/** Fails the test with the first violations, then starts the next test with a clean slate. */
function assertNoViolations(): void {
  const count = violationCount;
  const first = violations.splice(0);
  violationCount = 0;
  assert.equal(count, 0, `${count} violation(s), first ones:\n${first.join('\n')}`);
}

interface Reply {
  readonly type: string;
  readonly code?: string;
  readonly message?: string;
  readonly eventId?: string;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Checks one server frame against json.v1 (DESIGN.md §4); a malformed one is a violation. */
function checkReply(text: string, isBinary: boolean, where: string): Reply | undefined {
  const bad = (why: string) => {
    replies.add('malformed');
    violation(`${where}: ${why}: ${JSON.stringify(text.slice(0, 200))}`);
    return undefined;
  };
  if (isBinary) return bad('binary frame from the server');
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return bad('reply is not JSON');
  }
  if (!isRecord(doc)) return bad('reply is not a JSON object');
  const type = doc['type'];
  if (typeof type !== 'string' || !REPLY_TYPES.has(type)) return bad('reply type is not ready/error/event');
  if (type === 'event') {
    const payload = doc['payload'];
    const id = isRecord(payload) ? payload['event_id'] : undefined;
    if (typeof id !== 'string' || !isDeepStrictEqual(payload, published.get(id))) return bad('event payload is not one that was published');
    replies.add(type);
    return { type, eventId: id };
  }
  if (type !== 'error') {
    replies.add(type);
    return { type };
  }
  const payload = doc['payload'];
  if (!isRecord(payload)) return bad('error frame without an object payload');
  const { code, message, details } = payload;
  if (typeof code !== 'string' || !ERROR_CODES.has(code)) return bad('error code outside the closed set');
  if (typeof message !== 'string' || message === '') return bad('error message is not a non-empty string');
  if (details !== undefined && !isRecord(details)) return bad('error details is not an object');
  replies.add(`error:${code}`);
  return { type, code, message };
}

/** A raw `ws` client that validates every frame it receives and remembers how it was closed. */
class FuzzSocket {
  readonly replies: Reply[] = [];
  closed: { readonly code: number; readonly reason: string } | undefined;
  opened = false;
  closedByUs = false;
  readonly #waiters: Array<() => void> = [];

  constructor(
    readonly ws: WebSocket,
    readonly where: string,
  ) {
    ws.on('message', (data, isBinary) => {
      const reply = checkReply(String(data), isBinary, where);
      if (reply !== undefined) this.replies.push(reply);
      this.#wake();
    });
    ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      if (this.opened) closes.add(this.closedByUs ? `${code}(ours)` : String(code));
      this.#wake();
    });
    // A reset after the close frame is not a protocol error; the close event still carries the code.
    ws.on('error', () => this.#wake());
  }

  /** Resolves true once `condition` holds, false after `timeoutMs`. */
  async until(condition: () => boolean, timeoutMs = WAIT_MS): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!condition()) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return true;
  }

  /** Sends one message, in `fragments` continuation frames with a ping between two of them when asked. */
  send(frame: FuzzFrame, fragments = 1): void {
    sent.add(frame.binary ? `${frame.kind}(bin)` : frame.kind);
    if (fragments > 1) fragmented++;
    if (this.ws.readyState !== WebSocket.OPEN) return;
    const size = Math.ceil(frame.data.length / fragments);
    for (let i = 0; i < fragments; i++) {
      const fin = i === fragments - 1;
      this.ws.send(frame.data.subarray(i * size, fin ? undefined : (i + 1) * size), { binary: frame.binary, fin });
      if (i === 0 && !fin) this.ws.ping();
    }
  }

  /** Closes with 1000 and waits for the server to answer the close. */
  async shutdown(): Promise<void> {
    if (this.closed !== undefined) return;
    this.closedByUs = true;
    this.ws.close(CloseCode.Normal);
    if (!(await this.until(() => this.closed !== undefined))) {
      violation(`${this.where}: the server did not answer our close within ${WAIT_MS} ms`);
      this.ws.terminate();
    }
  }

  #wake(): void {
    for (const waiter of this.#waiters.splice(0)) waiter();
  }
}

type Opened =
  | { readonly kind: 'open'; readonly socket: FuzzSocket }
  | { readonly kind: 'http'; readonly status: number }
  | { readonly kind: 'failed'; readonly message: string };

function open(url: string, where: string, protocols: string[] = ['json.v1'], headers: Record<string, string> = {}): Promise<Opened> {
  return new Promise((resolve) => {
    let ws: WebSocket;
    try {
      ws = new WebSocket(url, protocols, { headers, handshakeTimeout: WAIT_MS });
    } catch (err) {
      resolve({ kind: 'failed', message: `the client refused the URL ${url}: ${String(err)}` });
      return;
    }
    const socket = new FuzzSocket(ws, where);
    ws.once('open', () => {
      socket.opened = true;
      resolve({ kind: 'open', socket });
    });
    ws.once('unexpected-response', (req, res) => {
      res.resume();
      req.destroy();
      resolve({ kind: 'http', status: res.statusCode ?? 0 });
    });
    ws.once('error', (err) => resolve({ kind: 'failed', message: err.message }));
  });
}

/** Opens a connection that must become ready; records a violation and answers undefined otherwise. */
async function connectReady(url: string, where: string): Promise<FuzzSocket | undefined> {
  const opened = await open(url, where);
  if (opened.kind !== 'open') {
    violation(`${where}: a valid connection was refused: ${JSON.stringify(opened)}`);
    return undefined;
  }
  const { socket } = opened;
  if (!(await socket.until(() => socket.replies.length > 0 || socket.closed !== undefined)) || socket.replies[0]?.type !== 'ready') {
    violation(`${where}: a valid connection did not get ready: ${JSON.stringify({ replies: socket.replies, closed: socket.closed })}`);
    await socket.shutdown();
    return undefined;
  }
  return socket;
}

type Verdict = 'ok' | 'bad' | 'maybe' | 'too-big';

/**
 * What DESIGN.md §4 says the gateway does with a frame: a select_chat with a plain chat id is
 * accepted silently, anything that is not a select_chat with a non-empty string chat_id is a
 * BadRequest, and chat ids the design does not rule on (length, odd characters) may go either way.
 */
function judge(frame: FuzzFrame): Verdict {
  if (frame.data.length > MAX_FRAME_BYTES) return 'too-big';
  if (frame.binary) return 'bad';
  let doc: unknown;
  try {
    doc = JSON.parse(frame.data.toString('utf8'));
  } catch {
    return 'bad';
  }
  if (!isRecord(doc) || doc['type'] !== 'select_chat') return 'bad';
  const top = doc['chat_id'];
  const payload = doc['payload'];
  const nested = isRecord(payload) ? payload['chat_id'] : undefined;
  if (top === undefined) return judgeChatId(nested);
  if (typeof top === 'string') return judgeChatId(top);
  // A non-string top-level chat_id beside a usable payload.chat_id: the design does not say which wins.
  return judgeChatId(nested) === 'bad' ? 'bad' : 'maybe';
}

function judgeChatId(id: unknown): Verdict {
  if (typeof id !== 'string' || id === '') return 'bad';
  return /^[A-Za-z0-9_-]{1,64}$/.test(id) ? 'ok' : 'maybe';
}

/** The replies to one batch must be BadRequest errors, as many as the batch had bad frames (give or take the maybes). */
function checkBatch(received: readonly Reply[], bad: number, maybe: number, batch: readonly FuzzFrame[], where: string): void {
  const batchReplies = received.filter((r) => r.type !== 'event');
  const odd = batchReplies.filter((r) => r.type !== 'error' || r.code !== 'BadRequest');
  const count = batchReplies.length;
  if (odd.length > 0 || count < bad || count > bad + maybe) {
    const frames = batch.map((f) => `${f.kind}:${f.binary ? 'bin' : 'text'}:${JSON.stringify(f.data.toString('utf8').slice(0, 80))}`);
    violation(
      `${where}: batch expected ${bad}..${bad + maybe} BadRequest replies, got ${JSON.stringify(batchReplies)}; frames:\n  ${frames.join('\n  ')}`,
    );
  }
}

/** One connection sending batches of fuzzed frames, each closed by a sync frame whose reply marks the batch's end. */
async function frameWorker(url: string, rng: Rng, where: string, admin: boolean, events: Promise<string>): Promise<void> {
  const fuzzer = new FrameFuzzer(rng, MAX_FRAME_BYTES);
  let socket = await connectReady(url, where);
  let frames = 0;
  let reconnects = 0;
  let syncs = 0;
  while (socket !== undefined && frames < FRAMES_PER_WORKER) {
    const s: FuzzSocket = socket;
    const base = s.replies.length;
    const batch: FuzzFrame[] = [];
    let bad = 0;
    let maybe = 0;
    for (let n = rng.int(5, 25); n > 0; n--) {
      const frame = fuzzer.next();
      // select_chat is only for agent connections: an admin's frames are all BadRequest.
      const verdict = admin && judge(frame) !== 'too-big' ? 'bad' : judge(frame);
      verdicts.add(verdict);
      if (verdict === 'too-big') throw new Error(`the fuzzer made an oversize frame of kind ${frame.kind}`);
      if (verdict === 'bad') bad++;
      if (verdict === 'maybe') maybe++;
      s.send(frame, rng.chance(0.1) ? rng.int(2, 4) : 1);
      batch.push(frame);
      frames++;
    }
    if (reconnects < RECONNECTS_PER_WORKER && rng.chance(0.1)) {
      // An oversize frame ends the connection with 1009 after the batch's replies.
      const big = fuzzer.oversize();
      s.send(big);
      frames++;
      if (!(await s.until(() => s.closed !== undefined))) violation(`${where}: no close within ${WAIT_MS} ms after a ${big.data.length}-byte frame`);
      else if (s.closed?.code !== CloseCode.MessageTooBig || s.closed.reason === '') {
        violation(`${where}: a ${big.data.length}-byte frame closed with ${JSON.stringify(s.closed)}, not 1009 with a reason`);
      }
      checkBatch(s.replies.slice(base), bad, maybe, batch, where);
      s.ws.terminate();
      reconnects++;
      socket = await connectReady(url, `${where}.${reconnects}`);
      continue;
    }
    const tag = `"fuzz-sync-${where}-${syncs++}"`;
    s.send({ kind: 'sync', data: Buffer.from(`{"type":${tag}}`), binary: false });
    const synced = () => s.replies.slice(base).some((r) => r.message?.includes(tag) === true);
    if (!(await s.until(() => synced() || s.closed !== undefined))) {
      violation(`${where}: no reply to ${tag} within ${WAIT_MS} ms (the gateway hung?)`);
      break;
    }
    if (!synced()) {
      violation(`${where}: closed unexpectedly with ${JSON.stringify(s.closed)} during a batch`);
      checkBatch(s.replies.slice(base), bad, maybe, batch, where);
      break;
    }
    const end = s.replies.findIndex((r, i) => i >= base && r.message?.includes(tag) === true);
    checkBatch(s.replies.slice(base, end), bad, maybe, batch, where);
  }
  // Whatever the fuzz did to it, a surviving connection still gets the event published last for it.
  const label = await events;
  const marker = `${label}-last-${admin ? 'agents' : 'chats'}`;
  const s = socket;
  if (s !== undefined && !(await s.until(() => s.replies.some((r) => r.eventId === marker) || s.closed !== undefined))) {
    violation(`${where}: the event ${marker} did not arrive within ${WAIT_MS} ms`);
  } else if (s !== undefined && s.closed !== undefined) {
    violation(`${where}: closed with ${JSON.stringify(s.closed)} while waiting for the event ${marker}`);
  }
  await socket?.shutdown();
}

/**
 * Runs one bad handshake. With `httpRefusals` (REJECT_BEFORE_UPGRADE) the refusal must be the
 * error's HTTP status; otherwise an upgrade, the error frame, then the error's close code.
 */
async function attemptHandshake(c: HandshakeCase, httpRefusals: boolean, where: string): Promise<void> {
  const opened = await open(c.url, where, c.protocols, c.headers);
  const describeCase = () => `${where} ${c.kind} ${c.url.slice(0, 200)}`;
  if (opened.kind === 'failed') {
    handshakes.add('failed');
    violation(`${describeCase()}: handshake failed without a refusal: ${opened.message}`);
    return;
  }
  if (opened.kind === 'http') {
    handshakes.add(`http-${opened.status}`);
    const allowed = httpRefusals ? [...c.http, ...c.expect.map((code) => ERRORS[code].http)] : c.http;
    if (!allowed.includes(opened.status)) violation(`${describeCase()}: HTTP ${opened.status}, expected one of ${allowed.join('/')}`);
    return;
  }
  const { socket } = opened;
  if (!(await socket.until(() => socket.closed !== undefined || socket.replies[0]?.type === 'ready'))) {
    handshakes.add('hang');
    violation(`${describeCase()}: neither refused nor ready within ${WAIT_MS} ms: ${JSON.stringify(socket.replies)}`);
    socket.ws.terminate();
    return;
  }
  const first = socket.replies[0];
  if (first?.type === 'ready') {
    handshakes.add(`ready(${c.kind})`);
    if (!c.mayBeReady) violation(`${describeCase()}: a bad handshake was accepted`);
    await socket.shutdown();
    return;
  }
  const code = first?.code as ErrorCode | undefined;
  handshakes.add(`${code ?? 'no-error-frame'}+${socket.closed?.code}`);
  if (httpRefusals) violation(`${describeCase()}: upgraded although REJECT_BEFORE_UPGRADE is on`);
  if (code === undefined || !c.expect.includes(code) || socket.replies.length !== 1) {
    violation(`${describeCase()}: expected one error frame with ${c.expect.join('/')}, got ${JSON.stringify(socket.replies)}`);
  } else if (socket.closed?.code !== ERRORS[code].close) {
    violation(`${describeCase()}: ${code} closed with ${JSON.stringify(socket.closed)}, expected ${ERRORS[code].close}`);
  }
}

async function handshakeRound(gw: TestGateway, keys: TestKeys, rng: Rng, count: number, httpRefusals: boolean, label: string): Promise<void> {
  for (let start = 0; start < count; start += HANDSHAKE_BATCH) {
    const batch: Promise<void>[] = [];
    for (let i = start; i < Math.min(count, start + HANDSHAKE_BATCH); i++) {
      batch.push(attemptHandshake(handshakeCase(gw.wsBase, keys, rng, `${label}-${i}`), httpRefusals, `${label}#${i}`));
    }
    await Promise.all(batch);
  }
}

async function memory(gw: TestGateway): Promise<{ heap: number; rss: number }> {
  let heap = Infinity;
  let rss = Infinity;
  for (let i = 0; i < 5; i++) {
    if (i > 0) await new Promise((resolve) => setTimeout(resolve, 100));
    const text = await (await fetch(`${gw.adminBase}/metrics`)).text();
    const value = (name: string) => Number(/^(\S+) (\S+)$/m.exec(text.split('\n').find((l) => l.startsWith(`${PREFIX}${name} `)) ?? '')?.[2] ?? NaN);
    heap = Math.min(heap, value('nodejs_heap_size_used_bytes'));
    rss = Math.min(rss, value('process_resident_memory_bytes'));
  }
  assert.ok(Number.isFinite(heap) && Number.isFinite(rss), 'heap and RSS metrics are exported');
  return { heap, rss };
}

const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;

function adminUrl(gw: TestGateway, keys: TestKeys, adminId: string): string {
  const token = new TokenCodec(parseAesKeys(keys.adminTokenAesKeys)).mintAdmin({ adminId, expiresAtMs: Date.now() + 600_000 });
  return `${gw.wsBase}/ws/admin?x-api-key=${keys.adminSecretToken}&token=${encodeURIComponent(token)}`;
}

const EVENT_SUBJECTS = ['websocket.acme.support.chats', 'websocket.acme.support.messages.c1', 'websocket.acme.support.agents'];

/**
 * Publishes `count` events with odd but valid payloads while the workers run (clients must get
 * them unchanged), then one last event per audience; answers the label once all are published.
 */
async function publishEvents(gw: TestGateway, rng: Rng, count: number, label: string): Promise<string> {
  const fuzzer = new FrameFuzzer(rng, MAX_FRAME_BYTES);
  const publish = async (eventId: string, subject: string, payload: Record<string, unknown>) => {
    // What a client can get back: JSON has no -0 and no lone surrogates survive a UTF-8 round trip.
    published.set(eventId, JSON.parse(Buffer.from(JSON.stringify(payload)).toString('utf8')) as Record<string, unknown>);
    await gw.publish(subject, payload);
  };
  for (let i = 0; i < count; i++) {
    const payload: Record<string, unknown> = {
      event_id: `${label}-${i}`,
      event_type: fuzzer.randomString(rng.int(0, 20)),
      row_data: fuzzer.randomValue(3),
      n: rng.pick([0, -0, 1e308, 5e-324, Number.MAX_SAFE_INTEGER]),
    };
    await publish(`${label}-${i}`, rng.pick(EVENT_SUBJECTS), payload);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  await publish(`${label}-last-chats`, 'websocket.acme.support.chats', { event_id: `${label}-last-chats` });
  await publish(`${label}-last-agents`, 'websocket.acme.support.agents', { event_id: `${label}-last-agents` });
  return label;
}

function userUrl(gw: TestGateway, keys: TestKeys, userId: string): string {
  const token = new TokenCodec(parseAesKeys(keys.tokenAesKeys)).mintUser({ companyId: 'acme', agentId: 'support', userId, expiresAtMs: Date.now() + 600_000 });
  return `${gw.wsBase}/ws/acme/support?user=${userId}&x-api-key=${keys.secretToken}&token=${encodeURIComponent(token)}`;
}

/** Sends a flood on a default-limits gateway and checks the connection is closed with a fitting code. */
async function flood(gw: TestGateway, keys: TestKeys, rng: Rng, where: string): Promise<void> {
  const fuzzer = new FrameFuzzer(rng, MAX_FRAME_BYTES);
  const socket = await connectReady(userUrl(gw, keys, `flood-${where.replace('.', '-')}`), where);
  if (socket === undefined) return;
  const mode = rng.pick(['bad', 'rate', 'mixed'] as const);
  const frames: FuzzFrame[] = [];
  while (frames.length < (mode === 'rate' ? 100 : 60)) {
    const frame = mode === 'rate' ? { kind: 'valid', data: Buffer.from(fuzzer.validFrame()), binary: false } : rng.chance(0.02) ? fuzzer.oversize() : fuzzer.next();
    if (mode === 'bad' && judge(frame) !== 'bad') continue;
    frames.push(frame);
  }
  for (const frame of frames) socket.send(frame);
  if (!(await socket.until(() => socket.closed !== undefined))) {
    violation(`${where}: a ${mode} flood of ${frames.length} frames was not closed within ${WAIT_MS} ms`);
    await socket.shutdown();
    return;
  }
  const code = socket.closed?.code ?? 0;
  const expected = { bad: [ERRORS.BadRequest.close], rate: [ERRORS.RateLimitExceeded.close], mixed: [ERRORS.BadRequest.close, ERRORS.RateLimitExceeded.close, CloseCode.MessageTooBig] }[mode];
  if (!expected.includes(code)) violation(`${where}: a ${mode} flood closed with ${JSON.stringify(socket.closed)}, expected ${expected.join('/')}`);
  const errors = socket.replies.slice(1);
  const odd = errors.filter((r) => r.type !== 'error' || (r.code !== 'BadRequest' && r.code !== 'RateLimitExceeded'));
  if (odd.length > 0) violation(`${where}: unexpected replies to a ${mode} flood: ${JSON.stringify(odd.slice(0, 3))}`);
  const last = errors.at(-1);
  if (code !== CloseCode.MessageTooBig && (last === undefined || ERRORS[last.code as ErrorCode].close !== code)) {
    violation(`${where}: close ${code} was not preceded by its error frame (last reply ${JSON.stringify(last)})`);
  }
  // Default limits: 10 malformed frames a minute, so an abusive client gets about that many answers, not 60.
  const badRequests = errors.filter((r) => r.code === 'BadRequest').length;
  if (badRequests > 12) violation(`${where}: ${badRequests} BadRequest replies before the close; the bad-frame limit is 10 a minute`);
  socket.ws.terminate();
}

describe(`fuzz (seed ${SEED_HEX}; FUZZ_SEED=${SEED} replays it)`, () => {
  const rng = new Rng(SEED);
  const keys = randomKeys();
  const defaultKeys = randomKeys();
  let gw: TestGateway;
  let defaults: TestGateway;

  before(async () => {
    [gw, defaults] = await Promise.all([
      startGateway(
        { MAX_FRAME_BYTES: String(MAX_FRAME_BYTES), RATE_LIMIT_PER_SECOND: '1000000', RATE_LIMIT_BURST: '1000000', BAD_FRAME_LIMIT: '1000000' },
        keys,
      ),
      startGateway({ MAX_FRAME_BYTES: String(MAX_FRAME_BYTES), REJECT_BEFORE_UPGRADE: 'true' }, defaultKeys),
    ]);
  });
  after(async () => {
    await Promise.all([gw?.stop(), defaults?.stop()]);
  });

  test('thousands of random and mutated frames and bad handshakes: well-formed replies, expected closes, flat heap', async (t) => {
    const heapAfter: Array<{ heap: number; rss: number }> = [];
    for (let round = 0; round < ROUNDS; round++) {
      const roundRng = rng.fork(round);
      // The last worker is an admin connection; the others are agents of acme/support.
      const events = publishEvents(gw, roundRng.fork(FRAME_WORKERS + 1), EVENTS_PER_ROUND, `ev${round}`);
      await Promise.all(
        Array.from({ length: FRAME_WORKERS }, (_, w) => {
          const admin = w === FRAME_WORKERS - 1;
          const url = admin ? adminUrl(gw, keys, `fz-r${round}w${w}`) : userUrl(gw, keys, `fz-r${round}w${w}`);
          return frameWorker(url, roundRng.fork(w), `r${round}w${w}`, admin, events);
        }),
      );
      await handshakeRound(gw, keys, roundRng.fork(FRAME_WORKERS), HANDSHAKES_PER_ROUND, false, `hs${round}`);
      heapAfter.push(await memory(gw));
      assert.equal(gw.child.exitCode, null, `the gateway died in round ${round}: ${gw.stderr.join('')}`);
    }
    t.diagnostic(`frames sent (${sent.total}, ${fragmented} of them in 2-4 fragments): ${sent}`);
    t.diagnostic(`frame verdicts (what DESIGN.md §4 predicts): ${verdicts}`);
    t.diagnostic(`replies (${replies.total}): ${replies}`);
    t.diagnostic(`closes: ${closes}`);
    t.diagnostic(`handshakes (${handshakes.total}): ${handshakes}`);
    t.diagnostic(`heap used after each round: ${heapAfter.map((m) => mb(m.heap)).join(', ')}; RSS ${heapAfter.map((m) => mb(m.rss)).join(', ')}`);
    assertNoViolations();
    assert.ok(sent.total >= 4000, `at least 4000 frames were sent (${sent.total})`);
    assert.ok(handshakes.total >= 2000, `at least 2000 handshakes were tried (${handshakes.total})`);
    assert.ok(closes.get(String(CloseCode.MessageTooBig)) > 0, 'some frames were over the limit');
    assert.ok(replies.get('event') > 0, 'published events reached the fuzzed connections');
    const warm = heapAfter[0];
    const last = heapAfter.at(-1);
    assert.ok(warm !== undefined && last !== undefined);
    assert.ok(last.heap - warm.heap < HEAP_GROWTH_LIMIT, `heap grew ${mb(last.heap - warm.heap)} after the warm-up round (limit ${mb(HEAP_GROWTH_LIMIT)})`);
  });

  test('with default limits, floods close with 4429 or 4400 and refused handshakes answer their HTTP status', async (t) => {
    const sentBefore = sent.total;
    const floodRng = rng.fork(100);
    await Promise.all(
      Array.from({ length: FLOOD_WORKERS }, async (_, w) => {
        const workerRng = floodRng.fork(w);
        for (let i = 0; i < FLOODS_PER_WORKER; i++) await flood(defaults, defaultKeys, workerRng, `f${w}.${i}`);
      }),
    );
    await handshakeRound(defaults, defaultKeys, rng.fork(101), HTTP_HANDSHAKES, true, 'http');
    t.diagnostic(`flood frames sent: ${sent.total - sentBefore}; closes so far: ${closes}`);
    t.diagnostic(`handshakes so far (${handshakes.total}): ${handshakes}`);
    assertNoViolations();
    assert.ok(closes.get(String(ERRORS.RateLimitExceeded.close)) > 0, 'some floods were closed by the rate limit');
    assert.ok(closes.get(String(ERRORS.BadRequest.close)) > 0, 'some floods were closed by the bad-frame limit');
    assert.equal(defaults.child.exitCode, null, `the default-limits gateway died: ${defaults.stderr.join('')}`);
  });

  test('text frames that are not UTF-8 close the connection and the gateway keeps serving', async (t) => {
    const seen = new Tally();
    const invalidRng = rng.fork(200);
    for (let i = 0; i < 20; i++) {
      const socket = await connectReady(userUrl(gw, keys, `utf8-${i}`), `utf8-${i}`);
      if (socket === undefined) continue;
      socket.send({ kind: 'invalid-utf8', data: invalidUtf8(invalidRng), binary: false });
      if (await socket.until(() => socket.closed !== undefined)) seen.add(String(socket.closed?.code));
      else violation(`utf8-${i}: an invalid UTF-8 text frame did not close the connection`);
      socket.ws.terminate();
    }
    t.diagnostic(`closes after invalid UTF-8: ${seen}`);
    assertNoViolations();
    // RFC 6455 §8.1 has the endpoint fail the connection; 1007 is the SHOULD, uWS drops the TCP connection (1006).
    assert.equal(seen.total, 20);
    assert.equal(seen.get('1006') + seen.get('1007'), 20, `closes: ${seen}`);
    const healthy = await connectReady(userUrl(gw, keys, 'after-utf8'), 'after-utf8');
    assert.ok(healthy !== undefined);
    await healthy.shutdown();
    assert.equal(gw.child.exitCode, null);
  });

  test('garbage on the wire (broken HTTP requests, broken WebSocket framing) never takes the gateway down', async (t) => {
    const outcomes = new Tally();
    const wireRng = rng.fork(300);
    for (let start = 0; start < WIRE_ATTEMPTS; start += HANDSHAKE_BATCH) {
      const batch: Promise<void>[] = [];
      for (let i = start; i < Math.min(WIRE_ATTEMPTS, start + HANDSHAKE_BATCH); i++) {
        const url = new URL(userUrl(gw, keys, `wire-${i}`));
        const framing = wireRng.chance(0.5);
        const request = upgradeRequest(wireRng, url.host, url.pathname + url.search, !framing);
        const after = framing ? brokenFraming(wireRng) : undefined;
        batch.push(
          rawExchange(gw.publicPort, request.bytes, after?.bytes).then((answer) => {
            const outcome = answer.closeCode ?? (answer.ended ? 'dropped' : 'no-answer');
            outcomes.add(`${after?.kind ?? request.kind}:${framing ? '' : `${answer.status || 'no-status'}:`}${outcome}`);
            if (framing && answer.status !== '101') violation(`wire-${i}: a valid upgrade was answered ${JSON.stringify(answer.status)}`);
            // uWS answers requests it cannot parse with 505; 500 and 1011 would be the gateway failing.
            if (answer.status === String(ERRORS.InternalServerError.http) || answer.closeCode === ERRORS.InternalServerError.close) {
              violation(`wire-${i} ${after?.kind ?? request.kind}: the gateway answered ${answer.status} / close ${answer.closeCode}`);
            }
          }),
        );
      }
      await Promise.all(batch);
    }
    t.diagnostic(`wire outcomes (${outcomes.total}): ${outcomes}`);
    assertNoViolations();
    assert.equal(gw.child.exitCode, null, `the gateway died: ${gw.stderr.join('')}`);
    assert.equal((await fetch(`${gw.httpBase}/health`)).status, 200);
  });

  test('after the fuzz the gateway is healthy: nothing leaked, /health 200, a new client gets ready and an event', async () => {
    for (const g of [gw, defaults]) {
      assert.equal(g.child.exitCode, null, 'the gateway process is alive');
      assert.equal(g.child.signalCode, null);
      assert.equal((await fetch(`${g.httpBase}/health`)).status, 200);
      await waitFor(async () => (await activeConnections(g)) === 0, WAIT_MS, 'every fuzz connection to be gone from connections_active');
      await waitFor(async () => (await liveSessions(g)) === 0, WAIT_MS, 'every fuzz session to be released');
      const errors = g.logLines((l) => l['level'] === 'error' || l['level'] === 'fatal');
      assert.deepEqual(errors, [], 'no error or fatal log lines');
    }
    const client = await gw.connectUser('acme', 'support', 'after-fuzz');
    await gw.publish('websocket.acme.support.chats', { event_id: 'after-fuzz' });
    const event = await client.expect('event');
    assert.deepEqual(event.payload, { event_id: 'after-fuzz' });
    client.close();
    const admin = await defaults.connectAdmin('after-fuzz');
    admin.close();
  });
});

async function activeConnections(gw: TestGateway): Promise<number> {
  const text = await (await fetch(`${gw.adminBase}/metrics`)).text();
  return text
    .split('\n')
    .filter((l) => l.startsWith(`${PREFIX}connections_active{`))
    .reduce((sum, l) => sum + Number(l.split(' ').at(-1)), 0);
}

async function liveSessions(gw: TestGateway): Promise<number> {
  const res = await gw.admin('GET', '/admin/sessions', gw.keys.adminSecretToken);
  return (res.body as { sessions: unknown[] }).sessions.length;
}

/** What a raw TCP exchange got back: the HTTP status, and the close code of a close frame after a 101, if any. */
interface WireAnswer {
  readonly status: string;
  readonly closeCode: number | undefined;
  readonly ended: boolean;
}

/** Writes `request` on a raw socket, then `afterUpgrade` once the response head is in; gives up after WIRE_WAIT_MS. */
function rawExchange(port: number, request: Buffer, afterUpgrade: Buffer | undefined): Promise<WireAnswer> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let received = Buffer.alloc(0);
    let wrote = false;
    let done = false;
    const finish = (ended: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      const headEnd = received.indexOf('\r\n\r\n');
      const status = /^HTTP\/1\.1 (\d{3})/.exec(received.toString('latin1'))?.[1] ?? '';
      const upgraded = status === '101' && headEnd >= 0;
      resolve({ status, closeCode: upgraded ? serverCloseCode(received.subarray(headEnd + 4)) : undefined, ended });
    };
    const timer = setTimeout(() => finish(false), WIRE_WAIT_MS);
    socket.on('connect', () => socket.write(request));
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      if (afterUpgrade !== undefined && !wrote && received.includes('\r\n\r\n')) {
        wrote = true;
        socket.write(afterUpgrade);
      }
    });
    // A reset is one way for the server to end the exchange.
    socket.on('error', () => finish(true));
    socket.on('close', () => finish(true));
  });
}

/** The code of the first close frame among unmasked server frames, if there is one. */
function serverCloseCode(bytes: Buffer): number | undefined {
  let at = 0;
  while (at + 2 <= bytes.length) {
    const opcode = (bytes[at] ?? 0) & 0x0f;
    let length = (bytes[at + 1] ?? 0) & 0x7f;
    let offset = at + 2;
    if (length === 126) {
      length = bytes.readUInt16BE(offset);
      offset += 2;
    } else if (length === 127) {
      length = Number(bytes.readBigUInt64BE(offset));
      offset += 8;
    }
    if (opcode === 0x8) return length >= 2 && offset + 2 <= bytes.length ? bytes.readUInt16BE(offset) : 1005;
    at = offset + length;
  }
  return undefined;
}
