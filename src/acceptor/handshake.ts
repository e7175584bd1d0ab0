import type { HttpRequest } from 'uWebSockets.js';

/** Everything the upgrade needs from the request, copied out before any await (uWS frees `req` on return). */
export interface HandshakeRequest {
  readonly kind: 'user' | 'admin';
  readonly companyId: string;
  readonly agentId: string;
  readonly userParam: string | undefined;
  readonly apiKey: string | undefined;
  readonly token: string | undefined;
  readonly origin: string;
  readonly secWebSocketKey: string;
  readonly secWebSocketProtocol: string;
  readonly secWebSocketExtensions: string;
  /** Path and query, for logs only: always pass it through redactUrl. */
  readonly url: string;
}

/** The one sub-protocol we speak; echoed when the client offers it. */
export const SUBPROTOCOL = 'json.v1';

/** Copies what the handshake needs out of the request. `kind` comes from the matched route. */
export function readHandshake(req: HttpRequest, kind: 'user' | 'admin'): HandshakeRequest {
  const rawQuery = req.getQuery() ?? '';
  const query = new URLSearchParams(rawQuery);
  // An empty parameter counts as absent, as Go's Query().Get reads it: `x-api-key=` leaves the header to speak.
  const param = (name: string) => query.get(name) || undefined;
  const headerKey = req.getHeader('x-api-key');
  return {
    kind,
    companyId: kind === 'user' ? safeDecode(req.getParameter(0) ?? '') : '',
    agentId: kind === 'user' ? safeDecode(req.getParameter(1) ?? '') : '',
    userParam: param('user'),
    apiKey: param('x-api-key') ?? (headerKey === '' ? undefined : headerKey),
    token: param('token'),
    origin: req.getHeader('origin'),
    secWebSocketKey: req.getHeader('sec-websocket-key'),
    secWebSocketProtocol: req.getHeader('sec-websocket-protocol'),
    secWebSocketExtensions: req.getHeader('sec-websocket-extensions'),
    url: rawQuery === '' ? req.getUrl() : `${req.getUrl()}?${rawQuery}`,
  };
}

/** The sub-protocol to answer with: json.v1 when offered, otherwise none. */
export function chooseSubprotocol(offered: string): string {
  return offered
    .split(',')
    .map((p) => p.trim())
    .includes(SUBPROTOCOL)
    ? SUBPROTOCOL
    : '';
}

function safeDecode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return '';
  }
}
