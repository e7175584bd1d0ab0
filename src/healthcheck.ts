// The container's health check (deploy/Dockerfile HEALTHCHECK): GET /health on this pod's public
// listener, read from the same configuration the gateway reads, over TLS when the pod speaks it.
// Exits 0 on 200 and 1 otherwise (a configuration the gateway would refuse included).
import { get as getHttp } from 'node:http';
import { get as getHttps } from 'node:https';
import { loadConfig } from './config/load.js';

const ANY_ADDRESS = new Set(['0.0.0.0', '::']);

function healthy(): Promise<boolean> {
  const { config } = loadConfig(process.argv.slice(2), process.env);
  const { host, port } = config.server;
  const get = config.tls.certFile === '' ? getHttp : getHttps;
  return new Promise((resolve) => {
    // The pod's own certificate need not name the loopback address: this checks liveness, not identity.
    get({ host: ANY_ADDRESS.has(host) ? '127.0.0.1' : host, port, path: '/health', rejectUnauthorized: false }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    }).on('error', () => resolve(false));
  });
}

healthy().then(
  (ok) => process.exit(ok ? 0 : 1),
  () => process.exit(1),
);
