import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';

/** Files for pod-to-pod mutual TLS; all empty means plaintext (inside a trusted network only). */
export interface MutualTlsFiles {
  readonly tlsCaFile: string;
  readonly tlsCertFile: string;
  readonly tlsKeyFile: string;
}

/** Server credentials: with mTLS, a peer must present a certificate the CA signed. */
export function serverCredentials(files: MutualTlsFiles): grpc.ServerCredentials {
  if (files.tlsCaFile === '') return grpc.ServerCredentials.createInsecure();
  return grpc.ServerCredentials.createSsl(
    readFileSync(files.tlsCaFile),
    [{ cert_chain: readFileSync(files.tlsCertFile), private_key: readFileSync(files.tlsKeyFile) }],
    true,
  );
}

/** Channel credentials for dialing peers: this pod's certificate, and only peers the CA signed. */
export function channelCredentials(files: MutualTlsFiles): grpc.ChannelCredentials {
  if (files.tlsCaFile === '') return grpc.credentials.createInsecure();
  return grpc.credentials.createSsl(readFileSync(files.tlsCaFile), readFileSync(files.tlsKeyFile), readFileSync(files.tlsCertFile));
}
