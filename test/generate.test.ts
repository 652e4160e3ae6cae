import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';

import { FineserveError, generateModel, Model, ModelError } from '../lib/index.js';
import { runCli } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'fineserve-generate-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('generateModel writes a GGUF file and an HF folder that load with the same shape', async () => {
  const seen: number[] = [];
  const gguf = await generateModel({
    shape: 'tiny',
    format: 'gguf',
    dtype: 'bf16',
    seed: 3,
    out: join(dir, 'tiny.gguf'),
    onProgress: (f) => seen.push(f),
  });
  assert.equal(gguf.path, join(dir, 'tiny.gguf'));
  assert.equal(gguf.bytes, statSync(gguf.path).size);
  assert.ok(gguf.parameters > 100_000);
  assert.equal(seen.at(-1), 1);

  const hf = await generateModel({ shape: 'tiny', format: 'hf', dtype: 'bf16', seed: 3, out: join(dir, 'tiny-hf') });
  assert.equal(hf.parameters, gguf.parameters);
  assert.ok(existsSync(join(hf.path, 'config.json')));

  const a = await Model.load(gguf.path);
  const b = await Model.load(hf.path);
  assert.equal(a.config.ropeStyle, 'interleaved');
  assert.equal(b.config.ropeStyle, 'half-split');
  for (const key of ['vocabSize', 'hiddenSize', 'layers', 'heads', 'kvHeads', 'headDim', 'ropeScaling'] as const) {
    assert.equal(a.config[key], b.config[key], key);
  }
  assert.equal(a.config.ropeScaling, 'llama3');
  assert.equal(a.metadata('fineserve.generated.seed'), '3');
});

test('generateModel is deterministic for a seed and honours layers and vocab', async () => {
  const opts = { shape: 'tiny-qwen2', format: 'gguf', layers: 1, vocab: 300 } as const;
  await generateModel({ ...opts, seed: 9, out: join(dir, 'a.gguf') });
  await generateModel({ ...opts, seed: 9, out: join(dir, 'b.gguf') });
  assert.deepEqual(readFileSync(join(dir, 'a.gguf')), readFileSync(join(dir, 'b.gguf')));
  const m = await Model.load(join(dir, 'a.gguf'));
  assert.equal(m.config.layers, 1);
  assert.equal(m.config.vocabSize, 300);
  assert.equal(m.config.qkvBias, true);
});

test('generateModel rejects bad options by name, and cancels cleanly on abort', async () => {
  await assert.rejects(
    generateModel({ shape: 'gpt-5' as 'tiny', format: 'gguf', out: join(dir, 'x.gguf') }),
    (e: unknown) => e instanceof FineserveError && e.code === 'ERR_GENERATE_INVALID' && /shape/.test(e.message),
  );
  await assert.rejects(
    generateModel({ shape: 'tiny', format: 'gguf', vocab: 2, out: join(dir, 'x.gguf') }),
    (e: unknown) => e instanceof FineserveError && e.code === 'ERR_GENERATE_INVALID' && /vocab/.test(e.message),
  );
  const controller = new AbortController();
  const out = join(dir, 'aborted');
  await assert.rejects(
    generateModel({
      shape: 'llama-100m',
      format: 'hf',
      out,
      signal: controller.signal,
      onProgress: () => controller.abort(new Error('enough')),
    }),
    (e: unknown) => e instanceof ModelError && e.code === 'ERR_MODEL_CANCELLED',
  );
  assert.ok(!existsSync(out));
  assert.ok(!readdirSync(dir).some((f) => f.endsWith('.part')));
});

test('`fineserve generate` writes a model and prints what it wrote', () => {
  const out = join(dir, 'cli.gguf');
  const run = runCli(['generate', '--shape', 'tiny', '--format', 'gguf', '--dtype', 'f16', '--layers', '1', '--out', out]);
  assert.equal(run.status, 0, run.stderr);
  assert.match(run.stdout, /^wrote .*cli\.gguf: \d+ parameters, \d+ bytes$/m);
  assert.ok(statSync(out).size > 0);
  const bad = runCli(['generate', '--shape', 'tiny', '--format', 'onnx', '--out', out]);
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--format/);
});
