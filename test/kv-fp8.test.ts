// The fp8 KV cache end to end on stories260K: V plain E4M3, K as E4M3 of its distance to a
// per-block per-channel reference (the block's first K row in f16; cpp/core/kv/kv_format.h).
// Perplexity on eval.txt stays within 1.5 % of the fp32 model with an f32 cache, with fp32 and
// with fp8 weights; the scores do not depend on the prefill chunking (a row's code depends only on
// its block's first row and itself); and the reference costs what the layout says. Batched against
// alone, greedy and seeded, is test/kv-int4.test.ts's loop over every format. One thread.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { KvPool, Model, Tokenizer, kvTokenBytes } from '../lib/index.js';
import { fixture } from './fixtures.js';

const WINDOW = 512;

function evalTokens(): number[] {
  return Tokenizer.fromFolder(fixture('hf')).encode(readFileSync(fixture('eval.txt'), 'utf8'));
}

test('fp8 KV: perplexity on eval.txt within +1.5 % of fp32 (fp32 and fp8 weights), identical for any chunking', { timeout: 180_000 }, async () => {
  const tokens = evalTokens();
  const fp32 = await Model.load(fixture('hf'), { precision: 'fp32' });
  const base = (await fp32.perplexity(tokens, { kvFormat: 'f32', threads: 1, window: WINDOW })).perplexity;
  for (const precision of ['fp32-kv8', 'fp8-kv8'] as const) {
    const model = await Model.load(fixture('hf'), { precision });
    assert.equal(model.precision.kv, 'fp8');
    const r = await model.perplexity(tokens, { kvFormat: 'fp8', threads: 1, window: WINDOW });
    const delta = (r.perplexity / base - 1) * 100;
    assert.ok(delta <= 1.5, `${precision}: +${delta.toFixed(3)} % perplexity (target <= 1.5 %)`);
  }
  // The cache is really fp8: it differs from f32's, by far less than plain E4M3 K's +2.7 %.
  const f8 = (await fp32.perplexity(tokens.slice(0, 300), { kvFormat: 'fp8', threads: 1, window: WINDOW, chunk: 128 })).perplexity;
  const f32 = (await fp32.perplexity(tokens.slice(0, 300), { kvFormat: 'f32', threads: 1, window: WINDOW, chunk: 128 })).perplexity;
  assert.notEqual(f8, f32);
  // The same scores whether the forward runs 128 tokens a step, 5 or 1 (decode-like): blocks of 16
  // are filled across step boundaries at every offset.
  for (const chunk of [5, 1, 16, 17]) {
    const r = await fp32.perplexity(tokens.slice(0, 300), { kvFormat: 'fp8', threads: 1, window: WINDOW, chunk });
    assert.equal(r.perplexity, f8, `chunk ${chunk}`);
  }
});

test('fp8 KV: the layout keeps K references per block and KV head, and kvTokenBytes counts them', () => {
  const pool = KvPool.create({ poolBytes: 256 * 2 ** 20, slabBytes: 32 * 2 ** 20 });
  for (const [headDim, tokensPerBlock] of [[8, 16], [64, 16], [128, 16], [128, 5]] as const) {
    const geometry = { tokensPerBlock, layers: 3, kvHeads: 2, headDim, format: 'fp8' as const, scaleBytes: 0 };
    const layout = pool.layout(pool.addModel({ name: `fp8-${headDim}-${tokensPerBlock}`, geometry }));
    // K: rows then 2 heads x headDim f16 references; V: rows alone.
    assert.ok(layout.regionBytes >= layout.scaleOffset + 2 * 2 * headDim, 'K region holds the references');
    assert.equal(layout.vRegionBytes, Math.ceil((2 * tokensPerBlock * headDim) / 64) * 64);
    assert.equal(kvTokenBytes(geometry), layout.tokenBytes);
    assert.equal(layout.tokenBytes, Math.floor((3 * 2 * (2 * tokensPerBlock * headDim + 2 * headDim)) / tokensPerBlock));
  }
  // Llama-3.1-8B's shape: 32 layers x 8 heads x (256 B of E4M3 + 256 B of references / 16 tokens).
  assert.equal(kvTokenBytes({ tokensPerBlock: 16, layers: 32, kvHeads: 8, headDim: 128, format: 'fp8' }), 65536 + 4096);
});
