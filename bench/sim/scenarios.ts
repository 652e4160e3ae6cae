/**
 * The reproduction's scenarios: the paper's model mix (Llama-3.1-8B in FP16, W4A16, FP8-KV8 and
 * W4A8-KV4, a 32B and a 70B) on 2, 4, 8 and 16 simulated H100s, Zipf popularity, Poisson arrivals.
 * @module
 */
import type { DeviceSpec, ModelSpec } from '../../lib/scheduler/types.js';
import { generateWorkload, type Arrival } from '../../lib/sim/workload.js';

/** One point of the sweep. */
export interface Scenario {
  readonly gpus: number;
  /** Total requests per second over all models. */
  readonly rate: number;
  readonly sloScale: number;
  readonly durationMs: number;
  readonly seed: number;
}

const EIGHT_B = ['fp16', 'w4a16', 'fp8-kv8', 'w4a8-kv4'].map((precision) => ({ family: 'llama-3.1-8b', precision }));
const QWEN = { family: 'qwen-3-32b', precision: 'fp8-kv8' };
const LLAMA_70B = { family: 'llama-3.1-70b', precision: 'w4a16' };

/**
 * Models for a GPU count: on 2 GPUs the four 8B variants and Qwen3-32B (the paper's Fig. 1 mix
 * plus FP16); from 4 GPUs on, one copy of {four 8B, 32B, 70B} per 4 GPUs (each copy is a distinct
 * set of models with its own popularity).
 */
export function scenarioModels(gpus: number): ModelSpec[] {
  const sets = gpus === 2 ? [[...EIGHT_B, QWEN]] : Array.from({ length: gpus / 4 }, () => [...EIGHT_B, QWEN, LLAMA_70B]);
  return sets.flatMap((set, copy) => set.map((m) => ({ id: `${m.family}-${m.precision}#${copy}`, ...m, rate: 0 })));
}

/** H100s, 80 GB, eight per node. */
export function scenarioDevices(gpus: number): DeviceSpec[] {
  return Array.from({ length: gpus }, (_, i) => ({ id: `h100-${i}`, memoryBytes: 80e9, speedClass: 'h100', node: Math.floor(i / 8) }));
}

/** Arrivals and the models with their expected rates set to what the workload generates. */
export function materialize(s: Scenario): { models: ModelSpec[]; devices: DeviceSpec[]; arrivals: Arrival[] } {
  const base = scenarioModels(s.gpus);
  const arrivals = generateWorkload({ models: base.map((m) => m.id), totalRate: s.rate, zipf: 1, durationMs: s.durationMs, seed: s.seed });
  const counts = new Map<string, number>();
  for (const a of arrivals) counts.set(a.model, (counts.get(a.model) ?? 0) + 1);
  // Planners get the rates the workload actually has (as an operator would configure them).
  const models = base.map((m) => ({ ...m, rate: (counts.get(m.id) ?? 0) / (s.durationMs / 1000) }));
  return { models, devices: scenarioDevices(s.gpus), arrivals };
}
