import { ConfigError, loadConfig, podIdOf, unreadableFiles, type LoadedConfig } from './config/load.js';
import { Gateway, type BoundPorts } from './Gateway.js';
import { createLogger, type Logger } from './log.js';

/** Exit status for a configuration that cannot start. */
const EXIT_BAD_CONFIG = 2;

async function main(): Promise<void> {
  const loaded = loadOrExit();
  const { config } = loaded;
  const log = createLogger(config.log.level, podIdOf(config));
  process.on('uncaughtException', (err) => {
    log.fatal({ err }, 'uncaught exception');
    process.exit(1);
  });
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection'));

  const gateway = new Gateway(config, log);
  const startup = gateway.start();
  // Handlers go in before start-up finishes: a signal during start-up must not kill the process
  // with the default action (SIGHUP) or skip the drain (SIGTERM).
  installSignalHandlers(gateway, startup, loaded, log);
  let ports: BoundPorts;
  try {
    ports = await startup;
  } catch (err) {
    log.fatal({ err }, 'start-up failed');
    await gateway.stop();
    process.exit(1);
  }
  if (loaded.generatedKeys.length > 0) printDevInstructions(loaded, gateway, ports);
}

function installSignalHandlers(gateway: Gateway, startup: Promise<unknown>, loaded: LoadedConfig, log: Logger): void {
  let signals = 0;
  const shutdown = (signal: string) => {
    signals++;
    if (signals > 1) {
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    log.info({ signal }, 'shutting down');
    // The deadline runs from the signal, also when start-up is still settling.
    const { shutdownTimeoutMs } = loaded.config.lifecycle;
    const deadlineAt = Date.now() + shutdownTimeoutMs;
    const force = setTimeout(() => {
      log.error('shutdown deadline passed: exiting now');
      process.exit(1);
    }, shutdownTimeoutMs + 1000);
    force.unref();
    // Stop only once start-up has settled, so no part starts after its stop; a failed start-up is
    // logged where main awaits it.
    void startup.then(
      () => gateway.stop(deadlineAt),
      () => gateway.stop(deadlineAt),
    ).then(() => process.exit(0));
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGHUP', () => {
    try {
      const next = loadConfig(process.argv.slice(2), process.env, loaded).config;
      const needRestart = gateway.reload(next);
      log.info({ log_level: next.log.level, limits: next.limits, need_restart: needRestart }, 'configuration reloaded');
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      log.error({ errors: err.lines }, 'configuration reload refused; keeping the running configuration');
    }
  });
}

function loadOrExit(): LoadedConfig {
  try {
    const loaded = loadConfig(process.argv.slice(2), process.env);
    const unreadable = unreadableFiles(loaded.config);
    if (unreadable.length > 0) throw new ConfigError(unreadable);
    return loaded;
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    for (const line of err.lines) process.stderr.write(`config error: ${line}\n`);
    process.exit(EXIT_BAD_CONFIG);
  }
}

/** Development only: the keys were generated for this run, so show how to use them. */
function printDevInstructions(loaded: LoadedConfig, gateway: Gateway, ports: BoundPorts): void {
  const { auth, redis, tls } = loaded.config;
  // Only generated keys are printed: a key the operator configured stays out of stdout (the log stream).
  const shown = (name: string, value: string) => (loaded.generatedKeys.includes(name) ? value : `<${name}>`);
  const secretToken = shown('SECRET_TOKEN', auth.secretToken);
  const adminSecretToken = shown('ADMIN_SECRET_TOKEN', auth.adminSecretToken);
  const generatedSecrets = Object.entries({ SECRET_TOKEN: auth.secretToken, ADMIN_SECRET_TOKEN: auth.adminSecretToken })
    .filter(([name]) => loaded.generatedKeys.includes(name))
    .map(([name, value]) => `  ${name}=${value}`);
  const scheme = tls.certFile === '' ? 'ws' : 'wss';
  const admin = `http://localhost:${ports.admin}`;
  // A token minted under a key the operator configured is a real credential: it stays off stdout too.
  const tokenKeyGenerated = loaded.generatedKeys.includes('TOKEN_AES_KEY');
  const demoToken = tokenKeyGenerated
    ? encodeURIComponent(gateway.codecs.user.mintUser({ companyId: 'acme', agentId: 'support', userId: 'alice', expiresAtMs: Date.now() + 3600_000 }))
    : '<token>';
  const lines = [
    '',
    `Switchboard is running on the ${redis.url === '' ? 'in-process' : 'Redis'} engine. Keys generated for this run: ${loaded.generatedKeys.join(', ')}.`,
    ...generatedSecrets,
    '',
    'Mint a user token:',
    `  curl -s -X POST ${admin}/generate-token -H 'X-API-Key: ${secretToken}' -H 'content-type: application/json' \\`,
    `    -d '{"company_id":"acme","agent_id":"support","user_id":"alice","expires_in_seconds":3600}'`,
    '',
    tokenKeyGenerated ? 'Connect (this URL carries a token valid for one hour):' : 'Connect, with the token minted above:',
    `  npx wscat -s json.v1 -c '${scheme}://localhost:${ports.public}/ws/acme/support?user=alice&x-api-key=${secretToken}&token=${demoToken}'`,
    '',
    'Publish an event to that agent:',
    `  curl -s -X POST ${admin}/admin/publish -H 'X-API-Key: ${adminSecretToken}' -H 'content-type: application/json' \\`,
    `    -d '{"subject":"websocket.acme.support.chats","payload":{"event_id":"e1","event_type":"hello"}}'`,
    '',
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

await main();
