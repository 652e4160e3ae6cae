import assert from 'node:assert/strict';
import { test } from 'node:test';

import { CostModel } from '../lib/scheduler/cost-model.js';
import { cheapestVictim, fcfs, fineserveLocal, prismLocal, saab, type ModelSnapshot, type RunningSequence, type WaitingRequest } from '../lib/scheduler/local/index.js';

const latency = CostModel.reference().entry('llama-3.1-8b', 'fp16', 1).latency;

function waiting(id: number, arrivalMs: number, promptTokens: number, sloMs = 1000, priority = 0): WaitingRequest {
  return { id, arrivalMs, promptTokens, deadlineMs: arrivalMs + sloMs, priority };
}
function decoding(id: number, context: number, priority = 0, blocks = Math.ceil(context / 16)): RunningSequence {
  return { id, arrivalMs: 0, deadlineMs: 1000, priority, promptTokens: context - 10, decodedTokens: 11, computedTokens: context, targetTokens: context - 10 + 10, blocks, started: true };
}
function snap(over: Partial<ModelSnapshot>): ModelSnapshot {
  return {
    nowMs: 0,
    waiting: [],
    running: [],
    kv: { freeBlocks: 100_000, tokensPerBlock: 16 },
    limits: { maxBatch: 64, maxBatchTokens: 2048, minBatch: 1 },
    slo: { ttftMs: 1000 },
    latency,
    ttftPerTokenMs: 0.05,
    ...over,
  };
}

test('saab drops what cannot meet its deadline alone, shrinks by removing the longest prompt, dispatches in queue order', () => {
  // 0.05 ms per prompt token at batch 1 (the static figure saab uses).
  const s = snap({
    nowMs: 1000,
    waiting: [waiting(5, 0, 300, 1010), waiting(1, 0, 500, 1040), waiting(2, 990, 400, 100), waiting(3, 995, 1200, 100), waiting(4, 999, 100, 100)],
  });
  const d = saab(s);
  assert.deepEqual(d.drop, [5], 'alone it would finish at 1015 > 1010');
  // All four: 2200 tokens finish at 1110 > 1040; without 3 (1200): 1050 > 1040; without 1 too: 1025, on time.
  assert.deepEqual(d.admit, [2, 4]);
  assert.deepEqual(d.prefill.map((c) => c.id), [2, 4]);
  // Prism's variant keeps, in queue order, each request whose cumulative finish meets its own deadline.
  assert.deepEqual(prismLocal(s).admit, [1, 2, 4]);
});

test('saab dispatches nothing with more than three requests already in prefill', () => {
  const inPrefill = [1, 2, 3, 4].map((id) => ({ ...decoding(id, 100), computedTokens: 0, targetTokens: 100, blocks: 0, started: false }));
  const d = saab(snap({ running: inPrefill, waiting: [waiting(9, 0, 10, 10_000)] }));
  assert.deepEqual(d.admit, []);
  assert.deepEqual(d.drop, []);
});

test('fcfs admits in arrival order up to the batch limit and drops nothing', () => {
  const d = fcfs(snap({ limits: { maxBatch: 2, maxBatchTokens: 2048, minBatch: 1 }, waiting: [waiting(1, 0, 5000, 1), waiting(2, 1, 10), waiting(3, 2, 10)] }));
  assert.deepEqual(d.admit, [1, 2]);
  assert.deepEqual(d.drop, []);
});

test('ours orders by deadline, not arrival, and never makes an on-time sequence late', () => {
  const s = snap({ nowMs: 0, waiting: [waiting(1, 0, 1800, 5000), waiting(2, 1, 200, 60)] });
  const d = fineserveLocal(s);
  assert.deepEqual(d.admit, [2, 1], 'the tight deadline goes first');
  assert.equal(d.prefill[0]!.id, 2);
  // An urgent newcomer that would push an admitted on-time prefill past its deadline waits.
  const inEngine = { ...decoding(7, 2000), computedTokens: 0, targetTokens: 2000, blocks: 0, started: false, deadlineMs: 60 };
  const crowded = fineserveLocal(snap({ nowMs: 0, running: [inEngine], waiting: [waiting(8, 0, 2000, 55)] }));
  assert.ok(!crowded.admit.includes(8) || crowded.drop.includes(8));
});

test('ours keeps a step within the TPOT SLO by shrinking the prefill chunk', () => {
  const running = Array.from({ length: 32 }, (_, i) => decoding(100 + i, 600));
  const s = snap({ running, slo: { ttftMs: 10_000, tpotMs: 30 }, waiting: [waiting(1, 0, 1500, 10_000)] });
  const d = fineserveLocal(s);
  assert.deepEqual(d.admit, [1]);
  assert.equal(d.decode.length, 32);
  const chunk = d.prefill.find((c) => c.id === 1)!.tokens;
  assert.ok(chunk >= 64 && chunk < 1500, `chunk ${chunk}`);
  const free = fineserveLocal({ ...s, slo: { ttftMs: 10_000 } });
  assert.equal(free.prefill.find((c) => c.id === 1)!.tokens, 1500, 'without a TPOT SLO the whole prompt fits the 2048 budget');
});

test('ours admits only what the KV can hold; saab, like the reference with KV slab on, does not check', () => {
  const s = snap({ kv: { freeBlocks: 40, tokensPerBlock: 16 }, waiting: [waiting(1, 0, 1000, 10_000)] });
  assert.deepEqual(fineserveLocal(s).admit, []);
  assert.deepEqual(saab(s).admit, [1]);
});

test('when a decode needs a block and none is free, ours evicts the lowest-priority, least-computed sequence; vLLM the last admitted', () => {
  // Each sequence sits exactly at a block boundary: every decode needs one new block.
  const running = [decoding(1, 320, 1), decoding(2, 160, 0), decoding(3, 480, 0)];
  const s = snap({ running, kv: { freeBlocks: 1, tokensPerBlock: 16 } });
  assert.deepEqual(fineserveLocal(s).preempt, [2]);
  assert.deepEqual(saab(s).preempt, [3]);
  assert.equal(cheapestVictim(running).id, 2);
});

test('policies are pure: the same frozen snapshot gives the same decision', () => {
  const freeze = <T>(x: T): T => {
    if (x !== null && typeof x === 'object') {
      for (const v of Object.values(x)) freeze(v);
      Object.freeze(x);
    }
    return x;
  };
  const s = snap({ nowMs: 100, running: [decoding(1, 300), decoding(2, 40)], waiting: [waiting(3, 10, 700), waiting(4, 20, 90)] });
  const { latency: lm, ...rest } = s;
  const frozen = { ...freeze(rest), latency: lm } as ModelSnapshot;
  for (const policy of [saab, prismLocal, fcfs, fineserveLocal]) assert.deepEqual(policy(frozen), policy(frozen));
});

test('ours: on a time-sliced device the TPOT guard also cuts a prefill-only model\'s chunk while a co-located model decodes', () => {
  const prefilling: RunningSequence = { id: 1, arrivalMs: 0, deadlineMs: 10_000, priority: 0, promptTokens: 2000, decodedTokens: 0, computedTokens: 0, targetTokens: 2000, blocks: 0, started: false };
  const base = { running: [prefilling], slo: { ttftMs: 10_000, tpotMs: 20 } };
  const alone = fineserveLocal(snap(base));
  const shared = fineserveLocal(snap({ ...base, coLocatedDecoding: true }));
  assert.equal(alone.prefill[0]!.tokens, 2000, 'nobody decodes: the whole budget');
  const chunk = shared.prefill[0]!.tokens;
  assert.ok(chunk < 2000 && chunk >= 64, `a co-located decode caps the chunk (${chunk})`);
  assert.ok(latency.prefillMs(1, chunk) <= 20, 'the step fits the TPOT SLO');
});

test('ours: the TPOT guard lets a first sequence in even when one decode step alone exceeds the SLO', () => {
  const d = fineserveLocal(snap({ waiting: [waiting(1, 0, 100, 10_000)], slo: { ttftMs: 10_000, tpotMs: 0.001 } }));
  assert.deepEqual(d.admit, [1]);
});
