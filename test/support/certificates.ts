// Test certificates made with the openssl command line (the TLS, wss and mTLS tests).
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

/** Runs openssl; fails with an install hint when it is missing. */
export function openssl(args: readonly string[]): void {
  try {
    execFileSync('openssl', args, { stdio: 'ignore' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new Error('openssl not found on the PATH: apt-get install openssl (see .ci/run)');
    throw err;
  }
}

/** A self-signed certificate for localhost and 127.0.0.1, valid for a day, as PEM files in `dir`. */
export function selfSignedCertificate(dir: string): { readonly cert: string; readonly key: string } {
  const [cert, key] = [join(dir, 'cert.pem'), join(dir, 'key.pem')];
  openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1']);
  return { cert, key };
}
