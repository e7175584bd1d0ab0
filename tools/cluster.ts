// `npm run cluster`: a local three-pod cluster without Docker, on this machine's redis-server and
// nats-server (each started on a free port in a temp dir). Prints the URLs and a ready token;
// Ctrl-C (or SIGTERM) stops everything it started.
import { randomKeys, startGateway, type TestGateway } from '../test/support/gateway.js';
import { NatsServer } from '../test/support/nats.js';
import { RedisServer } from '../test/support/redis.js';

const PODS = 3;

const keys = randomKeys();
const redis = await RedisServer.start();
const nats = await NatsServer.start();
const pods: TestGateway[] = [];
let stopping: Promise<void> | undefined;

async function stopAll(): Promise<void> {
  await Promise.allSettled(pods.map((pod) => pod.stop()));
  await Promise.allSettled([redis.stop(), nats.stop()]);
}

function shutdown(): void {
  stopping ??= stopAll().then(() => process.exit(0));
}
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);

try {
  for (let i = 0; i < PODS; i++) pods.push(await startGateway({ REDIS_URL: redis.url, NATS_URL: nats.url, NODE_ENV: 'development' }, keys));
} catch (err) {
  process.stderr.write(`could not start the cluster: ${err instanceof Error ? err.message : String(err)}\n`);
  await stopAll();
  process.exit(1);
}

const [first] = pods;
if (first !== undefined) {
  const url = await first.userUrl('acme', 'support', 'alice');
  const lines = [
    '',
    `Switchboard cluster: ${PODS} pods on Redis ${redis.url} and NATS ${nats.url}`,
    ...pods.map((pod, i) => `  pod ${i + 1} (${pod.podId}): ${pod.wsBase}/ws/{company}/{agent}   admin ${pod.adminBase}`),
    '',
    `  SECRET_TOKEN=${keys.secretToken}`,
    `  ADMIN_SECRET_TOKEN=${keys.adminSecretToken}`,
    '',
    'Connect to pod 1 (token valid for 10 minutes):',
    `  npx wscat -s json.v1 -c '${url}'`,
    'Publish through pod 2 (the event goes through NATS and reaches pod 1 over gRPC):',
    `  curl -s -X POST ${pods[1]?.adminBase ?? first.adminBase}/admin/publish -H 'X-API-Key: ${keys.adminSecretToken}' -H 'content-type: application/json' \\`,
    `    -d '{"subject":"websocket.acme.support.chats","payload":{"event_id":"e1"}}'`,
    'Sessions across the cluster:',
    `  curl -s ${first.adminBase}/admin/sessions -H 'X-API-Key: ${keys.adminSecretToken}'`,
    '',
    'Ctrl-C stops the pods, Redis and NATS.',
    '',
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}
