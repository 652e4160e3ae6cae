// Defects found by using the Engine as a careless or hostile caller would (issue #16), each with
// the test that failed before its fix: callbacks that reject, unloads that skipped requests, loads
// that failed at warm-up, bad options that got through, unbounded stats.
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import { ModelStatsRecorder } from '../lib/engine/model-stats.js';
import { Engine, EngineError, ExecutorError, type GenerationResult, Model, ModelError } from '../lib/index.js';
import { fixture, goldenCases, STORIES } from './fixtures.js';

const GGUF = fixture('stories260K.gguf');
const MiB = 2 ** 20;
const prompt = goldenCases()[0]!.prompt_ids;

test('#2: an async onToken that rejects ends its request with ERR_CALLBACK, the rejection as cause', async () => {
  const engine = await Engine.create({ threads: 1, slabBytes: 16 * MiB });
  await engine.loadModel({ id: 'm', source: GGUF });
  const boom = new Error('async boom');
  const r = await engine.generate({
    model: 'm',
    tokens: prompt,
    maxTokens: 200,
    onToken: async ({ index }) => {
      if (index === 2) throw boom;
    },
  }).result;
  assert.equal(r.finishReason, 'error');
  assert.ok(r.error instanceof ExecutorError && r.error.code === 'ERR_CALLBACK');
  assert.equal(r.error.cause, boom);
  assert.ok(r.tokens.length < 200, 'it ended early');
  // Others are untouched.
  const ok = await engine.generate({ model: 'm', tokens: prompt, maxTokens: 4 }).result;
  assert.equal(ok.finishReason, 'length');
  await engine.close();
});

test('#7: unloadModel() and close() abort every running request, and close() during an unload is clean', async () => {
  const engine = await Engine.create({ threads: 1, slabBytes: 16 * MiB });
  await engine.loadModel({ id: 'm', source: GGUF });
  const started = new Set<number>();
  const runs = Array.from({ length: 6 }, (_, i) =>
    engine.generate({ model: 'm', tokens: prompt, maxTokens: 2000, stopTokens: [], onToken: () => void started.add(i) }),
  );
  while (started.size < runs.length) await new Promise((r) => setTimeout(r, 2));
  await engine.unloadModel('m');
  const results = await Promise.all(runs.map((r) => r.result));
  assert.deepEqual(results.map((r) => r.finishReason), Array(6).fill('abort'));
  assert.ok(results.every((r) => r.tokens.length < 2000));

  await engine.loadModel({ id: 'n', source: GGUF });
  const more = Array.from({ length: 4 }, () => engine.generate({ model: 'n', tokens: prompt, maxTokens: 2000, stopTokens: [] }));
  await new Promise((r) => setTimeout(r, 20));
  const unloading = engine.unloadModel('n', { drain: true });
  await engine.close();
  await unloading;
  assert.ok((await Promise.all(more.map((r) => r.result))).every((r: GenerationResult) => r.finishReason === 'abort' || r.finishReason === 'length'));
});

test('#8: a model that loads but fails its warm-up is a ModelError naming the file, and leaves nothing behind', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'fineserve-warmup-'));
  try {
    cpSync(join(STORIES, 'hf'), dir, { recursive: true });
    const configPath = join(dir, 'config.json');
    const config = JSON.parse(readFileSync(configPath, 'utf8')) as Record<string, unknown>;
    writeFileSync(configPath, JSON.stringify({ ...config, max_position_embeddings: 2 }));
    const engine = await Engine.create({ threads: 1, slabBytes: 16 * MiB });
    await assert.rejects(engine.loadModel({ id: 'm', source: dir }), (e: unknown) => e instanceof ModelError && e.message.includes(dir));
    assert.deepEqual([...engine.models], []);
    assert.deepEqual(engine.stats().devices[0]!.kv[0]!.models, []);
    const info = await engine.loadModel({ id: 'm', source: GGUF });
    assert.equal(info.id, 'm');
    await engine.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('#9: bad options are typed errors naming the field, before anything is queued or allocated', async () => {
  await assert.rejects(Engine.create({ slabBytes: 200 * 2 ** 30 }), (e: unknown) => e instanceof EngineError && e.code === 'ERR_ENGINE_DEVICE' && /slabBytes/.test(e.message));
  const engine = await Engine.create({ threads: 1, slabBytes: 16 * MiB });
  for (const source of [undefined, 42, {}]) {
    await assert.rejects(engine.loadModel({ id: 'x', source: source as unknown as string }), (e: unknown) => e instanceof EngineError && e.code === 'ERR_ENGINE_INVALID_REQUEST' && /source/.test(e.message));
  }
  await assert.rejects(engine.loadModel({ id: 'x', source: GGUF, kvReserveTokens: 2 ** 30 }), (e: unknown) => e instanceof EngineError && /kvReserveTokens = 1073741824/.test(e.message));
  assert.deepEqual([...engine.models], []);
  await engine.loadModel({ id: 'm', source: GGUF });
  assert.throws(() => engine.generate({ model: 'm', tokens: prompt, signal: {} as AbortSignal }), (e: unknown) => e instanceof EngineError && /signal must be an AbortSignal/.test(e.message));
  const m = engine.stats().models[0]!;
  assert.equal(m.waiting + m.running, 0, 'nothing was queued');
  await engine.close();

  const model = await Model.load(GGUF);
  await assert.rejects(model.perplexity([1, 2, 3], { chunk: 0 }), (e: unknown) => e instanceof ExecutorError && /chunk = 0/.test(e.message));
  await assert.rejects(model.perplexity([1, 2, 3], { kvFormat: 'bogus' as 'f16' }), (e: unknown) => e instanceof ExecutorError && /kvFormat = "bogus"/.test(e.message));
  model.dispose();
});

test('#12: stats() keeps bounded latency windows: percentiles over the recent requests, the mean over all', () => {
  const stats = new ModelStatsRecorder();
  const result = (ms: number): GenerationResult => ({
    text: '',
    tokens: [1, 2],
    finishReason: 'length',
    promptTokens: 1,
    timings: { queueMs: 0, ttftMs: ms, tpotMs: ms, e2eMs: ms },
    sloMet: true,
    preemptions: 0,
  });
  for (let i = 0; i < 10_000; i++) stats.finished(result(1000), i);
  for (let i = 0; i < 4096; i++) stats.finished(result(1), 10_000 + i);
  const c = stats.counters();
  assert.equal(c.ttftMs.p99, 1, 'the old slow requests have left the window');
  assert.ok(Math.abs(c.ttftMs.mean! - (10_000 * 1000 + 4096) / 14_096) < 1e-6, 'the mean covers all');
  assert.equal(c.generatedTokens, 2 * 14_096);
});

test('#6: one request decoding to the end of its context leaves the latency model sane, and nothing is locked out', async () => {
  const engine = await Engine.create({ threads: 1, slabBytes: 64 * MiB });
  await engine.loadModel({ id: 'm', source: GGUF, slo: { ttftMs: 30, tpotMs: 10 }, dropLate: true });
  const short = async (): Promise<GenerationResult> => engine.generate({ model: 'm', prompt: 'Once upon a time', maxTokens: 16 }).result;
  for (let i = 0; i < 3; i++) assert.equal((await short()).finishReason, 'length');
  const long = await engine.generate({ model: 'm', prompt: 'Once upon a time', stopTokens: [] }).result;
  assert.equal(long.finishReason, 'length');
  assert.ok(long.tokens.length > 1000, 'it ran to the context');
  const fit = engine.stats().models[0]!.latency;
  // Before the fix: fixed ≈ 129 ms and perDecodeSeq ≈ 100 ms on a model whose steps take ~1 ms.
  assert.ok(fit.fixed + fit.perDecodeSeq < 10, `decode coefficients stay near the measured step time: ${JSON.stringify(fit)}`);
  const after = await Promise.all(Array.from({ length: 10 }, short));
  assert.deepEqual(after.map((r) => r.finishReason), Array(10).fill('length'), 'no later request is dropped');
  await engine.close();
});

test('#6: the fit is robust to an outlier step, follows a persistent change, and keeps unexercised terms at the prior', async () => {
  const { MeasuredLatencyModel } = await import('../lib/scheduler/measured-latency.js');
  const m = new MeasuredLatencyModel({ prior: { decodeStepMs: 2, prefillTokenMs: 0.1 } });
  const decode = (ms: number, ctx = 100) => m.observe({ prefillSeqs: 0, prefillTokens: 0, decodeSeqs: 1, decodeContext: ctx, measuredMs: ms });
  for (let i = 0; i < 200; i++) decode(2);
  const before = m.decodeMs(1, 100);
  decode(5000);  // one stall (a page-in, a preempted VM)
  assert.ok(m.decodeMs(1, 100) < before * 1.5, `one outlier moved the prediction from ${before} to ${m.decodeMs(1, 100)}`);
  for (let i = 0; i < 400; i++) decode(6);  // more than one window
  assert.ok(Math.abs(m.decodeMs(1, 100) - 6) < 1, `a persistent change is followed: ${m.decodeMs(1, 100)}`);
  // 3,000 decode steps of one sequence over growing contexts say nothing about prefill.
  for (let i = 0; i < 3000; i++) decode(2 + 0.001 * i, 100 + i);
  assert.ok(Math.abs(m.prefillMs(1, 128) - (0.8 * 2 + 0.1 * 128)) < 0.5 * (0.8 * 2 + 0.1 * 128), `prefill stays near its prior: ${m.prefillMs(1, 128)}`);
  for (const v of Object.values(m.coefficients)) assert.ok(Number.isFinite(v) && v >= 0);
});

test('#13: chatTemplate at loadModel and per request; without one, the error says how to give it', async () => {
  const engine = await Engine.create({ threads: 1, slabBytes: 16 * MiB });
  await engine.loadModel({ id: 'bare', source: GGUF });
  const messages = [{ role: 'user', content: 'Hi!' }];
  assert.throws(() => engine.generate({ model: 'bare', messages }), (e: unknown) => e instanceof ModelError && e.code === 'ERR_MODEL_TOKENIZER' && /pass chatTemplate/.test(e.message));
  const template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}";
  const perRequest = await engine.generate({ model: 'bare', messages, chatTemplate: template, maxTokens: 4 }).result;
  assert.equal(perRequest.promptTokens, engine.tokenizer('bare').encode('user: Hi!\nassistant:', { addSpecialTokens: false }).length);
  await engine.loadModel({ id: 'chat', source: GGUF, chatTemplate: template });
  const loaded = await engine.generate({ model: 'chat', messages, maxTokens: 4 }).result;
  assert.deepEqual(loaded.tokens, perRequest.tokens);
  const other = await engine.generate({ model: 'chat', messages, chatTemplate: '{{ messages[0].content }}', maxTokens: 4 }).result;
  assert.equal(other.promptTokens, engine.tokenizer('chat').encode('Hi!', { addSpecialTokens: false }).length);
  assert.throws(() => engine.generate({ model: 'chat', messages, chatTemplate: '' }), (e: unknown) => e instanceof EngineError && /chatTemplate/.test(e.message));
  await engine.close();
});

test('#3: a FIFO as the model, as config.json or as tokenizer.json is refused up front, and the signal is honoured', async () => {
  const { execFileSync } = await import('node:child_process');
  const dir = mkdtempSync(join(tmpdir(), 'fineserve-fifo-'));
  try {
    const fifo = join(dir, 'model.gguf');
    execFileSync('mkfifo', [fifo]);
    await assert.rejects(Model.load(fifo), (e: unknown) => e instanceof ModelError && e.message.includes(fifo) && /FIFO/.test(e.message));
    for (const file of ['config.json', 'tokenizer.json']) {
      const folder = join(dir, `hf-${file}`);
      cpSync(join(STORIES, 'hf'), folder, { recursive: true });
      rmSync(join(folder, file));
      execFileSync('mkfifo', [join(folder, file)]);
      await assert.rejects(Model.load(folder), (e: unknown) => e instanceof ModelError && e.message.includes(join(folder, file)) && /FIFO/.test(e.message));
    }
    await assert.rejects(Model.load(GGUF, { signal: AbortSignal.abort() }), (e: unknown) => e instanceof ModelError && e.code === 'ERR_MODEL_CANCELLED');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('#5: a prompt far past the context is refused before it is tokenized', async () => {
  const engine = await Engine.create({ threads: 1, slabBytes: 16 * MiB });
  await engine.loadModel({ id: 'm', source: GGUF, chatTemplate: '{{ messages[0].content }}' });
  const huge = 'Once upon a time there was a cat. '.repeat(30_000);  // ~1 MB
  const t0 = performance.now();
  assert.throws(() => engine.generate({ model: 'm', prompt: huge }), (e: unknown) => e instanceof EngineError && e.code === 'ERR_ENGINE_CONTEXT_EXCEEDED');
  assert.throws(() => engine.generate({ model: 'm', messages: [{ role: 'user', content: huge }] }), (e: unknown) => e instanceof EngineError && e.code === 'ERR_ENGINE_CONTEXT_EXCEEDED');
  const ms = performance.now() - t0;
  assert.ok(ms < 1000, `refused in ${ms.toFixed(0)} ms, without tokenizing a megabyte`);
  // The bound never refuses what fits: a prompt just under the context still runs.
  const context = engine.stats().models[0]!.maxContext;
  const tokens = engine.tokenizer('m').encode('Once upon a time there was a cat. '.repeat(context));
  const fitting = engine.tokenizer('m').decode(tokens.slice(1, context - 8));
  const r = await engine.generate({ model: 'm', prompt: fitting, maxTokens: 2 }).result;
  assert.equal(r.finishReason, 'length');
  await engine.close();
});
