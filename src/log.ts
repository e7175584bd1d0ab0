import { pino, type Logger } from 'pino';

export type { Logger } from 'pino';

const REDACTED_PATHS = [
  'token',
  '*.token',
  'apiKey',
  '*.apiKey',
  'headers["x-api-key"]',
  '*.headers["x-api-key"]',
  'authorization',
  '*.authorization',
];

/** Query parameters that carry secrets, by decoded, lower-cased name. */
const SECRET_PARAMS: ReadonlySet<string> = new Set(['token', 'x-api-key']);

/**
 * Masks the `token` and `x-api-key` query values so URLs can be logged. Names are compared decoded,
 * as the handshake reads them: `%74oken=` is a token too.
 */
export function redactUrl(url: string): string {
  const start = url.indexOf('?');
  if (start < 0) return url;
  const params = url
    .slice(start + 1)
    .split('&')
    .map((param) => {
      const name = param.split('=', 1)[0] ?? '';
      return SECRET_PARAMS.has(decodedName(name).toLowerCase()) ? `${name}=[Redacted]` : param;
    });
  return `${url.slice(0, start + 1)}${params.join('&')}`;
}

function decodedName(name: string): string {
  try {
    return decodeURIComponent(name.replace(/\+/g, ' '));
  } catch {
    return name;
  }
}

/** The root logger: JSON lines on stdout with secrets redacted and the pod id on every line. */
export function createLogger(level: string, podId: string): Logger {
  return pino({
    level,
    base: { pod_id: podId },
    redact: { paths: REDACTED_PATHS, censor: '[Redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  });
}
