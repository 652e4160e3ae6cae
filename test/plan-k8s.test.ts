import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import { parseAllDocuments } from 'yaml';

import { readServeConfig } from '../lib/cli/serve.js';
import type { PlacementPlan } from '../lib/scheduler/types.js';
import { runCli } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'fineserve-k8s-'));
const modelsPath = join(dir, 'models.json');
const devicesPath = join(dir, 'devices.json');
// Four GPUs: qwen needs two (TP), the 8B models one each, and chat-fp16's rate wants replicas.
writeFileSync(modelsPath, JSON.stringify([
  { id: 'chat-fp16', family: 'llama-3.1-8b', precision: 'fp16', rate: 6, source: '/models/llama-8b' },
  { id: 'chat-int4', family: 'llama-3.1-8b', precision: 'w4a16', rate: 2 },
  { id: 'qwen', family: 'qwen-3-32b', precision: 'fp8-kv8', rate: 1, slo: { ttftMs: 2000, tpotMs: 100 } },
]));
writeFileSync(devicesPath, JSON.stringify([0, 1, 2, 3].map((i) => ({ id: `gpu${i}`, memoryBytes: 80e9 }))));

type Obj = { kind: string; metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> }; spec?: any; data?: Record<string, string> };

function readManifests(out: string): Obj[] {
  const objects: Obj[] = [];
  for (const file of readdirSync(out)) {
    assert.match(file, /^[a-z0-9-]+\.yaml$/);
    for (const doc of parseAllDocuments(readFileSync(join(out, file), 'utf8'))) {
      assert.deepEqual(doc.errors, [], `${file} parses as YAML`);
      objects.push(doc.toJS() as Obj);
    }
  }
  return objects;
}

test('`plan --k8s` writes a Deployment per device group and a Service per model that match the plan', async () => {
  const out = join(dir, 'k8s');
  const json = runCli(['plan', modelsPath, devicesPath, '--json', '--k8s', out, '--image', 'registry.example/fineserve:0.1.0', '--namespace', 'llm']);
  assert.equal(json.status, 0, json.stderr);
  assert.match(json.stderr, /wrote \d+ manifest files/);
  const plan = JSON.parse(json.stdout) as PlacementPlan;
  const objects = readManifests(out);
  for (const o of objects) assert.equal((o.metadata as { namespace?: string }).namespace, 'llm');

  const deployments = objects.filter((o) => o.kind === 'Deployment');
  const configs = new Map(objects.filter((o) => o.kind === 'ConfigMap').map((o) => [o.metadata.name, o]));
  // Every placement lands in exactly one Deployment whose GPUs include all of its devices, and no
  // device is in two Deployments (a GPU cannot be split between pods).
  const seenDevices = new Set<string>();
  const served = new Map<string, number>();
  for (const d of deployments) {
    const devices = d.metadata.annotations!['fineserve.io/devices']!.split(',');
    for (const dev of devices) {
      assert.ok(!seenDevices.has(dev), `${dev} in two Deployments`);
      seenDevices.add(dev);
    }
    const container = d.spec.template.spec.containers[0];
    assert.equal(container.image, 'registry.example/fineserve:0.1.0');
    assert.deepEqual(container.command.slice(0, 4), ['fineserve', 'serve', '--config', '/etc/fineserve/models.json']);
    assert.equal(container.resources.limits['nvidia.com/gpu'], String(devices.length));
    assert.equal(container.resources.requests['nvidia.com/gpu'], String(devices.length));
    // The pod's config is what `fineserve serve --config` reads: it passes serve's own check.
    const cm = configs.get(d.spec.template.spec.volumes.find((v: { configMap?: unknown }) => v.configMap).configMap.name)!;
    const configPath = join(dir, `${d.metadata.name}.json`);
    writeFileSync(configPath, cm.data!['models.json']!);
    const config = await readServeConfig(configPath);
    assert.deepEqual(config.devices, devices.map((_, i) => `cuda:${i}`));
    const inPlan = plan.placements.filter((p) => devices.includes(p.devices[0]!));
    for (const p of inPlan) for (const dev of p.devices) assert.ok(devices.includes(dev), `${p.model}#${p.replica} spans beyond ${d.metadata.name}`);
    assert.deepEqual(config.models.map((m) => m.id).sort(), [...new Set(inPlan.map((p) => p.model))].sort());
    for (const m of config.models) {
      assert.equal(d.spec.template.metadata.labels[`model.fineserve.io/${m.id}`], 'serving');
      served.set(m.id, (served.get(m.id) ?? 0) + inPlan.filter((p) => p.model === m.id).length);
    }
    assert.equal(d.spec.template.metadata.annotations['fineserve.io/config-sha256'].length, 64);
    const chat = config.models.find((m) => m.id === 'chat-fp16');
    if (chat !== undefined) assert.equal(chat.source, '/models/llama-8b');
    const int4 = config.models.find((m) => m.id === 'chat-int4');
    if (int4 !== undefined) assert.deepEqual([int4.source, int4.precision], ['/models/chat-int4', 'w4a16']);
    const qwen = config.models.find((m) => m.id === 'qwen');
    if (qwen !== undefined) assert.deepEqual(qwen.slo, { ttftMs: 2000, tpotMs: 100 });
  }
  // Each model's replicas, as many as the plan has.
  for (const id of ['chat-fp16', 'chat-int4', 'qwen']) assert.equal(served.get(id), plan.placements.filter((p) => p.model === id).length, id);
  assert.ok(deployments.some((d) => d.metadata.annotations!['fineserve.io/devices']!.split(',').length >= 2), 'the TP group is one pod');

  const services = objects.filter((o) => o.kind === 'Service');
  assert.deepEqual(services.map((s) => s.metadata.annotations!['fineserve.io/model']).sort(), ['chat-fp16', 'chat-int4', 'qwen']);
  for (const s of services) {
    const model = s.metadata.annotations!['fineserve.io/model']!;
    const selected = deployments.filter((d) => Object.entries(s.spec.selector).every(([k, v]) => d.spec.template.metadata.labels[k] === v));
    assert.equal(selected.length, new Set(plan.placements.filter((p) => p.model === model).map((p) => deployments.find((d) => d.metadata.annotations!['fineserve.io/devices']!.split(',').includes(p.devices[0]!))!.metadata.name)).size);
  }
});

test('`plan --k8s` names a missing --image, and writes nothing for a plan that leaves a model unplaced', () => {
  const noImage = runCli(['plan', modelsPath, devicesPath, '--k8s', join(dir, 'none')]);
  assert.equal(noImage.status, 1);
  assert.match(noImage.stderr, /--image/);
  const tiny = join(dir, 'tiny.json');
  writeFileSync(tiny, JSON.stringify([{ id: 'gpu0', memoryBytes: 8e9 }]));
  const out = join(dir, 'unplaced');
  const run = runCli(['plan', modelsPath, tiny, '--k8s', out, '--image', 'x']);
  assert.equal(run.status, 1);
  assert.match(run.stderr, /no manifests written/);
  assert.throws(() => readdirSync(out), /ENOENT/);
});
