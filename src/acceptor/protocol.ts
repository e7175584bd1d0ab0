import type { ErrorPayload } from '../errors.js';

/** A client → server message of json.v1 that passed validation. */
export type ClientFrame = { readonly type: 'select_chat'; readonly chatId: string };

export type ParseResult =
  | { readonly ok: true; readonly frame: ClientFrame }
  | { readonly ok: false; readonly message: string };

const MAX_CHAT_ID_LENGTH = 256;

/**
 * Validates one client text frame. Accepts `select_chat` with `chat_id` at the top level or
 * inside `payload`; everything else is a BadRequest with a message saying what was wrong.
 */
export function parseClientFrame(text: string): ParseResult {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return { ok: false, message: 'frame is not valid JSON' };
  }
  if (!isRecord(doc)) return { ok: false, message: 'frame must be a JSON object' };
  const type = doc['type'];
  if (typeof type !== 'string') return { ok: false, message: 'frame needs a string "type"' };
  if (type !== 'select_chat') return { ok: false, message: `unknown message type "${truncate(type, 40)}"` };
  const payload = doc['payload'];
  const chatId = doc['chat_id'] ?? (isRecord(payload) ? payload['chat_id'] : undefined);
  if (typeof chatId !== 'string' || chatId === '') {
    return { ok: false, message: 'select_chat needs a non-empty string "chat_id"' };
  }
  if (chatId.length > MAX_CHAT_ID_LENGTH || /[\s.*>]/.test(chatId)) {
    return { ok: false, message: `chat_id must be at most ${MAX_CHAT_ID_LENGTH} characters without spaces, ".", "*" or ">"` };
  }
  return { ok: true, frame: { type: 'select_chat', chatId } };
}

/** `{"type":"ready"}`, sent once the session is established. */
export const READY_FRAME = '{"type":"ready"}';

/** An event frame around a payload that is already serialized JSON, so it is never parsed again per recipient. */
export function eventFrame(payloadJson: string): string {
  return `{"type":"event","payload":${payloadJson}}`;
}

/** An error frame. */
export function errorFrame(error: ErrorPayload): string {
  return JSON.stringify({ type: 'error', payload: error });
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max)}…`;
}
