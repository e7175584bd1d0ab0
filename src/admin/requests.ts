import { REQUEST_ID_HEADER } from '../ingest/EventSource.js';
import { IDENTIFIER_RULE, isValidIdentifier, type Identity } from '../sessions/SessionStore.js';

/** A request body that passed validation, or the message explaining what to fix. */
export type Parsed<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly message: string };

export interface UserTokenRequest {
  readonly companyId: string;
  readonly agentId: string;
  readonly userId: string;
  readonly expiresInSeconds: number;
}

export interface AdminTokenRequest {
  readonly adminId: string;
  readonly expiresInSeconds: number;
  readonly subscribedCompanyId: string;
  readonly subscribedAgentId: string;
  readonly companyIdRestriction: string;
}

export interface PublishRequest {
  readonly subject: string;
  /** The payload serialized once, as it will reach clients. */
  readonly payload: string;
  readonly headers: Readonly<Record<string, string>>;
}

/** The longest token lifetime the API mints: 30 days. */
export const MAX_EXPIRES_IN_SECONDS = 30 * 24 * 3600;

type Body = Record<string, unknown>;

/** The fields each request takes; any other is refused. */
const USER_SESSION_FIELDS = ['company_id', 'agent_id', 'user_id'] as const;
const USER_TOKEN_FIELDS = [...USER_SESSION_FIELDS, 'expires_in_seconds'];
const ADMIN_TOKEN_FIELDS = ['admin_id', 'expires_in_seconds', 'subscribed_company_id', 'subscribed_agent_id', 'company_id_restriction'];
const PUBLISH_FIELDS = ['subject', 'payload', 'headers'];
const DISCONNECT_FIELDS = [...USER_SESSION_FIELDS, 'admin_id'];

export function parseUserTokenRequest(body: unknown): Parsed<UserTokenRequest> {
  return withObject(body, USER_TOKEN_FIELDS, (b) => ({
    companyId: identifier(b, 'company_id'),
    agentId: identifier(b, 'agent_id'),
    userId: identifier(b, 'user_id'),
    expiresInSeconds: expiresIn(b),
  }));
}

export function parseAdminTokenRequest(body: unknown): Parsed<AdminTokenRequest> {
  return withObject(body, ADMIN_TOKEN_FIELDS, (b) => {
    const request = {
      adminId: identifier(b, 'admin_id'),
      expiresInSeconds: expiresIn(b),
      subscribedCompanyId: optionalIdentifier(b, 'subscribed_company_id'),
      subscribedAgentId: optionalIdentifier(b, 'subscribed_agent_id'),
      companyIdRestriction: optionalIdentifier(b, 'company_id_restriction'),
    };
    const { subscribedCompanyId, companyIdRestriction } = request;
    // Such a token would see no event at all: a mistake, not a scope.
    if (subscribedCompanyId !== '' && companyIdRestriction !== '' && subscribedCompanyId !== companyIdRestriction) {
      throw new InvalidField('"subscribed_company_id" must equal "company_id_restriction" when both are given');
    }
    return request;
  });
}

export function parsePublishRequest(body: unknown): Parsed<PublishRequest> {
  return withObject(body, PUBLISH_FIELDS, (b) => {
    const subject = b['subject'];
    if (typeof subject !== 'string' || subject === '') throw new InvalidField('"subject" must be a non-empty string');
    const payload = b['payload'];
    if (!isObject(payload)) throw new InvalidField('"payload" must be a JSON object (the event)');
    const headers = b['headers'] ?? {};
    if (!isObject(headers)) throw new InvalidField('"headers" must be an object of strings');
    const entries = Object.entries(headers);
    const stringEntries = entries.filter((entry): entry is [string, string] => typeof entry[1] === 'string');
    if (stringEntries.length !== entries.length) throw new InvalidField('"headers" values must be strings');
    const bad = stringEntries.find(([name, value]) => !HEADER_NAME.test(name) || /[\r\n]/.test(value));
    if (bad !== undefined) throw new InvalidField(`"headers": ${JSON.stringify(bad[0])} must be a header name (letters, digits and !#$%&'*+-.^_\`|~) with a value on one line`);
    const control = stringEntries.find(([name]) => /^nats-/i.test(name) && name.toLowerCase() !== 'nats-msg-id');
    // They tell JetStream how to store the message (expected stream or sequence, rollup, TTL…); one it
    // refuses would be refused on every retry, while the caller heard "try again later".
    if (control !== undefined) throw new InvalidField(`"headers": ${JSON.stringify(control[0])} is a NATS control header; of those only Nats-Msg-Id may be set`);
    // One spelling of the request id, whatever case the caller wrote it in: NATS headers are read case-sensitively.
    const named = stringEntries.map(([name, value]): [string, string] => [name.toLowerCase() === 'x-request-id' ? REQUEST_ID_HEADER : name, value]);
    return { subject, payload: payloadText(payload), headers: Object.fromEntries(named) };
  });
}

export function parseDisconnectRequest(body: unknown): Parsed<Identity> {
  return withObject(body, DISCONNECT_FIELDS, (b): Identity => {
    const userFields = USER_SESSION_FIELDS.filter((name) => b[name] !== undefined);
    if (b['admin_id'] === undefined) {
      if (userFields.length === 0) throw new InvalidField('name a session: "company_id", "agent_id" and "user_id", or "admin_id"');
      return { kind: 'user', companyId: identifier(b, 'company_id'), agentId: identifier(b, 'agent_id'), userId: identifier(b, 'user_id') };
    }
    if (userFields.length > 0) throw new InvalidField('name one session: "admin_id", or "company_id", "agent_id" and "user_id", not both');
    return { kind: 'admin', adminId: identifier(b, 'admin_id') };
  });
}

/** An HTTP token (RFC 9110 §5.6.2): what NATS accepts as a header name. */
const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** The payload as JSON text; one nested past what serializing can follow is refused, not a crash. */
function payloadText(payload: Body): string {
  try {
    return JSON.stringify(payload);
  } catch (err) {
    if (err instanceof RangeError) throw new InvalidField('"payload" is nested too deeply');
    throw err;
  }
}

/** Thrown by the field readers; withObject turns it into a 400 message. */
class InvalidField extends Error {}

/**
 * Parses a body that must be a JSON object of `fields` only: a misspelt field would otherwise be
 * dropped without a word (a token scope mistyped would mint a token that sees every company).
 */
function withObject<T>(body: unknown, fields: readonly string[], parse: (b: Body) => T): Parsed<T> {
  if (!isObject(body)) return { ok: false, message: 'body must be a JSON object' };
  const unknown = Object.keys(body).find((name) => !fields.includes(name));
  if (unknown !== undefined) return { ok: false, message: `unknown field ${JSON.stringify(unknown)}; this request takes ${fields.map((name) => `"${name}"`).join(', ')}` };
  try {
    return { ok: true, value: parse(body) };
  } catch (err) {
    if (err instanceof InvalidField) return { ok: false, message: err.message };
    throw err;
  }
}

function identifier(b: Body, name: string): string {
  const value = b[name];
  if (typeof value !== 'string' || value === '') throw new InvalidField(`"${name}" must be a non-empty string`);
  if (!isValidIdentifier(value)) {
    throw new InvalidField(`"${name}" must be ${IDENTIFIER_RULE}`);
  }
  return value;
}

function optionalIdentifier(b: Body, name: string): string {
  return b[name] === undefined || b[name] === '' ? '' : identifier(b, name);
}

function expiresIn(b: Body): number {
  const value = b['expires_in_seconds'];
  if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0 || value > MAX_EXPIRES_IN_SECONDS) {
    throw new InvalidField(`"expires_in_seconds" must be an integer from 1 to ${MAX_EXPIRES_IN_SECONDS}`);
  }
  return value;
}

function isObject(value: unknown): value is Body {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
