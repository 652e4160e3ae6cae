/**
 * `fineserve plan models.json devices.json`: the global scheduler's placement, printed
 * (`fineserve profile`, which writes the profile CSV schema, is lib/cli/profile.ts).
 * @module
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { planMuxServe } from '../scheduler/baselines/muxserve.js';
import { planPrism } from '../scheduler/baselines/prism.js';
import { planReference } from '../scheduler/baselines/reference.js';
import { planStaticSplit } from '../scheduler/baselines/static-split.js';
import { CostModel } from '../scheduler/cost-model.js';
import { PlanError } from '../scheduler/errors.js';
import { planFineServe } from '../scheduler/global.js';
import { parseProfileCsv, type ProfileRow } from '../scheduler/profiles.js';
import type { DeviceSpec, PlacementPlan } from '../scheduler/types.js';
import { type K8sModelSpec, manifestYaml, planManifests } from './k8s.js';

/** Usage lines the main CLI appends to its own. */
export const PLAN_USAGE = `  plan MODELS.json DEVICES.json [--policy fineserve|reference|prism|muxserve|static] [--slo-scale N]
       [--profiles FILE.csv] [--json] [--k8s DIR --image IMAGE [--models-claim PVC] [--namespace NS]]
                     place models on devices; MODELS.json: [{ "id", "family" (e.g. llama-3.1-8b),
                     "precision" (e.g. w4a16), "rate" (req/s), "slo"?: { "ttftMs", "tpotMs" },
                     "priority"?, "source"? }]; DEVICES.json: [{ "id", "memoryBytes", "node"? }]; costs
                     from --profiles (the CSV schema \`profile\` writes) or the reference H100 profiles
                     in ../shared/reference beside a checkout; --k8s writes Kubernetes manifests of the
                     plan to DIR (a Deployment per device group running \`fineserve serve\`, a Service
                     per model; "source" is the model's path in the pod, default /models/ID on PVC
                     --models-claim, default fineserve-models)`;

function readJson(path: string, field: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new PlanError('ERR_PLAN_INPUT', path, 'file', `cannot read: ${(err as Error).message}`);
  }
  try {
    const value = JSON.parse(text) as unknown;
    const list = Array.isArray(value) ? value : (value as Record<string, unknown>)[field];
    if (!Array.isArray(list)) throw new PlanError('ERR_PLAN_INPUT', path, field, 'expected a JSON array, or an object with an array under this key');
    return list;
  } catch (err) {
    if (err instanceof PlanError) throw err;
    throw new PlanError('ERR_PLAN_INPUT', path, 'file', `not JSON: ${(err as Error).message}`);
  }
}

/** The human-readable plan. */
export function formatPlan(plan: PlacementPlan): string {
  const lines = [`plan ${plan.policy} v${plan.version} (KV: ${plan.kvLayout}), score ${plan.score.toFixed(1)}`];
  for (const d of plan.devices) {
    lines.push(`${d.id.padEnd(10)} weights ${(d.weightBytes / 1e9).toFixed(1)} GB · KV ${(d.kvBytes / 1e9).toFixed(1)} GB · ${d.models.join(', ') || '(empty)'}`);
  }
  for (const p of plan.placements) {
    lines.push(
      `  ${`${p.model}#${p.replica}`.padEnd(28)} on ${p.devices.join('+')} tp${p.tp} · ${p.rate.toFixed(2)} req/s · batch ${p.minBatch}..${p.maxBatch} · ` +
        `SLO ${p.sloMs.toFixed(0)} ms · reserve ${(p.reserveBytes / 1e9).toFixed(2)} GB`,
    );
  }
  for (const u of plan.unplaced) lines.push(`  UNPLACED ${u.model}: ${u.reason}`);
  return lines.join('\n');
}

/** `fineserve plan`. */
export function planCommand(args: readonly string[]): number {
  const { values, positionals } = parseArgs({
    args: [...args],
    options: {
      policy: { type: 'string' },
      'slo-scale': { type: 'string' },
      profiles: { type: 'string' },
      json: { type: 'boolean' },
      k8s: { type: 'string' },
      image: { type: 'string' },
      'models-claim': { type: 'string', default: 'fineserve-models' },
      namespace: { type: 'string' },
    },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length !== 2) {
    console.error(`fineserve plan: expected MODELS.json and DEVICES.json\n\nusage:\n${PLAN_USAGE}`);
    return 2;
  }
  const [modelsPath, devicesPath] = positionals as [string, string];
  const models = readJson(modelsPath, 'models') as K8sModelSpec[];
  if (values.k8s !== undefined && values.image === undefined) throw new PlanError('ERR_PLAN_INPUT', '--image', 'value', '--k8s needs --image, the container image with fineserve installed');
  const devices = readJson(devicesPath, 'devices') as DeviceSpec[];
  const scaleText = values['slo-scale'];
  const sloScale = scaleText === undefined ? undefined : Number(scaleText);
  if (sloScale !== undefined && !(sloScale > 0)) throw new PlanError('ERR_PLAN_INPUT', '--slo-scale', 'value', `must be a number > 0, got "${scaleText}"`);
  const input = { models, devices, ...(sloScale !== undefined && { sloScale }) };
  // An installed package has no ../shared beside it: --profiles gives the costs instead.
  const costModel = values.profiles === undefined ? CostModel.reference() : new CostModel(readProfiles(values.profiles));
  const policy = values.policy ?? 'fineserve';
  const planners: Record<string, () => PlacementPlan> = {
    fineserve: () => planFineServe(costModel, input),
    reference: () => planReference(costModel, input),
    prism: () => planPrism(costModel, input),
    muxserve: () => planMuxServe(costModel, input),
    static: () => planStaticSplit(costModel, input),
  };
  const planner = planners[policy];
  if (planner === undefined) throw new PlanError('ERR_PLAN_INPUT', '--policy', 'value', `unknown policy "${policy}" (known: ${Object.keys(planners).join(', ')})`);
  const plan = planner();
  console.log(values.json === true ? JSON.stringify(plan, null, 2) : formatPlan(plan));
  if (plan.unplaced.length > 0) {
    if (values.k8s !== undefined) console.error(`fineserve plan: no manifests written to ${values.k8s}: the plan leaves ${plan.unplaced.length} model(s) unplaced`);
    return 1;
  }
  if (values.k8s !== undefined) writeManifests(values.k8s, plan, models, values.image!, values['models-claim'], values.namespace);
  return 0;
}

function writeManifests(dir: string, plan: PlacementPlan, models: readonly K8sModelSpec[], image: string, modelsClaim: string, namespace: string | undefined): void {
  const files = planManifests(plan, models, { image, modelsClaim, ...(namespace === undefined ? {} : { namespace }) });
  mkdirSync(dir, { recursive: true });
  for (const f of files) writeFileSync(join(dir, f.file), manifestYaml(f));
  // stderr, so that --json stays one JSON document on stdout.
  console.error(`wrote ${files.length} manifest files to ${dir}: kubectl apply -f ${dir}`);
}

function readProfiles(path: string): ProfileRow[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new PlanError('ERR_PROFILE_MISSING', path, 'file', (err as Error).message);
  }
  return parseProfileCsv(text, path);
}
