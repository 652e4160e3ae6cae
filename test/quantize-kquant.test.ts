// Q4_K_M files written by quantizeGguf, run in fineserve and in node-llama-cpp 3.22.1 (llama.cpp,
// the independent peer), on the same file:
//   - a llama-100m-shaped model (rows of 768 and 2048, whole Q4_K super-blocks) cut to 2 layers and
//     a 512-token vocabulary, generated with F32 matrices: the K-quant blocks and the mix's Q6_K
//     tensors (layer 1's attn_v and ffn_down, output.weight) are what both engines read. Perplexity
//     on eval.txt must agree within 1 % between the engines; ours against the F32 source is
//     reported (random weights: near-uniform predictions, so the gap is small either way), and the
//     logits must agree as closely as the activations' rounding allows (llama.cpp quantizes them
//     to Q8_K for these types; fineserve keeps them f32).
//   - stories260K (dim 64, no whole super-blocks): what the fallback gives, as the writer documents
//     it, and the same 1 % agreement.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import { FineserveEngine, PeerEngine } from '../bench/engine-cpu/engines.js';
import { generateModel, quantizeGguf, Tokenizer } from '../lib/index.js';
import { fixture } from './fixtures.js';

const WINDOW = 256;

async function perplexities(file: string, tokens: readonly number[], vocab: number): Promise<{ ours: number; peer: number; maxLogitDiff: number; logitSpread: number }> {
  const ours = await FineserveEngine.open(file, { threads: 1, kvFormat: 'f32' });
  const theirs = await PeerEngine.open(file, { threads: 1, kvFormat: 'f32' });
  try {
    const a = await ours.perplexity(tokens, WINDOW);
    const b = await theirs.perplexity(tokens, WINDOW, vocab);
    assert.equal(a.scored, b.scored);
    // Logits after one prefix of 64 tokens, teacher-forced: both engines see the same context.
    const seq = tokens.slice(0, 64);
    const peerRows = await theirs.logits(seq, vocab);
    const [out] = await ours.runner.generate([{ prompt: seq, maxTokens: 1, stopTokens: [] }], { returnPromptLogits: true });
    const mine = out!.promptLogits!;
    const last = peerRows.at(-1)!;
    let maxLogitDiff = 0;
    let lo = Infinity;
    let hi = -Infinity;
    for (let i = 0; i < vocab; ++i) {
      maxLogitDiff = Math.max(maxLogitDiff, Math.abs(mine[i]! - last[i]!));
      lo = Math.min(lo, last[i]!);
      hi = Math.max(hi, last[i]!);
    }
    return { ours: a.perplexity, peer: b.perplexity, maxLogitDiff, logitSpread: hi - lo };
  } finally {
    await theirs.close();
    await ours.close();
  }
}

test('Q4_K_M files: fineserve and node-llama-cpp agree on perplexity (K-quant shape and stories260K fallback)', { timeout: 15 * 60_000 }, async (t) => {
  const tokens = Tokenizer.fromFolder(fixture('hf')).encode(readFileSync(fixture('eval.txt'), 'utf8'));
  const dir = mkdtempSync(join(tmpdir(), 'fineserve-kquant-'));
  try {
    const f32 = join(dir, 'llama-2l-f32.gguf');
    await generateModel({ shape: 'llama-100m', layers: 2, vocab: 512, dtype: 'f32', format: 'gguf', seed: 1, out: f32 });
    const file = join(dir, 'llama-2l-q4_k_m.gguf');
    const written = await quantizeGguf(f32, file, 'q4_k_m');
    const kept = Object.fromEntries(written.kept.map((k) => [k.name, k.type]));
    t.diagnostic(`llama-100m 2 layers q4_k_m: ${written.bytes} bytes, ${written.quantized} tensors Q4_K, others ${JSON.stringify(kept)}`);
    // 2 layers: llama.cpp's use_more_bits picks layer 1 (i >= 7 * 2 / 8) for attn_v and ffn_down.
    assert.deepEqual(
      Object.entries(kept).filter(([, type]) => type !== 'F32').sort(),
      [['blk.1.attn_v.weight', 'Q6_K'], ['blk.1.ffn_down.weight', 'Q6_K'], ['output.weight', 'Q6_K']],
    );
    assert.equal(written.quantized, 1 + 2 * 7 - 2); // token_embd + 7 matrices per layer, less the two Q6_K

    const vocab = 512;
    const k = await perplexities(file, tokens, vocab);
    const source = await FineserveEngine.open(f32, { threads: 1, kvFormat: 'f32' });
    const base = await source.perplexity(tokens, WINDOW);
    t.diagnostic(
      `q4_k_m perplexity: fineserve ${k.ours.toFixed(4)}, node-llama-cpp ${k.peer.toFixed(4)} (ratio ${(k.ours / k.peer).toFixed(5)}); ` +
        `F32 source (fineserve) ${base.perplexity.toFixed(4)}, q4_k_m / F32 ${(k.ours / base.perplexity).toFixed(5)}; ` +
        `last-position logits max |diff| ${k.maxLogitDiff.toFixed(4)} over a spread of ${k.logitSpread.toFixed(3)}`,
    );
    assert.ok(Math.abs(k.ours / k.peer - 1) <= 0.01, `q4_k_m perplexity ${k.ours} vs peer ${k.peer} (1 % allowed)`);
    assert.ok(k.maxLogitDiff <= 0.025 * k.logitSpread, `logits differ by ${k.maxLogitDiff} over a spread of ${k.logitSpread}`);

    // stories260K: rows of 64 are not super-blocks: Q4_K falls back to Q8_0 (llama-quantize: Q5_0),
    // ffn_down (rows of 172, not even blocks of 32) keeps F32 (llama-quantize: F16).
    const stories = join(dir, 'stories-q4_k_m.gguf');
    const s = await quantizeGguf(fixture('stories260K.gguf'), stories, 'q4_k_m');
    assert.equal(s.quantized, 0);
    for (const { name, type } of s.kept) {
      const want = name.endsWith('norm.weight') || name.includes('ffn_down') ? 'F32' : 'Q8_0';
      assert.equal(type, want, name);
    }
    const st = await perplexities(stories, tokens, vocab);
    t.diagnostic(`stories260K q4_k_m (all Q8_0 by the fallback): fineserve ${st.ours.toFixed(4)}, node-llama-cpp ${st.peer.toFixed(4)}`);
    assert.ok(Math.abs(st.ours / st.peer - 1) <= 0.01, `stories q4_k_m perplexity ${st.ours} vs ${st.peer}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
