import { createCipheriv, createDecipheriv, createSecretKey, randomBytes, type KeyObject } from 'node:crypto';

/** The two credential kinds; each has its own keys and claim shape. */
export type TokenKind = 'user' | 'admin';

/** Claims of a verified user token. */
export interface UserClaims {
  readonly companyId: string;
  readonly agentId: string;
  readonly userId: string;
  readonly expiresAtMs: number;
}

/** Claims of a verified admin token; absent optional fields are ''. */
export interface AdminClaims {
  readonly adminId: string;
  readonly companyIdRestriction: string;
  readonly subscribedCompanyId: string;
  readonly subscribedAgentId: string;
  readonly expiresAtMs: number;
}

/** Why a token was refused. */
export type TokenFailure = 'malformed' | 'undecryptable' | 'invalid-claims' | 'expired';

/** A refused token; the message is safe to show to the client (it never contains the token or a key). */
export class TokenError extends Error {
  override readonly name = 'TokenError';

  constructor(
    readonly failure: TokenFailure,
    message: string,
  ) {
    super(message);
  }
}

const KEY_BYTES = 32;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const HEX_KEY = /^[0-9a-fA-F]{64}$/;
const BASE64URL = /^([A-Za-z0-9_-]*)(={0,2})$/;
// Uppercase T and Z only: that is what Go's time.Time.UnmarshalJSON accepts.
const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:Z|([+-])(\d{2}):(\d{2}))$/;

/** Parses configured keys (64 hex chars each); errors name the key's position, never its value. */
export function parseAesKeys(hexKeys: readonly string[]): Buffer[] {
  if (hexKeys.length === 0) throw new Error('at least one AES key is required');
  return hexKeys.map((hex, i) => {
    if (!HEX_KEY.test(hex)) {
      throw new Error(`AES key #${i + 1} of ${hexKeys.length} must be exactly 64 hex characters (32 bytes)`);
    }
    return Buffer.from(hex, 'hex');
  });
}

/** AES-256-GCM token codec, byte-compatible with the Go service: mints with the first key, accepts any. */
export class TokenCodec {
  readonly #keys: readonly KeyObject[];

  constructor(keys: readonly Buffer[]) {
    if (keys.length === 0) throw new Error('TokenCodec needs at least one key');
    this.#keys = keys.map((key, i) => {
      if (key.length !== KEY_BYTES) throw new Error(`AES key #${i + 1} must be ${KEY_BYTES} bytes, got ${key.length}`);
      return createSecretKey(Buffer.from(key));
    });
  }

  /** Mints a user token. */
  mintUser(claims: { companyId: string; agentId: string; userId: string; expiresAtMs: number }): string {
    const doc = {
      company_id: requireNonEmpty(claims.companyId, 'companyId'),
      agent_id: requireNonEmpty(claims.agentId, 'agentId'),
      user_id: requireNonEmpty(claims.userId, 'userId'),
      expires_at: epochMsToRfc3339(claims.expiresAtMs),
    };
    return this.#seal(doc);
  }

  /** Mints an admin token; empty optional fields are omitted, as Go's omitempty does. */
  mintAdmin(claims: {
    adminId: string;
    companyIdRestriction?: string;
    subscribedCompanyId?: string;
    subscribedAgentId?: string;
    expiresAtMs: number;
  }): string {
    const doc: Record<string, string> = { admin_id: requireNonEmpty(claims.adminId, 'adminId') };
    if (claims.companyIdRestriction) doc.company_id_restriction = claims.companyIdRestriction;
    if (claims.subscribedCompanyId) doc.subscribed_company_id = claims.subscribedCompanyId;
    if (claims.subscribedAgentId) doc.subscribed_agent_id = claims.subscribedAgentId;
    doc.expires_at = epochMsToRfc3339(claims.expiresAtMs);
    return this.#seal(doc);
  }

  /** Verifies a user token at `nowMs`; throws TokenError. */
  verifyUser(token: string, nowMs: number): UserClaims {
    const doc = this.#open(token);
    if ('admin_id' in doc) throw claimsError('an admin token is not a user token');
    const claims: UserClaims = {
      companyId: requiredString(doc, 'company_id'),
      agentId: requiredString(doc, 'agent_id'),
      userId: requiredString(doc, 'user_id'),
      expiresAtMs: expiresAt(doc),
    };
    return checkExpiry(claims, nowMs);
  }

  /** Verifies an admin token at `nowMs`; throws TokenError. */
  verifyAdmin(token: string, nowMs: number): AdminClaims {
    const doc = this.#open(token);
    if ('user_id' in doc) throw claimsError('a user token is not an admin token');
    const claims: AdminClaims = {
      adminId: requiredString(doc, 'admin_id'),
      companyIdRestriction: optionalString(doc, 'company_id_restriction'),
      subscribedCompanyId: optionalString(doc, 'subscribed_company_id'),
      subscribedAgentId: optionalString(doc, 'subscribed_agent_id'),
      expiresAtMs: expiresAt(doc),
    };
    return checkExpiry(claims, nowMs);
  }

  #seal(doc: object): string {
    const nonce = randomBytes(NONCE_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.#keys[0]!, nonce, { authTagLength: TAG_BYTES });
    const body = Buffer.concat([cipher.update(JSON.stringify(doc), 'utf8'), cipher.final()]);
    // Go's base64.URLEncoding pads; Node's 'base64url' does not.
    const raw = Buffer.concat([nonce, body, cipher.getAuthTag()]).toString('base64url');
    return raw + '='.repeat((4 - (raw.length % 4)) % 4);
  }

  #open(token: string): Record<string, unknown> {
    const bytes = decodeBase64Url(token);
    if (bytes.length < NONCE_BYTES + TAG_BYTES) throw new TokenError('malformed', 'token is too short');
    const nonce = bytes.subarray(0, NONCE_BYTES);
    const body = bytes.subarray(NONCE_BYTES, bytes.length - TAG_BYTES);
    const tag = bytes.subarray(bytes.length - TAG_BYTES);
    const plaintext = this.#decrypt(nonce, body, tag);
    if (plaintext === undefined) throw new TokenError('undecryptable', 'token does not decrypt under any configured key');
    let doc: unknown;
    try {
      doc = JSON.parse(plaintext.toString('utf8'));
    } catch {
      throw claimsError('claims are not JSON');
    }
    if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw claimsError('claims are not a JSON object');
    return doc as Record<string, unknown>;
  }

  #decrypt(nonce: Buffer, body: Buffer, tag: Buffer): Buffer | undefined {
    for (const key of this.#keys) {
      const decipher = createDecipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
      decipher.setAuthTag(tag);
      const head = decipher.update(body);
      try {
        return Buffer.concat([head, decipher.final()]);
      } catch {
        // final() throws only on a failed authentication check: the token was sealed under another key.
        continue;
      }
    }
    return undefined;
  }
}

/** Parses an RFC 3339 timestamp (up to nanoseconds, Z or ±hh:mm) to epoch ms, truncating below the ms. */
export function rfc3339ToEpochMs(text: string): number {
  const m = RFC3339.exec(text);
  if (m === null) throw claimsError('expires_at is not an RFC 3339 timestamp');
  const field = (i: number): number => Number(m[i] ?? 0);
  const [year, month, day, hour, minute, second] = [field(1), field(2), field(3), field(4), field(5), field(6)];
  const [offHour, offMinute] = [field(9), field(10)];
  const outOfRange =
    month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month) ||
    hour > 23 || minute > 59 || second > 59 || offHour > 23 || offMinute > 59;
  if (outOfRange) throw claimsError('expires_at is out of range');
  const millis = Number((m[7] ?? '').padEnd(3, '0').slice(0, 3));
  const date = new Date(0);
  // setUTCFullYear, unlike Date.UTC, does not map years 0-99 to 1900-1999.
  date.setUTCFullYear(year, month - 1, day);
  date.setUTCHours(hour, minute, second, millis);
  const offsetMinutes = (m[8] === '-' ? -1 : 1) * (offHour * 60 + offMinute);
  return date.getTime() - offsetMinutes * 60_000;
}

function epochMsToRfc3339(ms: number): string {
  if (!Number.isSafeInteger(ms)) throw new RangeError('expiresAtMs must be an integer epoch in milliseconds');
  const text = new Date(ms).toISOString();
  if (!RFC3339.test(text)) throw new RangeError('expiresAtMs is outside the years 0000-9999');
  return text;
}

function decodeBase64Url(token: string): Buffer {
  const m = BASE64URL.exec(token);
  const body = m?.[1] ?? '';
  const padding = m?.[2] ?? '';
  // Padded input must be whole quads; unpadded input can never leave a single dangling character.
  const valid = m !== null && body.length % 4 !== 1 && (padding === '' || (body.length + padding.length) % 4 === 0);
  if (!valid || body.length === 0) throw new TokenError('malformed', 'token is not base64url');
  return Buffer.from(body, 'base64url');
}

function daysInMonth(year: number, month: number): number {
  const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
  return [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1] ?? 0;
}

function requiredString(doc: Record<string, unknown>, field: string): string {
  const value = doc[field];
  if (typeof value !== 'string' || value === '') throw claimsError(`${field} is missing or not a non-empty string`);
  return value;
}

// Go decodes a JSON null into a string field as the zero value, so null reads as absent.
function optionalString(doc: Record<string, unknown>, field: string): string {
  const value = doc[field];
  if (value === undefined || value === null) return '';
  if (typeof value !== 'string') throw claimsError(`${field} is not a string`);
  return value;
}

function expiresAt(doc: Record<string, unknown>): number {
  const value = doc.expires_at;
  if (typeof value !== 'string') throw claimsError('expires_at is missing or not a string');
  return rfc3339ToEpochMs(value);
}

function checkExpiry<T extends { readonly expiresAtMs: number }>(claims: T, nowMs: number): T {
  if (claims.expiresAtMs <= nowMs) throw new TokenError('expired', 'token has expired');
  return claims;
}

function requireNonEmpty(value: string, name: string): string {
  if (typeof value !== 'string' || value === '') throw new TypeError(`${name} must be a non-empty string`);
  return value;
}

function claimsError(detail: string): TokenError {
  return new TokenError('invalid-claims', `invalid token claims: ${detail}`);
}
