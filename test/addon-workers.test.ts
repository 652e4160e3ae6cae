// The addon in several JS environments at once: worker_threads Workers and the main thread each load
// and serve the stories260K fixture; when the Workers exit, the main thread keeps serving and gives
// the golden greedy outputs. The addon's state is per environment (instance data), so one thread's
// constructors never serve another's objects, and an exiting Worker frees only its own.
//
// This file is also the Workers' script: in a Worker it serves once and posts the outputs back.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';

import { Model, ModelRunner } from '../lib/index.js';
import { fixture, goldenCases } from './fixtures.js';

const requests = () => goldenCases().map((c) => ({ prompt: c.prompt_ids, maxTokens: 64, stopTokens: [1, 2] }));
const generated = (out: { tokens: number[]; finishReason: string }) =>
  out.finishReason === 'stop' ? out.tokens.slice(0, -1) : out.tokens;

// Loads the model, serves every golden request `rounds` times, returns the outputs of the last round.
async function serve(source: string, rounds: number, onLoaded?: () => void): Promise<number[][]> {
  const runner = ModelRunner.create(await Model.load(source), { threads: 1 });
  onLoaded?.();
  let out: number[][] = [];
  for (let i = 0; i < rounds; i++) out = (await runner.generate(requests())).map(generated);
  return out;
}

if (!isMainThread) {
  const { source, rounds } = workerData as { source: string; rounds: number };
  parentPort!.postMessage({ outputs: await serve(source, rounds, () => parentPort!.postMessage({ loaded: true })) });
} else {
  const golden = () => goldenCases().map((c) => c.greedy_ids);

  // A Worker cannot start on a .ts file (the tsx hooks of its execArgv load after its main script
  // resolves), so it starts on this line of JS, which imports this file through tsx's API.
  const BOOT = `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((m) => m.tsImport(${JSON.stringify(import.meta.url)}, ${JSON.stringify(import.meta.url)}))`;

  // Runs this file in a Worker: `loaded` resolves once it holds its model and runner, `done` with
  // its outputs once it has exited (code 0).
  function startWorker(source: string, rounds: number): { loaded: Promise<void>; done: Promise<number[][]> } {
    let loaded!: () => void;
    const loadedP = new Promise<void>((resolve) => (loaded = resolve));
    const done = new Promise<number[][]>((resolve, reject) => {
      const w = new Worker(BOOT, { eval: true, workerData: { source, rounds } });
      let result: number[][] | undefined;
      w.on('message', (m: { loaded?: true; outputs?: number[][] }) => (m.loaded ? loaded() : (result = m.outputs)));
      w.on('error', reject);
      w.on('exit', (code) => {
        if (code !== 0) reject(new Error(`worker exited with code ${code}`));
        else if (result === undefined) reject(new Error('worker exited without a result'));
        else resolve(result);
      });
    });
    return { loaded: Promise.race([loadedP, done.then(() => undefined)]), done };
  }
  const inWorker = (source: string, rounds: number) => startWorker(source, rounds).done;

  test('two Workers and the main thread serve at once; after the Workers exit the main thread keeps serving', async () => {
    const main = ModelRunner.create(await Model.load(fixture('stories260K.gguf')), { threads: 1 });
    assert.deepEqual((await main.generate(requests())).map(generated), golden());
    const [a, b, here] = await Promise.all([
      inWorker(fixture('stories260K.gguf'), 2),
      inWorker(fixture('hf'), 2),
      (async () => {
        let out: number[][] = [];
        for (let i = 0; i < 3; i++) out = (await main.generate(requests())).map(generated);
        return out;
      })(),
    ]);
    assert.deepEqual(a, golden(), 'worker a');
    assert.deepEqual(b, golden(), 'worker b');
    assert.deepEqual(here, golden(), 'main thread while the workers ran');
    // The Workers' environments are gone: the main thread's runner, and new loads, still work.
    assert.deepEqual((await main.generate(requests())).map(generated), golden(), 'main thread after the workers exited');
    assert.deepEqual(await serve(fixture('hf'), 1), golden(), 'a new model on the main thread');
  });

  test('a Worker serves and exits, then the main thread loads and serves', async () => {
    assert.deepEqual(await inWorker(fixture('stories260K.gguf'), 1), golden(), 'worker');
    assert.deepEqual(await serve(fixture('stories260K.gguf'), 1), golden(), 'main thread after the worker exited');
    // A Worker that loads while the main thread holds a model leaves the main thread's model usable.
    const model = await Model.load(fixture('stories260K.gguf'));
    const worker = startWorker(fixture('stories260K.gguf'), 1);
    await worker.loaded;
    const runner = ModelRunner.create(model, { threads: 1 });
    assert.deepEqual((await runner.generate(requests())).map(generated), golden(), 'main thread beside a worker');
    assert.deepEqual(await worker.done, golden(), 'second worker');
    assert.deepEqual((await runner.generate(requests())).map(generated), golden(), 'main thread after the second worker');
  });
}
