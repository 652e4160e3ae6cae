// Runners of two models sharing one ThreadPool, as co-located models on one CPU do: generating at
// the same time (their steps queued together) they give the golden stories260K continuations.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Model, ModelRunner } from '../lib/index.js';
import { loadNative } from '../lib/native/loader.js';
import { createThreadPool } from '../lib/thread-pool.js';
import { fixture, goldenCases } from './fixtures.js';

const requests = () => goldenCases().map((c) => ({ prompt: c.prompt_ids, maxTokens: 64, stopTokens: [1, 2] }));
const generated = (out: { tokens: number[]; finishReason: string }) =>
  out.finishReason === 'stop' ? out.tokens.slice(0, -1) : out.tokens;

test('two runners on one shared pool generate concurrently and give the golden outputs', async () => {
  const golden = goldenCases().map((c) => c.greedy_ids);
  for (const threads of [1, 2]) {
    const pool = createThreadPool(threads);
    assert.ok(pool.size >= 1 && pool.size <= threads, `size ${pool.size}`);
    // The same weights as two models: the GGUF file and the HF folder.
    const runners = await Promise.all(
      [fixture('stories260K.gguf'), fixture('hf')].map(async (p) => ModelRunner.create(await Model.load(p), { pool })),
    );
    // One request at a time per runner, so each runner takes many steps that interleave.
    const outputs = await Promise.all(
      runners.map(async (r) => {
        const out: number[][] = [];
        for (const req of requests()) out.push(generated((await r.generate([req]))[0]!));
        return out;
      }),
    );
    for (const out of outputs) assert.deepEqual(out, golden, `threads ${threads}`);
    // And batched, both at once.
    const batched = await Promise.all(runners.map((r) => r.generate(requests())));
    for (const out of batched) assert.deepEqual(out.map(generated), golden, `threads ${threads}, batched`);
  }
});

test('ThreadPool: 0 is every usable core, more is clamped, and a non-pool is refused', async () => {
  const { ThreadPool } = loadNative().binding;
  const all = new ThreadPool(0).size;
  assert.ok(all >= 1);
  assert.equal(new ThreadPool(all + 100).size, all);
  assert.throws(() => new ThreadPool(-1), RangeError);
  assert.throws(() => new ThreadPool(1.5), RangeError);
  const model = await Model.load(fixture('stories260K.gguf'));
  assert.throws(() => ModelRunner.create(model, { pool: {} as never }), {
    name: 'TypeError',
    message: 'pool must be a native ThreadPool',
  });
});
