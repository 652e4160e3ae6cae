// Issue #16 item 16: precision names mean what a user reads. `fp16`/`bf16`/`fp32` convert the
// weights; `auto` keeps them with an f16 cache, F32 files included; plain `w8a8` runs the f16
// cache the docs give it; Model.precisionName names a GGUF quant file's type; calibration.text
// works for a GGUF file (its tokenizer is inside it).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';

import { Model, ModelError, parsePrecision, quantizeGguf, servedPrecisionName, Tokenizer } from '../lib/index.js';
import { fixture, goldenCases } from './fixtures.js';

const GGUF = fixture('stories260K.gguf');
const HF = fixture('hf');
const TMP = mkdtempSync(join(tmpdir(), 'fineserve-precision-names-'));
after(() => rmSync(TMP, { recursive: true, force: true }));

/** Tensor counts by type, the norms (11 of them, F32 in every file) left out. */
function matrices(m: Model): Record<string, number> {
  const counts = { ...m.weightFormats };
  counts.F32 = (counts.F32 ?? 0) - 11;
  return Object.fromEntries(Object.entries(counts).filter(([, n]) => n !== 0));
}

test('fp16 / bf16 / fp32 convert the weights of an F32 file; norms stay F32', async () => {
  for (const source of [GGUF, HF]) {
    const f32 = await Model.load(source, { precision: 'fp32' });
    // 5 layers x 7 linears + the (tied) embedding.
    assert.deepEqual(matrices(f32), { F32: 36 }, source);
    for (const [name, type, bytes] of [['fp16', 'F16', 2], ['bf16', 'BF16', 2]] as const) {
      const m = await Model.load(source, { precision: name });
      assert.deepEqual(matrices(m), { [type]: 36 }, `${source} ${name}`);
      assert.equal(m.precision.weights, name === 'fp16' ? 'f16' : 'bf16');
      assert.equal(m.precisionName, name);
      // Only the norms' 11 x 64 floats stay 4 bytes wide.
      const normBytes = 11 * 64 * 4;
      assert.equal(m.weightBytes - normBytes, ((f32.weightBytes - normBytes) / 4) * bytes, `${source} ${name} weight bytes`);
      // A rounded copy: perplexity within 1 % of fp32's over the fixture's prompts, not identical.
      const tokens = goldenCases().flatMap((c) => [...c.prompt_ids, ...c.greedy_ids]);
      const [a, b] = [await f32.perplexity(tokens, { kvFormat: 'f32' }), await m.perplexity(tokens, { kvFormat: 'f32' })];
      assert.notEqual(b.nllSum, a.nllSum, `${source} ${name}: the weights were not converted`);
      assert.ok(Math.abs(b.perplexity / a.perplexity - 1) < 0.01, `${source} ${name}: ppl ${b.perplexity} vs ${a.perplexity}`);
    }
  }
});

test("'auto' keeps the file's weights and runs an f16 cache, as documented, also on F32 files", async () => {
  assert.deepEqual(parsePrecision('auto'), { weights: 'source', activations: 'f32', kv: 'f16' });
  const m = await Model.load(GGUF);
  assert.deepEqual(matrices(m), { F32: 36 });
  assert.equal(m.precision.kv, 'f16');
  assert.equal(m.precisionName, 'fp32-kv16');
  assert.deepEqual(parsePrecision(m.precisionName as 'fp32-kv16'), { weights: 'f32', activations: 'f32', kv: 'f16' });
  assert.equal((await Model.load(GGUF, { precision: 'auto-kv8' })).precision.kv, 'fp8');
});

test("plain 'w8a8' runs the f16 cache its docs give it; '-kvi8' asks for int8", async () => {
  const m = await Model.load(GGUF, { precision: 'w8a8' });
  assert.equal(m.precision.kv, 'f16');
  assert.equal(m.precisionName, 'w8a8');
  assert.equal(parsePrecision('w8a8-kvi8').kv, 'int8');
  assert.equal(parsePrecision('fp32').kv, 'f32');
  assert.equal(parsePrecision('bf16').kv, 'bf16');
  for (const base of ['fp16', 'fp8', 'w4a16', 'w4a8'] as const) assert.equal(parsePrecision(base).kv, 'f16', base);
});

test('Model.precisionName names a GGUF quant file by its type, not fp16', async () => {
  for (const type of ['q4_0', 'q8_0'] as const) {
    const path = join(TMP, `stories-${type}.gguf`);
    await quantizeGguf(GGUF, path, type);
    const m = await Model.load(path);
    assert.ok((m.weightFormats[type.toUpperCase()] ?? 0) > 0, JSON.stringify(m.weightFormats));
    assert.equal(m.precisionName, type);
    assert.equal((await Model.load(path, { precision: 'auto-kvi8' })).precisionName, `${type}-kvi8`);
    // fp16 would have to dequantize the file: refused, naming the tensor, the type and the way out.
    await assert.rejects(Model.load(path, { precision: 'fp16' }), (e: unknown) => e instanceof ModelError && /Q[48]_0/.test(e.message) && /'auto'/.test(e.message) && e.message.includes(path));
  }
  assert.equal(servedPrecisionName(parsePrecision('auto'), { Q4_K: 20, Q6_K: 5, F32: 11 }), 'q4_k');
  assert.equal(servedPrecisionName(parsePrecision('auto'), { BF16: 36, F32: 11 }), 'bf16-kv16');
  assert.equal(servedPrecisionName(parsePrecision('w4a16-kv8'), { W4A16: 35, F32: 12 }), 'w4a16-kv8');
});

test('calibration.text works for a GGUF file, through the tokenizer it embeds', async () => {
  const text = ['Once upon a time, there was a little boy named Sam.', 'He felt sad. Then his dog, Max, ran to the bush.'];
  const fromText = await Model.load(GGUF, { precision: 'w8a8', calibration: { text } });
  const tokenizer = Tokenizer.forModel(await Model.load(GGUF));
  const fromTokens = await Model.load(GGUF, { precision: 'w8a8', calibration: { tokens: text.map((t) => tokenizer.encode(t)) } });
  const uncalibrated = await Model.load(GGUF, { precision: 'w8a8' });
  const tokens = goldenCases().flatMap((c) => [...c.prompt_ids, ...c.greedy_ids]);
  const [a, b, c] = [await fromText.perplexity(tokens), await fromTokens.perplexity(tokens), await uncalibrated.perplexity(tokens)];
  assert.equal(a.nllSum, b.nllSum, 'the text calibrates exactly as its tokens do');
  assert.notEqual(a.nllSum, c.nllSum, 'the calibration was used');
  // The HF folder's text calibration still goes through its tokenizer.json.
  await Model.load(HF, { precision: 'w8a8', calibration: { text } });
  await assert.rejects(Model.load(GGUF, { precision: 'fp16', calibration: { text } }), (e: unknown) => e instanceof ModelError && e.code === 'ERR_MODEL_PRECISION');
});
