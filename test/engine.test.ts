// Loading models and generating from token ids through the public API, on the real stories260K
// fixture against its golden outputs. One thread, as for every test on this tiny model.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ExecutorError, FineserveError, Model, ModelError, ModelRunner } from '../lib/index.js';
import { fixture, goldenCases } from './fixtures.js';

const GGUF = fixture('stories260K.gguf');
const HF = fixture('hf');

test('a GGUF file and an HF folder load to the same configuration, with progress', async () => {
  const seen: number[] = [];
  const gguf = await Model.load(GGUF, { onProgress: (f) => seen.push(f) });
  const hf = await Model.load(HF);
  assert.equal(gguf.format, 'gguf');
  assert.equal(hf.format, 'safetensors');
  for (const m of [gguf, hf]) {
    assert.equal(m.config.architecture, 'llama');
    assert.equal(m.config.hiddenSize, 64);
    assert.equal(m.config.layers, 5);
    assert.equal(m.config.heads, 8);
    assert.equal(m.config.kvHeads, 4);
    assert.equal(m.config.vocabSize, 512);
    assert.ok(m.config.tiedEmbeddings);
  }
  assert.equal(gguf.config.ropeStyle, 'interleaved');
  assert.equal(hf.config.ropeStyle, 'half-split');
  assert.ok(seen.length > 2, 'progress was reported');
  assert.deepEqual(seen, [...seen].sort((a, b) => a - b), 'progress only grows');
  assert.equal(seen.at(-1), 1);
  assert.equal(gguf.metadata('general.architecture'), 'llama');
});

test('golden greedy continuations from both formats, one request at a time and batched', async () => {
  const cases = goldenCases();
  for (const source of [GGUF, HF]) {
    // fp32: the golden logits are the f32 reference's (the default 'auto' runs an f16 cache).
    const runner = ModelRunner.create(await Model.load(source, { precision: 'fp32' }), { threads: 1 });
    for (const c of cases) {
      const [out] = await runner.generate([{ prompt: c.prompt_ids, maxTokens: 64, stopTokens: [1, 2] }], {
        returnPromptLogits: true,
      });
      assert.ok(out);
      const generated = out.finishReason === 'stop' ? out.tokens.slice(0, -1) : out.tokens;
      assert.deepEqual(generated, c.greedy_ids, `${source}: "${c.prompt}"`);
      for (const [id, want] of c.last_prompt_logits_top5) {
        assert.ok(Math.abs(out.promptLogits![id]! - want) <= 1e-4 * Math.abs(want) + 1e-5, `logit ${id}`);
      }
    }
    const batched = await runner.generate(
      cases.map((c) => ({ prompt: c.prompt_ids, maxTokens: 64, stopTokens: [1, 2] })),
    );
    batched.forEach((out, i) => {
      const generated = out.finishReason === 'stop' ? out.tokens.slice(0, -1) : out.tokens;
      assert.deepEqual(generated, cases[i]!.greedy_ids);
    });
    assert.equal(runner.pool.stats().models[0]?.liveBlocks, 0, 'every block is freed afterwards');
  }
});

test('sampling with a seed repeats exactly, alone or batched, and returns logprobs', async () => {
  const runner = ModelRunner.create(await Model.load(GGUF), { threads: 1 });
  const prompt = goldenCases()[1]!.prompt_ids;
  const sampling = { temperature: 0.9, topP: 0.95, seed: 42, logprobs: 3 };
  const [alone] = await runner.generate([{ prompt, maxTokens: 40, sampling }]);
  const batch = await runner.generate([
    { prompt: [1, 403], maxTokens: 10, sampling: { temperature: 1, seed: 7 } },
    { prompt, maxTokens: 40, sampling },
  ]);
  assert.deepEqual(batch[1]?.tokens, alone?.tokens);
  const [other] = await runner.generate([{ prompt, maxTokens: 40, sampling: { ...sampling, seed: 43 } }]);
  assert.notDeepEqual(other?.tokens, alone?.tokens);
  assert.equal(alone?.topLogprobs.length, alone?.tokens.length);
  for (const [i, top] of (alone?.topLogprobs ?? []).entries()) {
    assert.equal(top.length, 3);
    assert.ok(top[0]!.logprob >= top[1]!.logprob && top[1]!.logprob >= top[2]!.logprob);
    assert.ok(alone!.logprobs[i]! <= 0);
  }
});

test('bad input is refused with typed errors that name the problem', async () => {
  await assert.rejects(Model.load('/nonexistent/model.gguf'), (err: unknown) => {
    assert.ok(err instanceof ModelError);
    assert.equal(err.code, 'ERR_MODEL_NOT_FOUND');
    assert.match(err.message, /\/nonexistent\/model\.gguf/);
    return true;
  });
  const runner = ModelRunner.create(await Model.load(GGUF), { threads: 1 });
  await assert.rejects(runner.generate([{ prompt: new Array<number>(2040).fill(5), maxTokens: 20 }]), (err: unknown) => {
    assert.ok(err instanceof ExecutorError);
    assert.match(err.message, /requests\[0\]: 2040 prompt tokens \+ maxTokens 20 exceed the model's context of 2048/);
    return true;
  });
  await assert.rejects(runner.generate([{ prompt: [1, 9999], maxTokens: 2 }]), /outside the vocabulary of 512/);
  await assert.rejects(runner.generate([{ prompt: [1], maxTokens: 2, sampling: { topP: 2 } }]), (err: unknown) => {
    assert.ok(err instanceof ExecutorError);
    assert.equal(err.code, 'ERR_SAMPLING_INVALID');
    return true;
  });
  assert.equal(runner.pool.stats().models[0]?.liveBlocks, 0, 'a failed generate frees what it took');
  // Still works afterwards.
  const [ok] = await runner.generate([{ prompt: [1, 403], maxTokens: 3 }]);
  assert.equal(ok?.tokens.length, 3);
});

test('loading can be cancelled by an AbortSignal, and a throwing onProgress cancels it too', async () => {
  const aborted = AbortSignal.abort(new Error('user gave up'));
  await assert.rejects(Model.load(GGUF, { signal: aborted }), (err: unknown) => {
    assert.ok(err instanceof ModelError);
    assert.equal(err.code, 'ERR_MODEL_CANCELLED');
    return true;
  });
  const controller = new AbortController();
  await assert.rejects(
    Model.load(GGUF, { signal: controller.signal, onProgress: () => controller.abort() }),
    (err: unknown) => err instanceof ModelError && err.code === 'ERR_MODEL_CANCELLED',
  );
  const boom = new Error('progress bar exploded');
  await assert.rejects(
    Model.load(GGUF, {
      onProgress: () => {
        throw boom;
      },
    }),
    (err: unknown) => err instanceof FineserveError && err.code === 'ERR_CALLBACK' && err.cause === boom,
  );
});
