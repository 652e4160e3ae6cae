// Explicit lifetimes of the addon's objects (cpp/addon): dispose() on Model, KvPool, ThreadPool and
// Executor is idempotent, later use throws a typed ERR_*_DISPOSED, an executor keeps what it uses
// alive (shared ownership) and lets go of it when disposed itself, and the native bytes each object
// holds are reported (nativeBytes, and to V8 as external memory).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { loadNative } from '../lib/native/loader.js';
import { fixture, goldenCases } from './fixtures.js';

// The addon's surface as this test uses it, dispose() and nativeBytes included.
interface Disposable {
  dispose(): void;
}
interface Model extends Disposable {
  readonly nativeBytes: number;
  info(): { weightBytes: number; config: { vocabSize: number } };
  metadata(key: string): string | undefined;
}
interface KvPool extends Disposable {
  readonly nativeBytes: number;
  addModel(o: { name: string; geometry: object }): number;
  alloc(model: number, count: number): { ok: boolean; blocks?: Uint32Array };
  stats(): { poolBytes: number };
}
interface ThreadPool extends Disposable {
  readonly size: number;
}
interface StepResult {
  tokens: Int32Array;
}
interface Executor extends Disposable {
  addSequence(id: number, prompt: Int32Array, sampling: object): void;
  removeSequence(id: number): void;
  step(...args: [Uint32Array, Int32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint8Array, boolean]): Promise<StepResult>;
}
interface Binding {
  loadModel(path: string, options: object): { promise: Promise<Model> };
  KvPool: new (options: object) => KvPool;
  ThreadPool: new (threads: number) => ThreadPool;
  Executor: new (model: Model, pool: KvPool, kvModel: number, options: object) => Executor;
  kvGeometryFor(model: Model, format: string, tokensPerBlock: number): object;
  externalBytes(): number;
}
const binding = () => loadNative().binding as unknown as Binding;

const POOL = { policy: 'kv-slab', poolBytes: 4 * 2 ** 20, slabBytes: 2 ** 20, memory: 'host' };
const loadFixture = () => binding().loadModel(fixture('stories260K.gguf'), { checkFinite: true }).promise;
// What the addon reports to V8 as external memory (process.memoryUsage().external does not include it).
const external = () => binding().externalBytes();

// A model, a pool and an executor, with one golden case's blocks allocated and its sequence added.
async function rig() {
  const model = await loadFixture();
  const pool = new (binding().KvPool)(POOL);
  const threads = new (binding().ThreadPool)(1);
  const kvModel = pool.addModel({ name: 'm', geometry: binding().kvGeometryFor(model, 'f32', 16) });
  const executor = new (binding().Executor)(model, pool, kvModel, { kvFormat: 'f32', pool: threads });
  const c = goldenCases()[1]!;
  const got = pool.alloc(kvModel, Math.ceil((c.prompt_ids.length + 8) / 16));
  assert.ok(got.ok && got.blocks !== undefined);
  executor.addSequence(7, Int32Array.from(c.prompt_ids), {});
  return { model, pool, threads, executor, blocks: got.blocks, golden: c };
}

// One step of sequence 7: `tokens` at `position`, sampling after them.
function step(executor: Executor, blocks: Uint32Array, tokens: number[], position: number): Promise<StepResult> {
  const n = Math.ceil((position + tokens.length) / 16);
  return executor.step(
    Uint32Array.of(7),
    Int32Array.from(tokens),
    Uint32Array.of(tokens.length),
    Uint32Array.of(position),
    blocks.subarray(0, n),
    Uint32Array.of(n),
    Uint8Array.of(1),
    false,
  );
}

// Greedy decoding of `count` tokens after the prompt.
async function greedy(executor: Executor, blocks: Uint32Array, prompt: number[], count: number): Promise<number[]> {
  const out: number[] = [];
  let next = (await step(executor, blocks, prompt, 0)).tokens[0]!;
  out.push(next);
  while (out.length < count) {
    next = (await step(executor, blocks, [next], prompt.length + out.length - 1)).tokens[0]!;
    out.push(next);
  }
  return out;
}

test('Model: nativeBytes, an idempotent dispose(), then ERR_MODEL_DISPOSED wherever it is used', async () => {
  const model = await loadFixture();
  assert.ok(model.nativeBytes > 0);
  assert.equal(model.nativeBytes, model.info().weightBytes);
  model.dispose();
  model.dispose();
  assert.equal(model.nativeBytes, 0);
  assert.throws(() => model.info(), { code: 'ERR_MODEL_DISPOSED', message: 'Model.info(): the Model was disposed' });
  assert.throws(() => model.metadata('general.name'), { code: 'ERR_MODEL_DISPOSED', message: /^Model\.metadata\(\)/ });
  assert.throws(() => binding().kvGeometryFor(model, 'f32', 16), { code: 'ERR_MODEL_DISPOSED', message: 'model: the Model was disposed' });
  assert.throws(() => new (binding().Executor)(model, new (binding().KvPool)(POOL), 0, {}), { code: 'ERR_MODEL_DISPOSED' });
});

test('KvPool and ThreadPool: nativeBytes, an idempotent dispose(), then ERR_KV_DISPOSED / ERR_THREAD_POOL_DISPOSED', async () => {
  const pool = new (binding().KvPool)(POOL);
  assert.equal(pool.nativeBytes, pool.stats().poolBytes);
  assert.equal(new (binding().KvPool)({ ...POOL, memory: 'none' }).nativeBytes, 0, 'an accounting-only pool holds no memory');
  pool.dispose();
  pool.dispose();
  assert.equal(pool.nativeBytes, 0);
  assert.throws(() => pool.stats(), { code: 'ERR_KV_DISPOSED', message: 'KvPool.stats(): the KvPool was disposed' });
  assert.throws(() => pool.alloc(0, 1), { code: 'ERR_KV_DISPOSED', message: /^KvPool\.alloc\(\)/ });

  const threads = new (binding().ThreadPool)(1);
  assert.equal(threads.size, 1);
  threads.dispose();
  threads.dispose();
  assert.throws(() => threads.size, { code: 'ERR_THREAD_POOL_DISPOSED', message: 'ThreadPool.size: the ThreadPool was disposed' });

  const model = await loadFixture();
  assert.throws(() => new (binding().Executor)(model, pool, 0, {}), { code: 'ERR_KV_DISPOSED', message: 'kvPool: the KvPool was disposed' });
  const live = new (binding().KvPool)(POOL);
  const kvModel = live.addModel({ name: 'm', geometry: binding().kvGeometryFor(model, 'f32', 16) });
  assert.throws(() => new (binding().Executor)(model, live, kvModel, { pool: threads }), {
    code: 'ERR_THREAD_POOL_DISPOSED',
    message: 'pool: the ThreadPool was disposed',
  });
});

test('Executor: keeps the model, KV pool and thread pool alive after their dispose(), and frees them with its own', async () => {
  const r = await rig();
  const held = r.model.nativeBytes + r.pool.nativeBytes;
  assert.ok(held > 4 * 2 ** 20);
  const before = external();
  r.model.dispose();
  r.pool.dispose();
  r.threads.dispose();
  assert.equal(r.model.nativeBytes + r.pool.nativeBytes, 0);
  // Still held by the executor: nothing was freed, and it still serves.
  assert.equal(external(), before);
  assert.deepEqual(await greedy(r.executor, r.blocks, r.golden.prompt_ids, 8), r.golden.greedy_ids.slice(0, 8));
  r.executor.dispose();
  r.executor.dispose();
  assert.equal(external(), before - held, 'the executor let go of the weights and the KV pool');
  assert.throws(() => r.executor.addSequence(8, Int32Array.of(1), {}), {
    code: 'ERR_EXECUTOR_DISPOSED',
    message: 'Executor.addSequence(): the Executor was disposed',
  });
  assert.throws(() => r.executor.removeSequence(7), { code: 'ERR_EXECUTOR_DISPOSED', message: /^Executor\.removeSequence\(\)/ });
  assert.throws(() => step(r.executor, r.blocks, [1], 0), { code: 'ERR_EXECUTOR_DISPOSED', message: /^Executor\.step\(\)/ });
});

test('Executor: dispose() during a step lets the step settle, then frees', async () => {
  const r = await rig();
  const held = r.model.nativeBytes + r.pool.nativeBytes;
  r.model.dispose();
  r.pool.dispose();
  const before = external();
  const running = step(r.executor, r.blocks, r.golden.prompt_ids, 0);
  r.executor.dispose();
  assert.equal(external(), before, 'nothing is freed under a running step');
  assert.throws(() => step(r.executor, r.blocks, [1], 0), { code: 'ERR_EXECUTOR_DISPOSED' });
  assert.equal((await running).tokens[0], r.golden.greedy_ids[0]);
  assert.equal(external(), before - held, 'freed once the step settled');
  r.executor.dispose();
});
