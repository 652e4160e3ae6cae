// Native lifetimes as a user of the Engine sees them: weights, executors and KV memory come back
// when a model is unloaded or the engine closed, without waiting for the garbage collector, and a
// load that fails at any stage leaves nothing registered. RSS is read without global.gc(): the
// point is that release does not depend on it.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { Engine, EngineError, ExecutorError, generateModel, KvError, KvPool, Model, ModelError, ModelRunner } from '../lib/index.js';
import { median } from '../lib/stats.js';
import { fixture, goldenCases } from './fixtures.js';

const GGUF = fixture('stories260K.gguf');
const MiB = 2 ** 20;
const rssMiB = (): number => process.memoryUsage().rss / MiB;

let dir = '';
let big = '';
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'fineserve-lifetimes-'));
  // ~250 MB of f16 weights on disk, ~125 MB once quantized to w8a8 at load.
  big = (await generateModel({ shape: 'llama-100m', format: 'gguf', dtype: 'f16', out: join(dir, 'llama-100m.gguf') })).path;
});
after(() => rmSync(dir, { recursive: true, force: true }));

test('50 load/unload cycles of a ~100 MB w8a8 model keep RSS flat without a forced GC', async (t) => {
  const engine = await Engine.create({ threads: 1, slabBytes: 64 * MiB });
  const afterCycle: number[] = [];
  // Two cycles first, not counted: V8 grows its heap to its working size over them (tokenizer and
  // loader garbage), which is the JS side settling, not the addon keeping memory.
  for (let i = -2; i < 50; i++) {
    await engine.loadModel({ id: 'm', source: big, precision: 'w8a8' });
    if (i === -2) {
      const r = await engine.generate({ model: 'm', tokens: [1, 2, 3], maxTokens: 2 }).result;
      assert.equal(r.finishReason, 'length');
    }
    await engine.unloadModel('m');
    if (i >= 0) afterCycle.push(rssMiB());
  }
  await engine.close();
  const cycles = [0, 9, 24, 49];
  t.diagnostic(`RSS after cycles 1/10/25/50: ${cycles.map((i) => afterCycle[i]!.toFixed(0)).join(' / ')} MiB`);
  // One leaked model would add ~125 MiB a cycle, and even 1 MiB a cycle moves the last ten cycles'
  // median ~40 MiB above the first ten's. Medians, not the first and last samples: without a
  // forced GC, single readings wander by 10-15 % with how busy the machine keeps V8's concurrent
  // marker (CI once read 118 first and 132 last with the rest between 108 and 139).
  const first = median(afterCycle.slice(0, 10));
  const last = median(afterCycle.slice(-10));
  assert.ok(last <= first * 1.1, `RSS grew more than 10 % over 50 cycles (medians of the first and last ten: ${first.toFixed(0)} -> ${last.toFixed(0)} MiB): ${afterCycle.map((v) => v.toFixed(0)).join(' ')} MiB`);
});

test('Engine.close() returns RSS to within 10 % of what it was before loadModel', async (t) => {
  const engine = await Engine.create({ threads: 1, slabBytes: 64 * MiB });
  // The addon and this process's one-time allocations settle with a first round.
  await engine.loadModel({ id: 'warm', source: big, precision: 'w8a8' });
  await engine.unloadModel('warm');
  const base = rssMiB();
  await engine.loadModel({ id: 'a', source: big, precision: 'w8a8' });
  await engine.loadModel({ id: 'b', source: big, precision: 'fp16' });
  const loaded = rssMiB();
  assert.ok(loaded > base + 100, `two ~100-250 MB models should show in RSS (${base.toFixed(0)} -> ${loaded.toFixed(0)} MiB)`);
  await engine.close();
  const closed = rssMiB();
  t.diagnostic(`RSS before loadModel ${base.toFixed(0)} MiB, two models loaded ${loaded.toFixed(0)} MiB, after close ${closed.toFixed(0)} MiB`);
  assert.ok(closed <= base * 1.1, `RSS after close ${closed.toFixed(0)} MiB, before loadModel ${base.toFixed(0)} MiB, loaded ${loaded.toFixed(0)} MiB`);
});

test('dispose() is idempotent and every later use throws a typed ERR_*_DISPOSED', async () => {
  const model = await Model.load(GGUF);
  const runner = ModelRunner.create(model, { threads: 1 });
  const c = goldenCases()[0]!;
  const [out] = await runner.generate([{ prompt: c.prompt_ids, maxTokens: 8 }]);
  assert.deepEqual(out!.tokens, c.greedy_ids.slice(0, 8));
  // The runner keeps its own share of the weights: disposing the Model does not stop it.
  model.dispose();
  model.dispose();
  assert.equal(model.disposed, true);
  const [again] = await runner.generate([{ prompt: c.prompt_ids, maxTokens: 8 }]);
  assert.deepEqual(again!.tokens, out!.tokens);
  assert.throws(() => model.metadata('general.name'), (e: unknown) => e instanceof ModelError && e.code === 'ERR_MODEL_DISPOSED');
  assert.throws(() => ModelRunner.create(model), (e: unknown) => e instanceof ModelError && e.code === 'ERR_MODEL_DISPOSED');
  await assert.rejects(model.perplexity([1, 2, 3]), (e: unknown) => e instanceof ModelError && e.code === 'ERR_MODEL_DISPOSED');
  runner.dispose();
  runner.dispose();
  await assert.rejects(runner.generate([{ prompt: [1], maxTokens: 1 }]), (e: unknown) => e instanceof ExecutorError && e.code === 'ERR_EXECUTOR_DISPOSED');

  const pool = KvPool.create({ poolBytes: 8 * MiB });
  pool.dispose();
  pool.dispose();
  assert.throws(() => pool.stats(), (e: unknown) => e instanceof KvError && e.code === 'ERR_KV_DISPOSED');

  let escaped: Model | undefined;
  {
    using scoped = await Model.load(GGUF);
    assert.equal(scoped.disposed, false);
    escaped = scoped;
  }
  assert.equal(escaped.disposed, true, '`using` disposed the model at the end of its scope');

  let closedEngine: Engine;
  {
    await using engine = await Engine.create({ threads: 1, slabBytes: 16 * MiB });
    await engine.loadModel({ id: 'm', source: GGUF });
    closedEngine = engine;
  }
  assert.throws(() => closedEngine.stats(), (e: unknown) => e instanceof EngineError && e.code === 'ERR_ENGINE_CLOSED');
});

test('a load that fails at any stage leaves nothing registered', async () => {
  // Attach stage, static partitions: the one partition taken for the failing load must come back.
  const engine = await Engine.create({ threads: 1, policy: 'static-fcfs', staticPartitions: 1, slabBytes: 16 * MiB });
  const gone = await Model.load(GGUF);
  gone.dispose();
  await assert.rejects(engine.loadModel({ id: 'x', source: gone }), (e: unknown) => e instanceof ModelError && e.code === 'ERR_MODEL_DISPOSED');
  const info = await engine.loadModel({ id: 'x', source: GGUF });
  assert.equal(info.id, 'x');
  await engine.close();

  // Reserve stage on a shared slab: models are loaded until one cannot get its reserve (each
  // keeps at most a quarter of the slab); that failure frees the weights it loaded and leaves no
  // id or registration behind, and the same id loads once another model made room.
  const slab = await Engine.create({ threads: 1, slabBytes: 4 * MiB });
  const ids = ['a', 'b', 'c', 'd', 'e', 'f'];
  let failed: string | undefined;
  for (const id of ids) {
    try {
      await slab.loadModel({ id, source: GGUF });
    } catch (e) {
      assert.ok(e instanceof KvError && e.code === 'ERR_KV_RESERVE_UNAVAILABLE', `unexpected ${String(e)}`);
      failed = id;
      break;
    }
  }
  assert.ok(failed !== undefined && failed !== 'a', `some model but the first should run out of reserve (failed: ${failed})`);
  const loaded = ids.slice(0, ids.indexOf(failed));
  assert.deepEqual([...slab.models], loaded);
  assert.deepEqual(slab.stats().devices[0]!.kv[0]!.models.map((m) => m.name).sort(), loaded);
  await slab.unloadModel(loaded.at(-1)!);
  await slab.loadModel({ id: failed, source: GGUF });
  const r = await slab.generate({ model: failed, tokens: goldenCases()[0]!.prompt_ids, maxTokens: 4 }).result;
  assert.deepEqual(r.tokens, goldenCases()[0]!.greedy_ids.slice(0, 4));
  await slab.close();

  // After warm-up: the engine closed while the load ran. The caller's Model is not the engine's
  // to free, and still serves elsewhere.
  const mine = await Model.load(GGUF);
  const closing = await Engine.create({ threads: 1, slabBytes: 16 * MiB });
  const load = closing.loadModel({ id: 'm', source: mine });
  await closing.close();
  await assert.rejects(load, (e: unknown) => e instanceof EngineError && e.code === 'ERR_ENGINE_CLOSED');
  assert.equal(mine.disposed, false);
  const runner = ModelRunner.create(mine, { threads: 1 });
  const [out] = await runner.generate([{ prompt: goldenCases()[0]!.prompt_ids, maxTokens: 4 }]);
  assert.deepEqual(out!.tokens, goldenCases()[0]!.greedy_ids.slice(0, 4));
  runner.dispose();
  mine.dispose();
});
