// EngineOptions.kvPool changes only where KV lives: each pool kind serves the fixture's golden
// greedy outputs (fp32, all at once, so sequences share and contend for the pool), gives every
// block back, and accounts the way its policy says: unified pads every model's block to the
// largest, paged maps pages and spends their modelled cost, static gives each model a partition.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Engine, EngineError } from '../lib/index.js';
import { fixture, goldenCases } from './fixtures.js';

const MiB = 2 ** 20;
const KINDS = ['kv-slab', 'static', 'unified', 'paged'] as const;

for (const kvPool of KINDS) {
  test(`kvPool '${kvPool}': golden greedy outputs for every case at once, every block returned`, async () => {
    const engine = await Engine.create({ threads: 1, slabBytes: 8 * MiB, kvPool, staticPartitions: 2, kvPoolOptions: { pageBytes: 64 * 1024, mapCostNs: 1000 } });
    try {
      // Two models of different KV formats (f32 and int8 blocks of different sizes) on one pool.
      await engine.loadModel({ id: 'f32', source: fixture('stories260K.gguf'), precision: 'fp32', maxContext: 256 });
      await engine.loadModel({ id: 'i8', source: fixture('stories260K.gguf'), precision: 'fp32-kvi8', maxContext: 256 });
      const cases = goldenCases();
      const runs = cases.map((c) => engine.generate({ model: 'f32', tokens: c.prompt_ids, maxTokens: 64, stopTokens: [1, 2] }));
      const other = cases.map((c) => engine.generate({ model: 'i8', tokens: c.prompt_ids, maxTokens: 32, stopTokens: [1, 2] }));
      const results = await Promise.all(runs.map((r) => r.result));
      await Promise.all(other.map((r) => r.result));
      results.forEach((r, i) => assert.deepEqual(r.tokens, cases[i]!.greedy_ids, `case ${i} under ${kvPool}`));

      const stats = engine.stats();
      for (const m of stats.models) assert.equal(m.liveBlocks, 0, `${m.id} gave its blocks back`);
      const kv = stats.devices[0]!.kv;
      if (kvPool === 'static') {
        assert.equal(kv.length, 2, 'one partition per model');
        for (const p of kv) assert.equal(p.poolBytes, 4 * MiB);
      } else {
        assert.equal(kv.length, 1);
        assert.equal(kv[0]!.policy, kvPool);
        assert.equal(kv[0]!.poolBytes, 8 * MiB);
        assert.ok(kv[0]!.peakLiveTokenBytes > 0, 'the pool that decides what fits saw the live tokens');
      }
      if (kvPool === 'unified') {
        const [a, b] = kv[0]!.models;
        assert.equal(a!.blockBytes, b!.blockBytes, 'every block padded to the one size');
        assert.ok(a!.blockBytes >= Math.max(a!.tokenBytes, b!.tokenBytes) * a!.geometry.tokensPerBlock);
      }
      if (kvPool === 'paged') {
        assert.ok(kv[0]!.mapCalls > 0, 'pages were mapped');
        assert.equal(kv[0]!.mapCostNs, kv[0]!.mapCalls * 1000);
      }
    } finally {
      await engine.close();
    }
  });
}

test('kvPool and kvPoolOptions are checked', async () => {
  await assert.rejects(Engine.create({ kvPool: 'buddy' as never }), (e: unknown) => e instanceof EngineError && /kvPool = "buddy": expected one of kv-slab, static, unified, paged/.test(e.message));
  await assert.rejects(Engine.create({ kvPool: 'paged', kvPoolOptions: { pageBytes: 100 } }), (e: unknown) => e instanceof EngineError && /kvPoolOptions\.pageBytes/.test(e.message));
  // A unified block smaller than a model's block names the option.
  const engine = await Engine.create({ threads: 1, slabBytes: 8 * MiB, kvPool: 'unified', kvPoolOptions: { blockBytes: 64 } });
  try {
    await assert.rejects(engine.loadModel({ id: 'm', source: fixture('stories260K.gguf'), maxContext: 64 }), /kvPoolOptions\.blockBytes/);
    assert.deepEqual(engine.models, []);
  } finally {
    await engine.close();
  }
});
