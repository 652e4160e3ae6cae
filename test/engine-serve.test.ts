// The serving Engine on the real stories260K fixture: three precisions co-located on one CPU
// device under 200 concurrent requests with aborts, the block lifecycle, and the typed errors of
// bad input. One thread, as for every test on this tiny model.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import { devices, Engine, EngineError, ExecutorError, type GenerationResult, generateModel, ModelError } from '../lib/index.js';
import { Rng } from '../lib/sim/rng.js';
import { fixture, goldenCases } from './fixtures.js';

const GGUF = fixture('stories260K.gguf');
const PRECISIONS = [
  { id: 'fp32', precision: 'fp32' },
  { id: 'w8a8', precision: 'w8a8' },
  { id: 'w4a16-kv4', precision: 'w4a16-kv4' },
] as const;

function prompts(): string[] {
  const lines = readFileSync(fixture('eval.txt'), 'utf8').split(/(?<=[.!?])\s+/).map((l) => l.trim()).filter((l) => l.length > 0);
  return ['Once upon a time', 'Lily', ...lines.slice(0, 10)];
}

async function threeModels(options: Parameters<typeof Engine.create>[0] = {}): Promise<Engine> {
  const engine = await Engine.create({ threads: 1, ...options });
  for (const p of PRECISIONS) await engine.loadModel({ id: p.id, source: GGUF, precision: p.precision, slo: { ttftMs: 2000 } });
  return engine;
}

function liveBlocks(engine: Engine): number {
  return engine.stats().models.reduce((a, m) => a + m.liveBlocks, 0);
}

test('the engine reproduces the golden greedy continuations from token ids and from text', async () => {
  const engine = await Engine.create({ threads: 1 });
  await engine.loadModel({ id: 'm', source: GGUF });
  for (const c of goldenCases()) {
    const byIds = await engine.generate({ model: 'm', tokens: c.prompt_ids, maxTokens: 64, stopTokens: [1, 2] }).result;
    assert.deepEqual(byIds.tokens, c.greedy_ids.slice(0, byIds.tokens.length), `"${c.prompt}" from ids`);
    assert.equal(byIds.tokens.length, c.greedy_ids.length);
    if (c.prompt.length > 0) {
      const byText = await engine.generate({ model: 'm', prompt: c.prompt, maxTokens: 64 }).result;
      assert.deepEqual(byText.tokens, byIds.tokens, `"${c.prompt}" from text`);
      assert.equal(byText.promptTokens, c.prompt_ids.length);
    }
  }
  assert.equal(liveBlocks(engine), 0);
  await engine.close();
});

test('three precisions co-located, 200 concurrent requests, a quarter aborted mid-stream', async () => {
  const engine = await threeModels();
  const texts = prompts();
  const rng = new Rng(42);
  const random = (): number => rng.next();
  const jobs = Array.from({ length: 200 }, (_, i) => ({
    model: PRECISIONS[i % 3]!.id,
    prompt: texts[Math.floor(random() * texts.length)]!,
    maxTokens: 8 + Math.floor(random() * 40),
    abortAt: random() < 0.25 ? Math.floor(random() * 6) : -1,
  }));
  // References: every distinct (model, prompt) alone, one request at a time.
  const alone = new Map<string, GenerationResult>();
  for (const j of jobs) {
    const key = `${j.model}\u0000${j.prompt}`;
    if (!alone.has(key)) alone.set(key, await engine.generate({ model: j.model, prompt: j.prompt, maxTokens: 48 }).result);
  }
  const runs = jobs.map((j) => {
    const controller = new AbortController();
    const streamed: number[] = [];
    const run = engine.generate({
      model: j.model,
      prompt: j.prompt,
      maxTokens: j.maxTokens,
      signal: controller.signal,
      onToken: (c) => {
        streamed.push(c.tokenId);
        if (c.index === j.abortAt) controller.abort();
      },
    });
    return { j, run, streamed };
  });
  const mid = engine.stats();
  assert.ok(mid.models.every((m) => m.waiting + m.running > 0), 'every model has queued work');
  const results = await Promise.all(runs.map((r) => r.run.result));
  let aborted = 0;
  results.forEach((res, i) => {
    const { j, streamed } = runs[i]!;
    const ref = alone.get(`${j.model}\u0000${j.prompt}`)!;
    const want = ref.tokens.slice(0, j.maxTokens);
    if (j.abortAt >= 0 && j.abortAt < want.length - 1) {
      aborted++;
      assert.equal(res.finishReason, 'abort', `request ${i}`);
      assert.deepEqual(res.tokens, want.slice(0, res.tokens.length), `request ${i}: aborted output is a prefix of the lone run`);
      assert.ok(res.tokens.length >= j.abortAt + 1 && res.tokens.length <= j.abortAt + 2, `request ${i}: stopped right after the abort`);
      return;
    }
    const expected = ref.finishReason === 'stop' && ref.tokens.length < j.maxTokens ? 'stop' : 'length';
    assert.equal(res.finishReason, expected, `request ${i}`);
    assert.deepEqual(res.tokens, want, `request ${i} (${j.model}): batched greedy output equals the lone run`);
    assert.deepEqual(streamed.slice(0, want.length), want, `request ${i}: streamed ids`);
    assert.ok(res.timings.ttftMs! >= res.timings.queueMs);
  });
  assert.ok(aborted > 30, `a quarter were aborted (${aborted})`);
  const s = engine.stats();
  assert.equal(liveBlocks(engine), 0, 'no KV block is live after everything ended');
  assert.ok(s.models.every((m) => m.waiting === 0 && m.running === 0));
  const formats = Object.keys(s.devices[0]!.heldBytesByFormat).sort();
  assert.ok(s.devices[0]!.kv.length === 1, 'one slab shared by the three models');
  assert.ok(formats.length >= 0);
  assert.deepEqual(s.models.map((m) => m.kvFormat), ['f32', 'f16', 'int4']);
  await engine.close();
});

test('outputs survive KV preemption: a tiny static partition per model forces recompute', async () => {
  const engine = await Engine.create({ threads: 1, policy: 'static-fcfs', slabBytes: 4 * 2 ** 20, staticPartitions: 16 });
  await engine.loadModel({ id: 'm', source: GGUF, maxContext: 512 });
  const texts = prompts();
  const alone: GenerationResult[] = [];
  for (const p of texts) alone.push(await engine.generate({ model: 'm', prompt: p, maxTokens: 120 }).result);
  const runs = Array.from({ length: 48 }, (_, i) => engine.generate({ model: 'm', prompt: texts[i % texts.length]!, maxTokens: 120 }));
  const results = await Promise.all(runs.map((r) => r.result));
  const preemptions = results.reduce((a, r) => a + r.preemptions, 0);
  assert.ok(preemptions > 0, 'the partition was too small for every sequence at once');
  results.forEach((r, i) => assert.deepEqual(r.tokens, alone[i % texts.length]!.tokens, `request ${i} after ${r.preemptions} preemptions`));
  assert.equal(liveBlocks(engine), 0);
  await engine.close();
});

test('a throwing onToken ends that request with an error and nothing else', async () => {
  const engine = await Engine.create({ threads: 1 });
  await engine.loadModel({ id: 'm', source: GGUF });
  const good = engine.generate({ model: 'm', prompt: 'Once upon a time', maxTokens: 30 });
  const bad = engine.generate({
    model: 'm',
    prompt: 'Once upon a time',
    maxTokens: 30,
    onToken: (c) => {
      if (c.index === 3) throw new Error('user bug');
    },
  });
  const [g, b] = await Promise.all([good.result, bad.result]);
  assert.equal(g.finishReason, 'length');
  assert.equal(g.tokens.length, 30);
  assert.equal(b.finishReason, 'error');
  assert.ok(b.error instanceof ExecutorError);
  assert.equal((b.error as ExecutorError).code, 'ERR_CALLBACK');
  assert.equal(((b.error as ExecutorError).cause as Error).message, 'user bug');
  assert.deepEqual(b.tokens, g.tokens.slice(0, 4));
  await assert.rejects(async () => {
    for await (const _ of bad) void _;
  }, /onToken threw/);
  const after = await engine.generate({ model: 'm', prompt: 'Lily', maxTokens: 5 }).result;
  assert.equal(after.finishReason, 'length', 'the engine keeps serving');
  assert.equal(liveBlocks(engine), 0);
  await engine.close();
});

test('streaming: the iterator and onToken see the same chunks, stop strings end the text', async () => {
  const engine = await Engine.create({ threads: 1 });
  await engine.loadModel({ id: 'm', source: GGUF });
  const seen: string[] = [];
  const run = engine.generate({ model: 'm', prompt: 'Once upon a time', maxTokens: 64, onToken: (c) => seen.push(c.text) });
  const iterated: string[] = [];
  for await (const c of run) iterated.push(c.text);
  const r = await run.result;
  assert.deepEqual(iterated, seen);
  assert.equal(iterated.join(''), r.text);
  assert.ok(r.text.includes('Lily'), r.text);
  const stopped = await engine.generate({ model: 'm', prompt: 'Once upon a time', maxTokens: 64, stop: ['Lily'] }).result;
  assert.equal(stopped.finishReason, 'stop');
  assert.equal(stopped.text, r.text.slice(0, r.text.indexOf('Lily')));
  await engine.close();
});

test('unloading with requests in flight drains them or aborts them, as asked', async () => {
  const engine = await threeModels();
  const drained = Array.from({ length: 6 }, () => engine.generate({ model: 'fp32', prompt: 'Once upon a time', maxTokens: 40 }));
  const other = engine.generate({ model: 'w8a8', prompt: 'Lily', maxTokens: 40 });
  await new Promise((r) => setTimeout(r, 5));
  await engine.unloadModel('fp32', { drain: true });
  for (const r of await Promise.all(drained.map((d) => d.result))) assert.equal(r.finishReason, 'length');
  assert.throws(() => engine.generate({ model: 'fp32', prompt: 'x' }), (e: unknown) => e instanceof EngineError && e.code === 'ERR_ENGINE_UNKNOWN_MODEL');
  const cut = Array.from({ length: 6 }, () => engine.generate({ model: 'w4a16-kv4', prompt: 'Once upon a time', maxTokens: 200 }));
  await new Promise((r) => setTimeout(r, 5));
  await engine.unloadModel('w4a16-kv4');
  for (const r of await Promise.all(cut.map((d) => d.result))) assert.equal(r.finishReason, 'abort');
  assert.equal((await other.result).finishReason, 'length', 'the co-located model was not disturbed');
  assert.deepEqual(engine.models, ['w8a8']);
  assert.equal(engine.stats().devices[0]!.kv[0]!.models.length, 1, 'unloaded models left the slab');
  assert.equal(liveBlocks(engine), 0);
  await engine.close();
  assert.throws(() => engine.generate({ model: 'w8a8', prompt: 'x' }), (e: unknown) => e instanceof EngineError && e.code === 'ERR_ENGINE_CLOSED');
});

test('bad requests are rejected with typed errors before any work is queued', async () => {
  const engine = await Engine.create({ threads: 1 });
  await engine.loadModel({ id: 'm', source: GGUF, maxContext: 64 });
  const code = (c: string) => (e: unknown) => e instanceof EngineError && e.code === c;
  assert.throws(() => engine.generate({ model: 'nope', prompt: 'x' }), (e: unknown) => code('ERR_ENGINE_UNKNOWN_MODEL')(e) && /"nope".*"m"/.test((e as Error).message));
  assert.throws(() => engine.generate({ model: 'm', prompt: 'x', temperature: -1 }), (e: unknown) => code('ERR_ENGINE_INVALID_REQUEST')(e) && /temperature = -1/.test((e as Error).message));
  assert.throws(() => engine.generate({ model: 'm', prompt: 'x', topP: 0 }), code('ERR_ENGINE_INVALID_REQUEST'));
  assert.throws(() => engine.generate({ model: 'm', prompt: 'x', topK: 1.5 }), code('ERR_ENGINE_INVALID_REQUEST'));
  assert.throws(() => engine.generate({ model: 'm', prompt: 'x', maxTokens: 0 }), code('ERR_ENGINE_INVALID_REQUEST'));
  assert.throws(() => engine.generate({ model: 'm', tokens: [1, 99999] }), (e: unknown) => code('ERR_ENGINE_INVALID_REQUEST')(e) && /tokens\[1\] = 99999/.test((e as Error).message));
  const long = 'Once upon a time there was a little girl. '.repeat(20);
  assert.throws(() => engine.generate({ model: 'm', prompt: long }), (e: unknown) => code('ERR_ENGINE_CONTEXT_EXCEEDED')(e) && /64/.test((e as Error).message));
  assert.throws(() => engine.generate({ model: 'm', prompt: 'Lily', maxTokens: 100 }), code('ERR_ENGINE_CONTEXT_EXCEEDED'));
  assert.throws(() => engine.generate({ model: 'm', messages: [{ role: 'user', content: 'hi' }] }), (e: unknown) => e instanceof ModelError && e.code === 'ERR_MODEL_TOKENIZER');
  await assert.rejects(engine.loadModel({ id: 'm', source: GGUF }), code('ERR_ENGINE_DUPLICATE_MODEL'));
  await assert.rejects(engine.loadModel({ id: 'q', source: GGUF, precision: 'int3' as never }), (e: unknown) => e instanceof ModelError && e.code === 'ERR_MODEL_PRECISION');
  await assert.rejects(Engine.create({ devices: ['gpu0'] }), (e: unknown) => e instanceof EngineError && e.code === 'ERR_ENGINE_DEVICE' && /expected 'cpu', 'cpu:N' or 'cuda:N'/.test(e.message));
  if ((await devices()).cuda.length === 0) {
    // No GPU here: the refusal says why (no driver, or an addon built without CUDA).
    await assert.rejects(Engine.create({ devices: ['cuda:0'] }), (e: unknown) => e instanceof EngineError && e.code === 'ERR_ENGINE_DEVICE' && /no CUDA device is usable: /.test(e.message));
  }
  const s = engine.stats().models[0]!;
  assert.equal(s.waiting + s.running, 0, 'nothing was queued');
  assert.equal(s.finished.error + s.finished.stop + s.finished.length, 0);
  const aborted = new AbortController();
  aborted.abort();
  assert.equal((await engine.generate({ model: 'm', prompt: 'Lily', signal: aborted.signal }).result).finishReason, 'abort');
  await engine.close();
});

test('the static-partition FCFS baseline and the reference saab serve the same greedy outputs as the FineServe policy', async () => {
  const baseline = await threeModels({ policy: 'static-fcfs', staticPartitions: 3 });
  const reference = await threeModels({ policy: 'saab' });
  const ours = await threeModels();
  const jobs = PRECISIONS.flatMap((p) => prompts().slice(0, 4).map((prompt) => ({ model: p.id, prompt, maxTokens: 24 })));
  const b = await Promise.all(jobs.map((j) => ours.generate(j).result));
  for (const other of [baseline, reference]) {
    const a = await Promise.all(jobs.map((j) => other.generate(j).result));
    a.forEach((r, i) => {
      assert.deepEqual(r.tokens, b[i]!.tokens, `${other.policy} ${jobs[i]!.model}: "${jobs[i]!.prompt}"`);
      assert.equal(r.finishReason, b[i]!.finishReason);
    });
  }
  const s = baseline.stats();
  assert.equal(s.policy, 'static-fcfs');
  assert.equal(s.devices[0]!.kv.length, 3, 'one partition per model');
  assert.equal(reference.stats().devices[0]!.kv.length, 1, 'saab shares one slab');
  await Promise.all([baseline.close(), reference.close(), ours.close()]);
});

test('space sharing: two models with a thread each step at once and serve the time-shared outputs', async () => {
  const cores = availableParallelism();
  const shared = await Engine.create({ threads: 1 });
  const spatial = await Engine.create({ threads: 1, sharing: 'space' });
  const two = PRECISIONS.slice(0, 2);
  for (const e of [shared, spatial]) {
    for (const p of two) await e.loadModel({ id: p.id, source: GGUF, precision: p.precision, slo: { ttftMs: 2000 } });
  }
  const jobs = two.flatMap((p) => prompts().slice(0, 6).map((prompt, i) => ({ model: p.id, prompt, maxTokens: 16 + 4 * i })));
  const want = await Promise.all(jobs.map((j) => shared.generate(j).result));
  // Aborts in one model's lane must not disturb the other's.
  const runs = jobs.map((j, i) => {
    const controller = new AbortController();
    const run = spatial.generate({ ...j, signal: controller.signal, onToken: (c) => (i % 4 === 3 && c.index === 2 ? controller.abort() : undefined) });
    return { run, aborted: i % 4 === 3 };
  });
  const got = await Promise.all(runs.map((r) => r.run.result));
  got.forEach((r, i) => {
    if (runs[i]!.aborted) {
      assert.equal(r.finishReason, 'abort', `request ${i}`);
      assert.deepEqual(r.tokens, want[i]!.tokens.slice(0, r.tokens.length));
    } else {
      assert.deepEqual(r.tokens, want[i]!.tokens, `request ${i} (${jobs[i]!.model})`);
      assert.equal(r.finishReason, want[i]!.finishReason);
    }
  });
  assert.equal(liveBlocks(spatial), 0);
  assert.equal(spatial.stats().devices[0]!.sharing, 'space');
  assert.equal(spatial.stats().devices[0]!.peakConcurrentSteps, 2, 'both models had a step in flight at once');
  assert.equal(shared.stats().devices[0]!.peakConcurrentSteps, 1, 'time sharing never overlaps steps');
  // Each model owns its threads: no more models than cores.
  for (let k = 2; k < cores; k++) await spatial.loadModel({ id: `extra${k}`, source: GGUF });
  await assert.rejects(spatial.loadModel({ id: 'one-too-many', source: GGUF }), (e: unknown) => e instanceof EngineError && e.code === 'ERR_ENGINE_INVALID_REQUEST' && /more than the \d+ cores/.test(e.message));
  await assert.rejects(Engine.create({ sharing: 'both' as never }), (e: unknown) => e instanceof EngineError && e.code === 'ERR_ENGINE_INVALID_REQUEST');
  await Promise.all([shared.close(), spatial.close()]);
});

test('priority: under contention a high-priority request is admitted ahead of the queue', async () => {
  const engine = await Engine.create({ threads: 1 });
  await engine.loadModel({ id: 'm', source: GGUF, maxBatch: 2 });
  const order: string[] = [];
  const low = Array.from({ length: 10 }, (_, i) => engine.generate({ model: 'm', prompt: 'Lily', maxTokens: 20 }).result.then(() => order.push(`low${i}`)));
  const high = engine.generate({ model: 'm', prompt: 'Lily', maxTokens: 20, priority: 5 }).result.then(() => order.push('high'));
  await Promise.all([...low, high]);
  assert.ok(order.indexOf('high') <= 1, `high priority finished at position ${order.indexOf('high')} of ${order.join(',')}`);
  await engine.close();
});

test('sampling: a seeded request gives the same tokens alone and in a batch', async () => {
  const engine = await Engine.create({ threads: 1 });
  await engine.loadModel({ id: 'm', source: GGUF });
  const opts = { model: 'm', prompt: 'Once upon a time', maxTokens: 40, temperature: 0.9, topP: 0.95, seed: 1234 } as const;
  const alone = await engine.generate(opts).result;
  const batch = await Promise.all([engine.generate({ ...opts, seed: 1 }).result, engine.generate(opts).result, engine.generate({ ...opts, seed: 2 }).result]);
  assert.deepEqual(batch[1]!.tokens, alone.tokens);
  assert.notDeepEqual(batch[0]!.tokens, alone.tokens, 'another seed samples differently');
  await engine.close();
});

test('a request larger than all the KV memory its model can get ends with a typed error, alone', async () => {
  // 4 MiB in 64 partitions: 64 KiB, about 50 tokens of stories260K's f32 cache per model.
  const engine = await Engine.create({ threads: 1, policy: 'static-fcfs', slabBytes: 4 * 2 ** 20, staticPartitions: 64 });
  await engine.loadModel({ id: 'm', source: GGUF, precision: 'fp32' });
  const long = 'Once upon a time there was a little girl named Lily. '.repeat(6);
  const [big, small] = await Promise.all([engine.generate({ model: 'm', prompt: long, maxTokens: 4 }).result, engine.generate({ model: 'm', prompt: 'Lily', maxTokens: 8 }).result]);
  assert.equal(big.finishReason, 'error');
  assert.ok(big.error instanceof EngineError && big.error.code === 'ERR_ENGINE_KV_OUT_OF_MEMORY', String(big.error));
  assert.match(big.error.message, /KV blocks/);
  assert.equal(small.finishReason, 'length', 'the request that fits is served');
  assert.equal(liveBlocks(engine), 0);
  await engine.close();
});

test('chat messages go through the model folder\'s chat template', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'fineserve-chat-'));
  try {
    const folder = join(dir, 'tiny');
    await generateModel({ shape: 'tiny', format: 'hf', out: folder, seed: 3 });
    const configPath = join(folder, 'tokenizer_config.json');
    const config = JSON.parse(readFileSync(configPath, 'utf8')) as Record<string, unknown>;
    config['chat_template'] = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}";
    writeFileSync(configPath, JSON.stringify(config));
    const engine = await Engine.create({ threads: 1 });
    await engine.loadModel({ id: 'chat', source: folder });
    const tok = engine.tokenizer('chat');
    const messages = [{ role: 'system', content: 'be brief' }, { role: 'user', content: 'hello there' }];
    const rendered = tok.applyChatTemplate(messages);
    assert.equal(rendered, '<|system|>be brief\n<|user|>hello there\n<|assistant|>');
    const r = await engine.generate({ model: 'chat', messages, maxTokens: 6, stopTokens: [] }).result;
    assert.equal(r.finishReason, 'length');
    assert.equal(r.promptTokens, tok.encode(rendered, { addSpecialTokens: false }).length);
    const same = await engine.generate({ model: 'chat', tokens: tok.encode(rendered, { addSpecialTokens: false }), maxTokens: 6, stopTokens: [] }).result;
    assert.deepEqual(r.tokens, same.tokens, 'messages and their rendered ids generate the same');
    await engine.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a request's own SLO overrides its model's, for sloMet and the drop decision", async () => {
  const engine = await Engine.create({ threads: 1 });
  await engine.loadModel({ id: 'm', source: GGUF, slo: { ttftMs: 60_000 }, dropLate: true });
  const tokens = goldenCases()[0]!.prompt_ids;
  const loose = await engine.generate({ model: 'm', tokens, maxTokens: 4 }).result;
  assert.equal(loose.sloMet, true);
  // The scheduler drops only on a latency model it trusts (recent error <= 50 %): serve until it does.
  for (let i = 0; i < 200 && engine.stats().models[0]!.latency.meanRelativeError > 0.5; i++) await engine.generate({ model: 'm', tokens, maxTokens: 4 }).result;
  assert.ok(engine.stats().models[0]!.latency.meanRelativeError <= 0.5, 'the latency model learnt this machine');
  // A TTFT no step can meet: dropped by the scheduler as unreachable (dropLate), whatever the model allows.
  const tight = await engine.generate({ model: 'm', tokens, maxTokens: 4, slo: { ttftMs: 1e-3 } }).result;
  assert.equal(tight.finishReason, 'error');
  assert.equal((tight.error as EngineError).code, 'ERR_ENGINE_SLO_UNREACHABLE');
  assert.match(tight.error!.message, /TTFT SLO of 0\.001 ms/);
  // A TPOT no decode meets: served, but not within its SLO.
  const slowTpot = await engine.generate({ model: 'm', tokens, maxTokens: 8, slo: { tpotMs: 1e-6 } }).result;
  assert.equal(slowTpot.finishReason, 'length');
  assert.equal(slowTpot.sloMet, false);
  assert.throws(() => engine.generate({ model: 'm', tokens, slo: { ttftMs: -1 } }), (e: unknown) => e instanceof EngineError && e.code === 'ERR_ENGINE_INVALID_REQUEST' && /slo\.ttftMs/.test(e.message));
  await engine.close();
});
