/**
 * The systems compared: FineServe (ours), the reference FineServe, the baselines, and the
 * ablations, each as (placement, KV policy, local policy). Ablations add one of our components to
 * the Prism-style baseline, so each shows what that component alone is worth.
 * @module
 */
import { planMuxServe } from '../scheduler/baselines/muxserve.js';
import { planPrism } from '../scheduler/baselines/prism.js';
import { planReference } from '../scheduler/baselines/reference.js';
import { planStaticSplit } from '../scheduler/baselines/static-split.js';
import type { CostModel } from '../scheduler/cost-model.js';
import { planFineServe } from '../scheduler/global.js';
import { fcfs } from '../scheduler/local/fcfs.js';
import { fineserveLocal } from '../scheduler/local/fineserve.js';
import { prismLocal, saab } from '../scheduler/local/saab.js';
import type { PlacementPlan, PlanInput } from '../scheduler/types.js';
import type { SimSystem } from './simulator.js';

/** Names of the systems {@link buildSystem} knows. */
export const SYSTEM_NAMES = [
  'fineserve',
  'ours-fused',
  'reference',
  'reference-floor',
  'prism',
  'muxserve',
  'static',
  'ablation-kvslab',
  'ablation-global',
  'ablation-local',
  'ours-layer-pools',
] as const;

/** A system name. */
export type SystemName = (typeof SYSTEM_NAMES)[number];

/** One-line description of each system, for reports. */
export const SYSTEM_NOTES: Readonly<Record<SystemName, string>> = {
  fineserve: 'ours: MME+compute placement, KV Slab (one pool, fullest-first, reserves), EDF local policy with online latency model, prefill and decode as two concurrent jobs per replica',
  'ours-fused': 'ours with prefill chunks fused into decode steps (one job per replica, vLLM chunked prefill) instead of the prefill/decode split',
  reference: 'reference FineServe rules: slab-aware placement once, KV = memory - 1.8 x weights (a device short of its engines\' 2048-token reservations rejects the plan), slab pools split statically by layer count, saab with static batch-1 profile',
  'reference-floor': 'reference FineServe rules with the KV floor (10 % of usable memory) instead of rejection',
  prism: 'Prism-style: one engine per model at the smallest TP that fits, KV-pressure placement, kvcached-style paged KV (8 us per page map), deadline policy with static profile',
  muxserve: 'MuxServe-style: one engine per model on the mesh its rate needs, compute-load placement, unified padded KV blocks, FCFS, prefill and decode as two concurrent jobs per model, adaptive batch scheduling (KV token-block quotas adapted by use every 8 s, prefill jobs first on the SMs)',
  static: 'static partitioning (spart): one vLLM engine per model at the smallest TP that fits, round-robin, KV partitions of its placement share normalised to 0.9, FCFS',
  'ablation-kvslab': 'Prism-style with our KV Slab instead of paged KV',
  'ablation-global': 'Prism-style with our placement instead of KV pressure',
  'ablation-local': 'Prism-style with our local policy instead of its deadline policy',
  'ours-layer-pools': 'ours with the reference\'s KV pools (one per layer count, split at start by configured rates) instead of one KV Slab',
};

/** Builds a system's plan and policies for a scenario. */
export function buildSystem(name: SystemName, costModel: CostModel, input: PlanInput, plans: Partial<Record<'fineserve' | 'prism', PlacementPlan>> = {}): SimSystem {
  const ours = (): PlacementPlan => (plans.fineserve ??= planFineServe(costModel, input));
  const prism = (): PlacementPlan => (plans.prism ??= planPrism(costModel, input));
  switch (name) {
    case 'fineserve':
      // Prefill and decode as two concurrent jobs (MuxServe's split, which it measured): a
      // compute-bound prefill beside a memory-bound decode overlaps where a fused step runs them
      // one after the other; the complementary-demand argument of the paper, inside a replica.
      return { name, plan: ours(), kv: 'slab', policy: fineserveLocal, latency: 'online', splitPrefillDecode: true };
    case 'ours-fused':
      return { name, plan: ours(), kv: 'slab', policy: fineserveLocal, latency: 'online' };
    case 'reference':
      return { name, plan: planReference(costModel, input), kv: 'reference-slab', policy: saab, latency: 'static' };
    case 'reference-floor':
      return { name, plan: planReference(costModel, input, { kvFloor: true }), kv: 'reference-slab', policy: saab, latency: 'static' };
    case 'prism':
      return { name, plan: prism(), kv: 'paged', policy: prismLocal, latency: 'static' };
    case 'muxserve':
      return { name, plan: planMuxServe(costModel, input), kv: 'unified', policy: fcfs, latency: 'static', splitPrefillDecode: true, adaptiveBatching: true };
    case 'static':
      return { name, plan: planStaticSplit(costModel, input), kv: 'static', policy: fcfs, latency: 'static' };
    case 'ablation-kvslab':
      return { name, plan: prism(), kv: 'slab', policy: prismLocal, latency: 'static' };
    case 'ablation-global':
      return { name, plan: ours(), kv: 'paged', policy: prismLocal, latency: 'static' };
    case 'ours-layer-pools':
      return { name, plan: ours(), kv: 'reference-slab', policy: fineserveLocal, latency: 'online', splitPrefillDecode: true };
    case 'ablation-local':
      return { name, plan: prism(), kv: 'paged', policy: fineserveLocal, latency: 'online' };
  }
}
