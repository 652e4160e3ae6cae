/**
 * A placement plan as Kubernetes manifests, so that a cluster (with an inference gateway in front)
 * runs the plan instead of a home-made one: one Deployment per device group, each pod running
 * `fineserve serve` with its group's models on as many `nvidia.com/gpu` as the group has devices,
 * a ConfigMap holding that serve config, and a Service per model selecting every pod that serves it.
 * @module
 */
import { createHash } from 'node:crypto';

import { stringify } from 'yaml';

import { PRECISION_NAMES } from '../precision.js';
import type { ServeConfig, ServeModelConfig } from './serve.js';
import type { ModelSpec, Placement, PlacementPlan } from '../scheduler/types.js';

/** A model of MODELS.json; `source` (where the pod finds its files) is read only for manifests. */
export type K8sModelSpec = ModelSpec & { readonly source?: string };

/** Options of {@link planManifests}. */
export interface K8sOptions {
  /** The container image with fineserve installed (its entrypoint may be anything: the command is set). */
  readonly image: string;
  /** A PersistentVolumeClaim holding the model files, mounted read-only at MODELS_MOUNT. */
  readonly modelsClaim: string;
  readonly namespace?: string;
  /** Port `fineserve serve` listens on in the pod; the Services expose port 80. */
  readonly port?: number;
}

/** One device group: devices that share a model, which one pod must hold together. */
export interface DeviceGroup {
  /** DNS-1123 name of its Deployment and ConfigMap. */
  readonly name: string;
  /** Plan device ids, in the plan's order. */
  readonly devices: readonly string[];
  readonly placements: readonly Placement[];
}

/** One file to write: its name and the YAML documents in it. */
export interface ManifestFile {
  readonly file: string;
  readonly objects: readonly Record<string, unknown>[];
}

export const MODELS_MOUNT = '/models';
const CONFIG_MOUNT = '/etc/fineserve';
const DEFAULT_PORT = 8000;
const MANAGED_BY = 'fineserve-plan';

/** A DNS-1123 label from any id: lower case, [a-z0-9-], at most 63 characters. */
export function dnsName(text: string): string {
  const name = text
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '');
  if (name.length > 0 && name.length <= 63 && name === text) return name;
  // A changed or long id gets a hash suffix, so two ids never map to one name.
  const hash = createHash('sha256').update(text).digest('hex').slice(0, 6);
  return `${name.slice(0, 56) || 'x'}-${hash}`;
}

/** The label a pod carries for each model it serves; a model's Service selects on it. */
export function modelLabel(model: string): string {
  return `model.fineserve.io/${dnsName(model)}`;
}

/**
 * Devices joined by any placement that spans them (a TP group, or two models sharing one GPU):
 * GPUs cannot be split between pods, so each connected set is one pod with all of them.
 */
export function deviceGroups(plan: PlacementPlan): DeviceGroup[] {
  const parent = new Map<string, string>();
  const find = (d: string): string => {
    let root = d;
    while (parent.get(root) !== root) root = parent.get(root)!;
    parent.set(d, root);
    return root;
  };
  for (const p of plan.placements) for (const d of p.devices) if (!parent.has(d)) parent.set(d, d);
  for (const p of plan.placements) for (const d of p.devices.slice(1)) parent.set(find(d), find(p.devices[0]!));
  const order = plan.devices.map((d) => d.id);
  const rank = (d: string): number => (order.includes(d) ? order.indexOf(d) : order.length);
  const byRoot = new Map<string, string[]>();
  for (const d of [...parent.keys()].sort((a, b) => rank(a) - rank(b))) {
    const root = find(d);
    byRoot.set(root, [...(byRoot.get(root) ?? []), d]);
  }
  return [...byRoot.values()].map((devices) => ({
    // Named by its devices, so a re-plan that keeps a group updates the same Deployment in place.
    name: dnsName(`fineserve-${devices.join('-')}`),
    devices,
    placements: plan.placements.filter((p) => devices.includes(p.devices[0]!)),
  }));
}

function serveConfig(group: DeviceGroup, models: ReadonlyMap<string, K8sModelSpec>): ServeConfig {
  const ids = [...new Set(group.placements.map((p) => p.model))];
  return {
    // Inside the pod the group's GPUs are numbered from 0 whatever their plan ids.
    devices: group.devices.map((_, i) => `cuda:${i}`),
    models: ids.map((id): ServeModelConfig => {
      const spec = models.get(id);
      const precision = spec !== undefined && (PRECISION_NAMES as readonly string[]).includes(spec.precision) ? (spec.precision as ServeModelConfig['precision']) : undefined;
      const maxBatch = Math.max(...group.placements.filter((p) => p.model === id).map((p) => p.maxBatch));
      return {
        id,
        source: spec?.source ?? `${MODELS_MOUNT}/${id}`,
        ...(precision === undefined ? {} : { precision }),
        ...(spec?.slo === undefined ? {} : { slo: spec.slo }),
        ...(maxBatch > 0 ? { maxBatch } : {}),
      };
    }),
  };
}

function deployment(group: DeviceGroup, config: ServeConfig, plan: PlacementPlan, options: K8sOptions): Record<string, unknown>[] {
  const port = options.port ?? DEFAULT_PORT;
  const json = JSON.stringify(config, null, 2);
  const metadata = (name: string): Record<string, unknown> => ({
    name,
    ...(options.namespace === undefined ? {} : { namespace: options.namespace }),
    labels: { 'app.kubernetes.io/name': 'fineserve', 'app.kubernetes.io/managed-by': MANAGED_BY },
  });
  const podLabels: Record<string, string> = { 'app.kubernetes.io/name': 'fineserve', 'fineserve.io/group': group.name };
  for (const m of config.models) podLabels[modelLabel(m.id)] = 'serving';
  const gpus = String(group.devices.length);
  return [
    { apiVersion: 'v1', kind: 'ConfigMap', metadata: metadata(group.name), data: { 'models.json': json } },
    {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: {
        ...metadata(group.name),
        annotations: { 'fineserve.io/plan': `${plan.policy} v${plan.version}`, 'fineserve.io/devices': group.devices.join(',') },
      },
      spec: {
        replicas: 1,
        selector: { matchLabels: { 'app.kubernetes.io/name': 'fineserve', 'fineserve.io/group': group.name } },
        // A new pod needs its own GPUs: with maxSurge 1 it starts beside the old one (no gap in
        // serving) when the cluster has a spare group; maxUnavailable 0 keeps the old one until then.
        strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } },
        template: {
          metadata: {
            labels: podLabels,
            // A ConfigMap change alone restarts nothing; its hash in the pod template makes a new model set a rollout.
            annotations: { 'fineserve.io/config-sha256': createHash('sha256').update(json).digest('hex') },
          },
          spec: {
            // `serve` drains on SIGTERM for up to --drain-timeout; give it that long and a little more.
            terminationGracePeriodSeconds: 60,
            containers: [
              {
                name: 'fineserve',
                image: options.image,
                command: ['fineserve', 'serve', '--config', `${CONFIG_MOUNT}/models.json`, '--host', '0.0.0.0', '--port', String(port), '--drain-timeout', '50'],
                ports: [{ name: 'http', containerPort: port }],
                resources: { requests: { 'nvidia.com/gpu': gpus }, limits: { 'nvidia.com/gpu': gpus } },
                // /health answers 503 while the models load, so no traffic arrives before they are ready.
                readinessProbe: { httpGet: { path: '/health', port: 'http' }, periodSeconds: 5 },
                volumeMounts: [
                  { name: 'config', mountPath: CONFIG_MOUNT, readOnly: true },
                  { name: 'models', mountPath: MODELS_MOUNT, readOnly: true },
                ],
              },
            ],
            volumes: [
              { name: 'config', configMap: { name: group.name } },
              { name: 'models', persistentVolumeClaim: { claimName: options.modelsClaim, readOnly: true } },
            ],
          },
        },
      },
    },
  ];
}

function service(model: string, options: K8sOptions): Record<string, unknown> {
  const name = dnsName(`fineserve-model-${model}`);
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: {
      name,
      ...(options.namespace === undefined ? {} : { namespace: options.namespace }),
      labels: { 'app.kubernetes.io/name': 'fineserve', 'app.kubernetes.io/managed-by': MANAGED_BY },
      annotations: { 'fineserve.io/model': model },
    },
    spec: { selector: { [modelLabel(model)]: 'serving' }, ports: [{ name: 'http', port: 80, targetPort: 'http' }] },
  };
}

/**
 * The manifests of `plan`: per device group a file with its ConfigMap and Deployment, per placed
 * model a file with its Service. Unplaced models get nothing (the caller reports them).
 */
export function planManifests(plan: PlacementPlan, models: readonly K8sModelSpec[], options: K8sOptions): ManifestFile[] {
  const byId = new Map(models.map((m) => [m.id, m]));
  const files: ManifestFile[] = deviceGroups(plan).map((g) => ({ file: `${g.name}.yaml`, objects: deployment(g, serveConfig(g, byId), plan, options) }));
  for (const model of [...new Set(plan.placements.map((p) => p.model))]) {
    files.push({ file: `${dnsName(`fineserve-model-${model}`)}.yaml`, objects: [service(model, options)] });
  }
  return files;
}

/** One file's YAML: its objects as documents separated by `---`. */
export function manifestYaml(file: ManifestFile): string {
  return file.objects.map((o) => stringify(o, { lineWidth: 0 })).join('---\n');
}
