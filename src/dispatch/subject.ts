/** Where an event goes, parsed from its NATS subject (DESIGN.md §7). */
export type EventTarget =
  | { readonly kind: 'agent'; readonly companyId: string; readonly agentId: string }
  | { readonly kind: 'chat'; readonly companyId: string; readonly agentId: string; readonly chatId: string }
  | { readonly kind: 'admins'; readonly companyId: string; readonly agentId: string };

const PREFIX = 'websocket';

/**
 * Parses `websocket.{c}.{a}.chats`, `websocket.{c}.{a}.messages.{chat}` and `websocket.{c}.{a}.agents`.
 * Returns undefined for anything else, including empty tokens and wildcards.
 */
export function parseSubject(subject: string): EventTarget | undefined {
  const parts = subject.split('.');
  if (parts.some((part) => part === '' || part === '*' || part === '>')) return undefined;
  const [prefix, companyId, agentId, kind, chatId] = parts;
  if (prefix !== PREFIX || companyId === undefined || agentId === undefined) return undefined;
  if (kind === 'chats' && parts.length === 4) return { kind: 'agent', companyId, agentId };
  if (kind === 'agents' && parts.length === 4) return { kind: 'admins', companyId, agentId };
  if (kind === 'messages' && parts.length === 5 && chatId !== undefined) {
    return { kind: 'chat', companyId, agentId, chatId };
  }
  return undefined;
}

