import { createCipheriv, randomBytes } from 'node:crypto';
import { parseAesKeys, TokenCodec } from '../../src/auth/tokenCodec.js';
import type { ErrorCode } from '../../src/errors.js';
import type { TestKeys } from './gateway.js';

/** A seeded PRNG (mulberry32): the same seed gives the same inputs, so a failing run can be replayed. */
export class Rng {
  #state: number;

  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  /** A float in [0, 1). */
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    const item = items[Math.floor(this.next() * items.length)];
    if (item === undefined) throw new Error('pick from an empty list');
    return item;
  }

  bytes(n: number): Buffer {
    const out = Buffer.alloc(n);
    for (let i = 0; i < n; i++) out[i] = Math.floor(this.next() * 256);
    return out;
  }

  /** An independent stream, so concurrent workers draw the same inputs whatever the interleaving. */
  fork(stream: number): Rng {
    return new Rng(Math.imul(this.#state ^ 0x9e3779b9, 0x85ebca6b) + Math.imul(stream + 1, 0xc2b2ae35));
  }
}

/** One client frame to send; `data` is always valid UTF-8 when `binary` is false. */
export interface FuzzFrame {
  readonly kind: string;
  readonly data: Buffer;
  readonly binary: boolean;
}

const VALID_FRAMES = ['{"type":"select_chat","chat_id":"c1"}', '{"type":"select_chat","payload":{"chat_id":"c1"}}'];

const ODD_TEXT = [
  '', ' ', '\n', 'null', 'true', '0', '-0', '[]', '{}', '""', '"select_chat"', '[{"type":"select_chat","chat_id":"c1"}]',
  '{"type":"select_chat"}', '{"type":"select_chat","chat_id":""}', '{"type":"select_chat","chat_id":null}',
  '{"type":"select_chat","payload":null}', '{"type":"select_chat","payload":"c1"}', '{"type":"select_chat","payload":["c1"]}',
  '{"type":"SELECT_CHAT","chat_id":"c1"}', '{"type":"select_chat ","chat_id":"c1"}', '{"type":"select_chat\\u0000","chat_id":"c1"}',
  '{"type":["select_chat"],"chat_id":"c1"}', '{"type":null}', '{"type":1e999}', '{"type":"select_chat","chat_id":1e999}',
  '{"type":"select_chat","chat_id":123456789012345678901234567890}', '{"type":"select_chat","chat_id":-0}',
  '{"type":"select_chat","chat_id":{"toString":"c1"}}', '{"__proto__":{"type":"select_chat","chat_id":"c1"}}',
  '{"constructor":{"prototype":{"type":"select_chat"}},"type":"x"}', '{"type":"select_chat","chat_id":"c1"', '{"type":"select_chat",,}',
  '{"type":"select_chat","chat_id":"c1"}{"type":"select_chat"}', '\ufeff{"type":"select_chat","chat_id":"c1"}',
  '{"type":"select_chat","chat_id":"\\ud800"}', '{"type":"select_chat","chat_id":"\\u0000"}', '{"type":"ready"}', '{"type":"event"}',
  '{"type":"error","payload":{"code":"BadRequest"}}', '{"type":"select_chat","chat_id":"c1","chat_id":5}',
  '{"type":"select_chat","chat_id":"a.b"}', '{"type":"select_chat","chat_id":"a b"}', '{"type":"select_chat","chat_id":"*"}',
  '{"type":"select_chat","chat_id":">"}', '{"type":"select_chat","chat_id":"😀"}', '{"type":"select_chat","chat_id":"\u202eevil"}',
];

const SNIPPETS = ['"', '{', '}', '[', ']', ',', ':', '\\', '\\u', '\\ud83d', 'null', '0', '-', 'e', '1e400', ' ', '\n', '\t', '\u0000', '😀', '\u200b', 'é', '\ud800'];

const JSON_KEYS = ['type', 'chat_id', 'payload', '__proto__', 'constructor', 'prototype', 'toString', '', 'x'];

const CHAT_ALPHABET = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-';

/** Generates random and mutated json.v1 client frames around a frame-size limit. */
export class FrameFuzzer {
  constructor(
    private readonly rng: Rng,
    private readonly maxFrameBytes: number,
  ) {}

  /** A random frame of any kind, never over the limit. */
  next(): FuzzFrame {
    for (;;) {
      const frame = this.#any();
      if (frame.data.length <= this.maxFrameBytes) return frame;
    }
  }

  #any(): FuzzFrame {
    const rng = this.rng;
    const roll = rng.int(0, 99);
    if (roll < 10) return text('valid', this.validFrame());
    if (roll < 35) return text('mutated', this.mutate(rng.pick(VALID_FRAMES)));
    if (roll < 45) return text('odd', rng.pick(ODD_TEXT));
    if (roll < 55) return text('swapped', this.swapped());
    if (roll < 65) return text('random-json', JSON.stringify(this.randomValue(4)));
    if (roll < 71) return text('nested', this.nested());
    if (roll < 77) return text('unicode', JSON.stringify({ type: 'select_chat', chat_id: this.randomString(rng.int(1, 300)) }));
    if (roll < 83) return text('bytes-as-text', rng.bytes(rng.int(0, 600)).toString('utf8'));
    if (roll < 89) return { kind: 'binary', data: this.binaryBody(), binary: true };
    if (roll < 94) return text('long-chat-id', JSON.stringify({ type: 'select_chat', chat_id: 'c'.repeat(rng.pick([64, 255, 256, 257, 1000, 3000])) }));
    return this.sized(this.maxFrameBytes - rng.int(0, 1));
  }

  /** A frame over the limit (at most three times it, under uWS's own hard limit). */
  oversize(): FuzzFrame {
    const rng = this.rng;
    const extra = rng.pick([1, 2, rng.int(3, this.maxFrameBytes * 2)]);
    return this.sized(this.maxFrameBytes + extra);
  }

  /** A frame of exactly `bytes` UTF-8 bytes: a valid select_chat padded with 1- to 4-byte characters, or raw text. */
  sized(bytes: number): FuzzFrame {
    const rng = this.rng;
    if (rng.chance(0.2)) return { kind: 'sized-raw', data: Buffer.alloc(bytes, 'x'), binary: rng.chance(0.3) };
    const head = Buffer.from('{"type":"select_chat","chat_id":"c1","pad":"');
    const tail = Buffer.from('"}');
    const unit = Buffer.from(rng.pick(['x', 'é', '€', '😀']));
    const room = bytes - head.length - tail.length;
    const units = Math.floor(room / unit.length);
    const pad = Buffer.concat([Buffer.alloc(units * unit.length).fill(unit), Buffer.alloc(room - units * unit.length, 'x')]);
    return { kind: 'sized', data: Buffer.concat([head, pad, tail]), binary: false };
  }

  validFrame(): string {
    const id = this.chatId();
    return this.rng.chance(0.5)
      ? JSON.stringify({ type: 'select_chat', chat_id: id })
      : JSON.stringify({ type: 'select_chat', payload: { chat_id: id } });
  }

  chatId(): string {
    let id = '';
    for (let i = this.rng.int(1, 24); i > 0; i--) id += this.rng.pick([...CHAT_ALPHABET]);
    return id;
  }

  mutate(source: string): string {
    const rng = this.rng;
    let s = source;
    for (let n = rng.int(1, 4); n > 0; n--) {
      const at = rng.int(0, s.length);
      switch (rng.int(0, 5)) {
        case 0: // flip one character
          s = s.slice(0, at) + rng.pick([...SNIPPETS, String.fromCharCode(rng.int(0, 0xffff))]).slice(0, 1) + s.slice(at + 1);
          break;
        case 1: // insert a snippet
          s = s.slice(0, at) + rng.pick(SNIPPETS) + s.slice(at);
          break;
        case 2: // delete a range
          s = s.slice(0, at) + s.slice(at + rng.int(1, 6));
          break;
        case 3: // truncate
          s = s.slice(0, at);
          break;
        case 4: // duplicate a range
          s = s.slice(0, at) + s.slice(at, at + rng.int(1, 12)) + s.slice(at);
          break;
        default: // flip a bit of one byte, repairing the UTF-8 so the frame stays valid text
          {
            const bytes = Buffer.from(s);
            if (bytes.length > 0) bytes[at % bytes.length]! ^= 1 << rng.int(0, 7);
            s = bytes.toString('utf8');
          }
          break;
      }
    }
    return s;
  }

  /** A select_chat whose type or chat_id is replaced by a value of another type. */
  swapped(): string {
    const rng = this.rng;
    const value = this.randomValue(2);
    const frame: Record<string, unknown> = rng.chance(0.5) ? { type: 'select_chat', chat_id: value } : { type: value, chat_id: 'c1' };
    if (rng.chance(0.3)) frame['payload'] = { chat_id: this.randomValue(1) };
    return JSON.stringify(frame);
  }

  nested(): string {
    const rng = this.rng;
    // Depths up to what fits in one frame for each shape.
    const depth = (perLevel: number) => rng.int(10, Math.floor((this.maxFrameBytes - 64) / perLevel));
    switch (rng.int(0, 3)) {
      case 0: {
        const d = depth(2);
        return '['.repeat(d) + ']'.repeat(rng.chance(0.8) ? d : rng.int(0, d));
      }
      case 1: {
        const d = depth(12);
        return `{"type":"select_chat","payload":${'{"payload":'.repeat(d)}{"chat_id":"c1"}${'}'.repeat(d)}}`;
      }
      case 2: {
        const d = depth(2);
        return `{"type":"select_chat","chat_id":${'['.repeat(d)}"c1"${']'.repeat(d)}}`;
      }
      default: {
        const d = depth(6);
        return '{"a":'.repeat(d) + '1' + '}'.repeat(rng.int(0, d));
      }
    }
  }

  binaryBody(): Buffer {
    const rng = this.rng;
    return rng.chance(0.5) ? Buffer.from(this.validFrame()) : rng.bytes(rng.int(0, 2000));
  }

  randomValue(depth: number): unknown {
    const rng = this.rng;
    const leaf = depth <= 0 || rng.chance(0.4);
    if (leaf) {
      return rng.pick<() => unknown>([
        () => null,
        () => rng.chance(0.5),
        () => rng.pick([0, -0, 1, -1, 1e308, -1e308, 5e-324, Number.MAX_SAFE_INTEGER + 2, 0.1]),
        () => rng.int(-1e9, 1e9),
        () => 'select_chat',
        () => this.chatId(),
        () => this.randomString(rng.int(0, 80)),
      ])();
    }
    if (rng.chance(0.5)) return Array.from({ length: rng.int(0, 5) }, () => this.randomValue(depth - 1));
    const obj: Record<string, unknown> = {};
    for (let i = rng.int(0, 5); i > 0; i--) obj[rng.pick(JSON_KEYS)] = this.randomValue(depth - 1);
    return obj;
  }

  /** Random code points: ASCII, controls, BMP, astral, and lone surrogates (JSON.stringify escapes those). */
  randomString(length: number): string {
    const rng = this.rng;
    let s = '';
    while (s.length < length) {
      const roll = rng.int(0, 9);
      if (roll < 4) s += String.fromCharCode(rng.int(0x20, 0x7e));
      else if (roll < 5) s += String.fromCharCode(rng.int(0, 0x1f));
      else if (roll < 7) s += String.fromCharCode(rng.int(0xa0, 0xd7ff));
      else if (roll < 9) s += String.fromCodePoint(rng.int(0x10000, 0x10ffff));
      else s += String.fromCharCode(rng.int(0xd800, 0xdfff));
    }
    return s;
  }
}

function text(kind: string, s: string): FuzzFrame {
  // Buffer.from replaces lone surrogates with U+FFFD, so the bytes are valid UTF-8.
  return { kind, data: Buffer.from(s, 'utf8'), binary: false };
}

/** A token with a few characters changed, removed or added; base64url-shaped or not. */
export function mutateToken(rng: Rng, token: string): { readonly kind: string; readonly token: string } {
  const at = rng.int(0, Math.max(0, token.length - 1));
  switch (rng.int(0, 6)) {
    case 0: {
      let t = token;
      for (let n = rng.int(1, 3); n > 0; n--) {
        const i = rng.int(0, t.length - 1);
        t = t.slice(0, i) + rng.pick([...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_']) + t.slice(i + 1);
      }
      return { kind: 'flipped', token: t };
    }
    case 1:
      return { kind: 'truncated', token: token.slice(0, at) };
    case 2:
      return { kind: 'extended', token: token.replace(/=+$/, '') + rng.bytes(rng.int(1, 8)).toString('base64url') };
    case 3:
      return { kind: 'odd-chars', token: token.slice(0, at) + rng.pick(['+', '/', '=', '%', ' ', '.', '\u00e9', '\u0000', '==', '&']) + token.slice(at + 1) };
    case 4:
      return { kind: 'base64-garbage', token: rng.bytes(rng.int(0, 160)).toString(rng.pick(['base64', 'base64url'] as const)) };
    case 5:
      return { kind: 'swapped-halves', token: token.slice(at) + token.slice(0, at) };
    default:
      return { kind: 'doubled', token: token + token };
  }
}

/** Seals an arbitrary plaintext as a token under `keyHex`, the way the codec does, to fuzz the claims parser. */
export function sealRaw(keyHex: string, plaintext: Buffer): string {
  const nonce = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', Buffer.from(keyHex, 'hex'), nonce, { authTagLength: 16 });
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([nonce, body, cipher.getAuthTag()]).toString('base64url');
}

/** One upgrade attempt that must be refused, and the refusals that are acceptable. */
export interface HandshakeCase {
  readonly kind: string;
  readonly url: string;
  readonly protocols: string[];
  readonly headers: Record<string, string>;
  /** The error codes the refusal may carry. */
  readonly expect: readonly ErrorCode[];
  /** HTTP statuses that are acceptable whatever the mode (routes that do not match answer 404). */
  readonly http: readonly number[];
  /** A mutated token may decode to the same bytes as the valid one; only then may the connection succeed. */
  readonly mayBeReady: boolean;
}

const WEIRD_SEGMENTS = [
  '%2F', 'a%2Fb', '%2e', '%2e%2e', '..', '.', 'a.b', 'a:b', 'a*', '%3E', '>', '%20', 'a%20b', '%00', '%ZZ', '%', '%E2%82', '%C0%AF',
  '%F0%9F%98%80', '%25', '%3F', '%23', '%0A', '%09', "'", '~', '', 'x'.repeat(129), 'y'.repeat(400), '%2561cme', 'acme%00',
];

/**
 * Builds one bad handshake against the gateway at `wsBase` running with `keys`. `n` makes the
 * identity unique, so an accidental success never replaces another connection's session.
 */
export function handshakeCase(wsBase: string, keys: TestKeys, rng: Rng, n: string): HandshakeCase {
  const userCodec = new TokenCodec(parseAesKeys(keys.tokenAesKeys));
  const adminCodec = new TokenCodec(parseAesKeys(keys.adminTokenAesKeys));
  const expiresAtMs = Date.now() + 600_000;
  const userToken = userCodec.mintUser({ companyId: 'acme', agentId: 'support', userId: `hs-${n}`, expiresAtMs });
  const adminToken = adminCodec.mintAdmin({ adminId: `hs-${n}`, expiresAtMs });
  const userKeyHex = keys.tokenAesKeys[0] ?? '';
  const adminKeyHex = keys.adminTokenAesKeys[0] ?? '';
  const protocols = rng.pick([['json.v1'], [], ['chat', 'json.v1']]);
  const userAt = (path: string, key: string | undefined, token: string, extra = '') =>
    `${wsBase}/ws/${path}?${extra}${key === undefined ? '' : `x-api-key=${encodeURIComponent(key)}&`}token=${encodeURIComponent(token)}`;
  const adminAt = (key: string | undefined, token: string) => userAt('admin', key, token);
  const make = (kind: string, url: string, expect: ErrorCode[], extra: Partial<HandshakeCase> = {}): HandshakeCase => ({
    kind,
    url,
    protocols,
    headers: {},
    expect,
    http: [],
    mayBeReady: false,
    ...extra,
  });
  const sameBytes = (a: string, b: string) => Buffer.from(a, 'base64url').equals(Buffer.from(b, 'base64url'));
  const garbageKey = () => rng.pick(['', 'nope', keys.secretToken.slice(0, -1), `${keys.secretToken}x`, `${keys.secretToken} `, rng.bytes(rng.int(1, 40)).toString('base64')]);
  // HTTP strips whitespace around header values, so a padded key is only garbage in the query.
  const garbageHeader = () => rng.pick(['nope', keys.secretToken.slice(0, -1), `${keys.secretToken}x`, keys.adminSecretToken, rng.bytes(rng.int(1, 40)).toString('base64')]);
  switch (rng.int(0, 13)) {
    case 0: {
      const m = mutateToken(rng, userToken);
      const ready = sameBytes(m.token, userToken) && m.token !== '';
      return make(`user-token-${m.kind}`, userAt('acme/support', keys.secretToken, m.token), ['InvalidToken'], { mayBeReady: ready });
    }
    case 1: {
      // Past a few KB the request line is too long for uWS, which answers 431.
      const garbage = rng.chance(0.1) ? 'A'.repeat(rng.int(2000, 9000)) : rng.bytes(rng.int(0, 200)).toString('base64url');
      return make('user-token-garbage', userAt('acme/support', keys.secretToken, garbage), ['InvalidToken'], { http: [431] });
    }
    case 2: {
      const [path, extra] = rng.pick([['acme/sales', ''], ['other/support', ''], ['ACME/support', ''], ['acme/support', `user=hs-${n}x&`]] as const);
      return make('user-token-wrong-path', userAt(path, keys.secretToken, userToken, extra), ['InvalidToken']);
    }
    case 3:
      return make('admin-token-on-user-path', userAt('acme/support', keys.secretToken, adminToken), ['InvalidToken']);
    case 4:
      return make('user-claims-broken', userAt('acme/support', keys.secretToken, sealRaw(userKeyHex, brokenUserClaims(rng, n))), ['InvalidToken']);
    case 5: {
      const expired = userCodec.mintUser({ companyId: 'acme', agentId: 'support', userId: `hs-${n}`, expiresAtMs: Date.now() - rng.int(1, 1e9) });
      return make('user-token-expired', userAt('acme/support', keys.secretToken, expired), ['InvalidToken']);
    }
    case 6: {
      const other = sealRaw(randomBytes(32).toString('hex'), Buffer.from(JSON.stringify({ company_id: 'acme', agent_id: 'support', user_id: `hs-${n}`, expires_at: '2099-01-01T00:00:00Z' })));
      return make('user-token-other-key', userAt('acme/support', keys.secretToken, other), ['InvalidToken']);
    }
    case 7: {
      const choice = rng.int(0, 3);
      if (choice === 0) return make('user-key-missing', userAt('acme/support', undefined, userToken), ['InvalidAPIKey']);
      if (choice === 1) return make('user-key-admin', userAt('acme/support', keys.adminSecretToken, userToken), ['InvalidAPIKey']);
      if (choice === 2) return make('user-key-header-garbage', userAt('acme/support', undefined, userToken), ['InvalidAPIKey'], { headers: { 'x-api-key': garbageHeader() } });
      return make('user-key-garbage', userAt('acme/support', garbageKey(), userToken), ['InvalidAPIKey']);
    }
    case 8: {
      const weird = rng.pick(WEIRD_SEGMENTS);
      const path = rng.chance(0.5) ? `${weird}/${rng.pick(['support', ...WEIRD_SEGMENTS])}` : `${rng.pick(['acme', ...WEIRD_SEGMENTS])}/${weird}`;
      return make('user-path-weird', userAt(path, keys.secretToken, userToken), ['BadRequest', 'InvalidToken'], { http: [400, 404] });
    }
    case 9: {
      const m = mutateToken(rng, adminToken);
      const ready = sameBytes(m.token, adminToken) && m.token !== '';
      return make(`admin-token-${m.kind}`, adminAt(keys.adminSecretToken, m.token), ['InvalidToken'], { mayBeReady: ready });
    }
    case 10:
      return make('user-token-on-admin-path', adminAt(keys.adminSecretToken, userToken), ['InvalidToken']);
    case 11: {
      const choice = rng.int(0, 2);
      if (choice === 0) return make('admin-key-missing', adminAt(undefined, adminToken), ['InvalidAPIKey']);
      if (choice === 1) return make('admin-key-user', adminAt(keys.secretToken, adminToken), ['InvalidAPIKey']);
      return make('admin-key-garbage', adminAt(garbageKey(), adminToken), ['InvalidAPIKey']);
    }
    case 12:
      return make('admin-claims-broken', adminAt(keys.adminSecretToken, sealRaw(adminKeyHex, brokenAdminClaims(rng, n))), ['InvalidToken']);
    default:
      return make('admin-token-garbage', adminAt(keys.adminSecretToken, rng.bytes(rng.int(0, 200)).toString('base64')), ['InvalidToken']);
  }
}

const BAD_TIMES = ['', 'tomorrow', '2099-13-01T00:00:00Z', '2099-02-30T00:00:00Z', '2099-01-01 00:00:00Z', '2099-01-01t00:00:00z', '2099-01-01T24:00:00Z', '2099-12-31T23:59:60Z', '2020-01-01T00:00:00Z', '0000-01-01T00:00:00Z', '2099-01-01T00:00:00+25:00', '2099-01-01T00:00:00.1234567891Z', '2099-01-01'];
const WRONG_TYPES: readonly unknown[] = [null, 5, '', true, [], {}, ['acme']];

/** Plaintext claims that must not verify: each is a valid user token's claims with one thing broken. */
function brokenUserClaims(rng: Rng, n: string): Buffer {
  const doc: Record<string, unknown> = { company_id: 'acme', agent_id: 'support', user_id: `hs-${n}`, expires_at: '2099-01-01T00:00:00Z' };
  const field = rng.pick(['company_id', 'agent_id', 'user_id', 'expires_at']);
  switch (rng.int(0, 6)) {
    case 0:
      delete doc[field];
      break;
    case 1:
      doc[field] = rng.pick(WRONG_TYPES);
      break;
    case 2:
      doc['expires_at'] = rng.pick(BAD_TIMES);
      break;
    case 3:
      doc[rng.pick(['company_id', 'agent_id'])] = rng.pick(['acme2', 'Support', 'acme.x', ' acme']);
      break;
    case 4:
      doc['user_id'] = rng.pick(['a.b', 'a b', 'a*', 'a>b', 'a:b', 'a/b', 'x'.repeat(129)]);
      break;
    case 5:
      doc['admin_id'] = 'root';
      break;
    default:
      return rng.pick([rng.bytes(rng.int(0, 64)), Buffer.from('[]'), Buffer.from('null'), Buffer.from('"acme"'), Buffer.from(JSON.stringify(doc).slice(0, -1))]);
  }
  return Buffer.from(JSON.stringify(doc));
}

/** Admin claims with one thing broken. */
function brokenAdminClaims(rng: Rng, n: string): Buffer {
  const doc: Record<string, unknown> = { admin_id: `hs-${n}`, expires_at: '2099-01-01T00:00:00Z' };
  switch (rng.int(0, 4)) {
    case 0:
      delete doc[rng.pick(['admin_id', 'expires_at'])];
      break;
    case 1:
      doc[rng.pick(['admin_id', 'expires_at'])] = rng.pick(WRONG_TYPES);
      break;
    case 2:
      doc['expires_at'] = rng.pick(BAD_TIMES);
      break;
    case 3:
      doc[rng.pick(['company_id_restriction', 'subscribed_company_id', 'subscribed_agent_id'])] = rng.pick([5, true, [], {}]);
      break;
    default:
      doc['user_id'] = 'alice';
  }
  return Buffer.from(JSON.stringify(doc));
}


/** Bytes that are not UTF-8: a valid frame with an invalid sequence spliced in. */
export function invalidUtf8(rng: Rng): Buffer {
  const frame = Buffer.from('{"type":"select_chat","chat_id":"c1"}');
  const bad = Buffer.from(rng.pick([[0xff], [0xc3, 0x28], [0xe2, 0x82], [0xed, 0xa0, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80], [0xc0, 0xaf], [0x80]]));
  const at = rng.int(0, frame.length);
  return Buffer.concat([frame.subarray(0, at), bad, frame.subarray(at)]);
}

/** One client → server WebSocket frame built by hand, masked unless `unmasked`. */
export function wireFrame(rng: Rng, first: number, payload: Buffer, options: { unmasked?: boolean; length?: number } = {}): Buffer {
  const length = options.length ?? payload.length;
  const maskBit = options.unmasked === true ? 0 : 0x80;
  let header: Buffer;
  if (length < 126) header = Buffer.from([first, maskBit | length]);
  else if (length < 65536) header = Buffer.from([first, maskBit | 126, length >> 8, length & 0xff]);
  else {
    header = Buffer.alloc(10);
    header[0] = first;
    header[1] = maskBit | 127;
    header.writeBigUInt64BE(BigInt(length), 2);
  }
  if (options.unmasked === true) return Buffer.concat([header, payload]);
  const key = rng.bytes(4);
  const masked = Buffer.from(payload.map((byte, i) => byte ^ (key[i % 4] ?? 0)));
  return Buffer.concat([header, key, masked]);
}

/** Bytes that break RFC 6455 framing in one specific way each, to send after a valid upgrade. */
export function brokenFraming(rng: Rng): { readonly kind: string; readonly bytes: Buffer } {
  const json = Buffer.from('{"type":"select_chat","chat_id":"c1"}');
  const close = (code: number, reason = Buffer.alloc(0)) => Buffer.concat([Buffer.from([code >> 8, code & 0xff]), reason]);
  const cases: Array<() => { kind: string; bytes: Buffer }> = [
    () => ({ kind: 'unmasked', bytes: wireFrame(rng, 0x81, json, { unmasked: true }) }),
    () => ({ kind: 'rsv-bits', bytes: wireFrame(rng, 0x81 | (rng.int(1, 7) << 4), json) }),
    () => ({ kind: 'reserved-opcode', bytes: wireFrame(rng, 0x80 | rng.pick([3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf]), json) }),
    () => ({ kind: 'long-control', bytes: wireFrame(rng, 0x89, rng.bytes(rng.int(126, 300))) }),
    () => ({ kind: 'fragmented-control', bytes: wireFrame(rng, 0x09, Buffer.from('p')) }),
    () => ({ kind: 'orphan-continuation', bytes: wireFrame(rng, 0x80, json) }),
    () => ({ kind: 'interleaved-data', bytes: Buffer.concat([wireFrame(rng, 0x01, json.subarray(0, 10)), wireFrame(rng, 0x81, json)]) }),
    () => ({ kind: 'close-1-byte', bytes: wireFrame(rng, 0x88, Buffer.from([3])) }),
    () => ({ kind: 'close-bad-code', bytes: wireFrame(rng, 0x88, close(rng.pick([0, 999, 1004, 1005, 1006, 1015, 2999, 5000, 65535]))) }),
    () => ({ kind: 'close-bad-utf8', bytes: wireFrame(rng, 0x88, close(1000, Buffer.from([0xc3, 0x28]))) }),
    () => ({ kind: 'huge-length', bytes: wireFrame(rng, 0x82, rng.bytes(8), { length: rng.pick([2 ** 31, 2 ** 40, Number.MAX_SAFE_INTEGER]) }) }),
    () => ({ kind: 'truncated-frame', bytes: wireFrame(rng, 0x81, json).subarray(0, rng.int(1, 20)) }),
    () => ({ kind: 'random-bytes', bytes: rng.bytes(rng.int(1, 300)) }),
    () => ({ kind: 'valid-then-garbage', bytes: Buffer.concat([wireFrame(rng, 0x81, json), rng.bytes(rng.int(1, 64))]) }),
  ];
  return rng.pick(cases)();
}

/** A valid upgrade request for `pathAndQuery`, or a mangled one, or bytes that are not HTTP at all. */
export function upgradeRequest(rng: Rng, host: string, pathAndQuery: string, mangle: boolean): { readonly kind: string; readonly bytes: Buffer } {
  const lines = [
    `GET ${pathAndQuery} HTTP/1.1`,
    `Host: ${host}`,
    'Upgrade: websocket',
    'Connection: Upgrade',
    `Sec-WebSocket-Key: ${rng.bytes(16).toString('base64')}`,
    'Sec-WebSocket-Version: 13',
    'Sec-WebSocket-Protocol: json.v1',
  ];
  const valid = `${lines.join('\r\n')}\r\n\r\n`;
  if (!mangle) return { kind: 'upgrade', bytes: Buffer.from(valid) };
  switch (rng.int(0, 5)) {
    case 0:
      return { kind: 'not-http', bytes: rng.bytes(rng.int(1, 600)) };
    case 1:
      return { kind: 'request-truncated', bytes: Buffer.from(valid.slice(0, rng.int(1, valid.length - 2))) };
    case 2: {
      const broken = lines.filter(() => rng.chance(0.7));
      return { kind: 'headers-dropped', bytes: Buffer.from(`${broken.join('\r\n')}\r\n\r\n`) };
    }
    case 3: {
      const at = rng.int(0, valid.length - 5);
      return { kind: 'request-bytes-flipped', bytes: Buffer.concat([Buffer.from(valid.slice(0, at)), rng.bytes(rng.int(1, 8)), Buffer.from(valid.slice(at + 1))]) };
    }
    case 4:
      return { kind: 'bad-version', bytes: Buffer.from(valid.replace('Version: 13', `Version: ${rng.pick(['8', '0', '99', 'x', ''])}`)) };
    default:
      return { kind: 'bare-lf', bytes: Buffer.from(valid.replaceAll('\r\n', '\n')) };
  }
}
