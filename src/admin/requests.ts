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

export function parseUserTokenRequest(body: unknown): Parsed<UserTokenRequest> {
  return withObject(body, (b) => ({
    companyId: identifier(b, 'company_id'),
    agentId: identifier(b, 'agent_id'),
    userId: identifier(b, 'user_id'),
    expiresInSeconds: expiresIn(b),
  }));
}

export function parseAdminTokenRequest(body: unknown): Parsed<AdminTokenRequest> {
  return withObject(body, (b) => ({
    adminId: identifier(b, 'admin_id'),
    expiresInSeconds: expiresIn(b),
    subscribedCompanyId: optionalIdentifier(b, 'subscribed_company_id'),
    subscribedAgentId: optionalIdentifier(b, 'subscribed_agent_id'),
    companyIdRestriction: optionalIdentifier(b, 'company_id_restriction'),
  }));
}

export function parsePublishRequest(body: unknown): Parsed<PublishRequest> {
  return withObject(body, (b) => {
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
    // One spelling of the request id, whatever case the caller wrote it in: NATS headers are read case-sensitively.
    const named = stringEntries.map(([name, value]): [string, string] => [name.toLowerCase() === 'x-request-id' ? REQUEST_ID_HEADER : name, value]);
    return { subject, payload: payloadText(payload), headers: Object.fromEntries(named) };
  });
}

export function parseDisconnectRequest(body: unknown): Parsed<Identity> {
  return withObject(body, (b): Identity =>
    b['admin_id'] !== undefined
      ? { kind: 'admin', adminId: identifier(b, 'admin_id') }
      : { kind: 'user', companyId: identifier(b, 'company_id'), agentId: identifier(b, 'agent_id'), userId: identifier(b, 'user_id') },
  );
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

function withObject<T>(body: unknown, parse: (b: Body) => T): Parsed<T> {
  if (!isObject(body)) return { ok: false, message: 'body must be a JSON object' };
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
