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

const QUERY_SECRET = /([?&](?:token|x-api-key)=)[^&\s"]*/gi;

/** Masks `token=` and `x-api-key=` query values so URLs can be logged. */
export function redactUrl(url: string): string {
  return url.replace(QUERY_SECRET, '$1[Redacted]');
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
