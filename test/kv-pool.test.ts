// The TypeScript KvPool over the native pools: typed results, typed errors, one-call steps, and
// accounting that adds up. The allocator's own rules are tested in C++ (test/cpp/test_kv_*.cc).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { type KvGeometry, KvError, KvPool, type KvPolicy, type KvPoolStats } from '../lib/index.js';

const MiB = 2 ** 20;
const llama8b: KvGeometry = { tokensPerBlock: 16, layers: 32, kvHeads: 8, headDim: 128, format: 'f16' };
const llama8bFp8: KvGeometry = { ...llama8b, format: 'fp8' };
const deep: KvGeometry = { tokensPerBlock: 16, layers: 80, kvHeads: 8, headDim: 128, format: 'int4', scaleBytes: 2 };

function code(f: () => unknown): string {
  try {
    f();
  } catch (err) {
    assert.ok(err instanceof KvError, `expected a KvError, got ${String(err)}`);
    return err.code;
  }
  assert.fail('expected a KvError');
}

function assertExact(s: KvPoolStats): void {
  assert.equal(s.poolBytes, s.freeBytes + s.unusableBytes + s.heldBytes);
  for (const m of s.models) {
    assert.equal(m.heldBytes, m.liveTokenBytes + m.internalBytes + m.externalBytes + m.tailBytes, m.name);
  }
}

function makePool(policy: KvPolicy): KvPool {
  const pool = KvPool.create({ policy, poolBytes: 512 * MiB, slabBytes: 64 * MiB, blockBytes: 5 * MiB });
  return pool;
}

test('the KV Slab shares one pool between models of different depth and format', () => {
  const slab = KvPool.create({ poolBytes: 512 * MiB, slabBytes: 64 * MiB });
  const a = slab.addModel({ name: '8b-f16', geometry: llama8b });
  const b = slab.addModel({ name: '8b-fp8', geometry: llama8bFp8 });
  const c = slab.addModel({ name: '70b-int4', geometry: deep });
  assert.equal(slab.layout(a).tokenBytes, 131072);
  assert.equal(slab.layout(b).tokenBytes, 65536 + 4096); // fp8 K's per-block references: 32 layers x 8 heads x 256 B / 16
  const r = slab.step({ allocs: [{ model: a, count: 33 }, { model: b, count: 10 }, { model: c, count: 5 }] });
  assert.deepEqual(r.allocs.map((x) => x.ok), [true, true, true]);
  const stats = slab.stats();
  assert.equal(stats.numSlabs, 8);
  assert.equal(stats.freeSlabs, 8 - 2 - 1 - 1);
  assert.deepEqual(stats.models.map((m) => m.liveBlocks), [33, 10, 5]);
  assert.deepEqual(stats.byGeometry.map((g) => g.models), [['8b-f16'], ['8b-fp8'], ['70b-int4']]);
  assertExact(stats);
  // Block ids are 64-byte granules from the pool base: disjoint byte ranges.
  const ranges = r.allocs.flatMap((x, i) =>
    x.ok ? [...x.blocks].map((id) => [id * 64, id * 64 + slab.layout([a, b, c][i]!).blockBytes] as const) : [],
  );
  ranges.sort((p, q) => p[0] - q[0]);
  for (let i = 1; i < ranges.length; i++) assert.ok(ranges[i]![0] >= ranges[i - 1]![1], 'blocks overlap');
});

test('out of memory is a result, not an exception, and changes nothing', () => {
  const slab = KvPool.create({ poolBytes: 128 * MiB, slabBytes: 64 * MiB });
  const a = slab.addModel({ name: 'a', geometry: llama8b });
  assert.equal(slab.availableBlocks(a), 64);
  const r = slab.alloc(a, 65);
  assert.deepEqual(r, { ok: false, available: 64 });
  assert.equal(slab.stats().models[0]?.liveBlocks, 0);
  assert.equal(slab.stats().models[0]?.oomCount, 1);
  const ok = slab.alloc(a, 64);
  assert.ok(ok.ok);
  assert.equal(ok.available, 0);
  assert.equal(ok.blocks.length, 64);
});

test('misuse throws KvError with a code and leaves the pool as it was', () => {
  const slab = KvPool.create({ poolBytes: 256 * MiB, slabBytes: 64 * MiB });
  const a = slab.addModel({ name: 'a', geometry: llama8b });
  const b = slab.addModel({ name: 'b', geometry: llama8bFp8 });
  const x = slab.alloc(a, 3);
  const y = slab.alloc(b, 1);
  assert.ok(x.ok && y.ok);
  const before = JSON.stringify(slab.stats());
  assert.equal(code(() => slab.free(a, [x.blocks[0]!, x.blocks[0]!])), 'ERR_KV_DOUBLE_FREE');
  assert.equal(code(() => slab.free(a, y.blocks)), 'ERR_KV_FOREIGN_BLOCK');
  assert.equal(code(() => slab.free(9, x.blocks)), 'ERR_KV_UNKNOWN_MODEL');
  assert.equal(code(() => slab.alloc(a, -1)), 'ERR_KV_INVALID_ARGUMENT');
  assert.equal(code(() => slab.alloc(a, 1.5)), 'ERR_KV_INVALID_ARGUMENT');
  assert.equal(code(() => slab.addModel({ name: 'a', geometry: llama8b })), 'ERR_KV_DUPLICATE_MODEL');
  assert.equal(
    code(() => slab.addModel({ name: 'c', geometry: { ...llama8b, format: 'fp4' as 'fp8' } })),
    'ERR_KV_INVALID_GEOMETRY',
  );
  assert.equal(code(() => slab.addModel({ name: 'd', geometry: { ...llama8b, headDim: 0 } })), 'ERR_KV_INVALID_GEOMETRY');
  assert.equal(
    code(() => slab.addModel({ name: 'e', geometry: { ...llama8b, tokensPerBlock: 1024 } })),
    'ERR_KV_OVERSIZE_GEOMETRY',
  );
  assert.equal(code(() => slab.addModel({ name: 'f', geometry: llama8b, reserveBlocks: 10_000 })), 'ERR_KV_RESERVE_UNAVAILABLE');
  assert.equal(code(() => slab.step({ liveTokens: [{ model: a, tokens: 49 }] })), 'ERR_KV_INVALID_ARGUMENT');
  assert.equal(JSON.stringify(slab.stats()), before);
  try {
    slab.addModel({ name: 'g', geometry: { ...llama8b, layers: 0 } });
  } catch (err) {
    assert.match((err as Error).message, /"g".*layers = 0/);
  }
});

test('bad pool options are refused with the option named', () => {
  assert.equal(code(() => KvPool.create({ poolBytes: -1 })), 'ERR_KV_INVALID_ARGUMENT');
  assert.equal(code(() => KvPool.create({ poolBytes: 0 })), 'ERR_KV_INVALID_ARGUMENT');
  assert.equal(code(() => KvPool.create({ poolBytes: MiB, policy: 'buddy' as KvPolicy })), 'ERR_KV_INVALID_ARGUMENT');
  assert.equal(code(() => KvPool.create({ poolBytes: 64 * MiB, slabBytes: 100 })), 'ERR_KV_INVALID_ARGUMENT');
  assert.equal(code(() => KvPool.create({ poolBytes: 64 * MiB, policy: 'unified' })), 'ERR_KV_INVALID_ARGUMENT');
  assert.throws(() => KvPool.create({ poolBytes: 64 * MiB, slabBytes: 100 }), /slabBytes = 100/);
});

test('a step frees, then allocates, then records live tokens, in one call', () => {
  const slab = KvPool.create({ poolBytes: 128 * MiB, slabBytes: 64 * MiB });
  const a = slab.addModel({ name: 'a', geometry: llama8b });
  const first = slab.step({ allocs: [{ model: a, count: 64 }], liveTokens: [{ model: a, tokens: 1000 }] });
  const blocks = first.allocs[0];
  assert.ok(blocks?.ok);
  assert.equal(slab.stats().liveTokenBytes, 1000 * 131072);
  // The pool is full: freeing 4 blocks in the same step makes room for the 4 requested.
  const second = slab.step({
    frees: [{ model: a, blocks: blocks.blocks.subarray(0, 4) }],
    allocs: [{ model: a, count: 4 }, { model: a, count: 1 }],
    liveTokens: [{ model: a, tokens: 64 * 16 }],
  });
  assert.deepEqual(second.allocs.map((r) => r.ok), [true, false]);
  const s = slab.stats();
  assert.equal(s.models[0]?.liveBlocks, 64);
  // The model ran out in this step, so its live tokens are capped at what it holds.
  assert.equal(s.models[0]?.liveTokens, 64 * 16);
  assertExact(s);
});

for (const policy of ['kv-slab', 'static', 'unified', 'paged'] as const) {
  test(`${policy}: alloc, free, and nothing left live afterwards`, () => {
    const pool = makePool(policy);
    assert.equal(pool.policy, policy);
    const ids = [llama8b, llama8bFp8, deep].map((geometry, i) =>
      pool.addModel({ name: `m${i}`, geometry, partitionBytes: 128 * MiB }),
    );
    const held = ids.map((m) => pool.alloc(m, 7));
    for (const r of held) assert.ok(r.ok);
    ids.forEach((m) => pool.setLiveTokens(m, 100));
    assertExact(pool.stats());
    ids.forEach((m, i) => {
      const r = held[i];
      if (r?.ok) pool.free(m, r.blocks);
    });
    const s = pool.stats();
    assertExact(s);
    assert.deepEqual(s.models.map((m) => m.liveBlocks), [0, 0, 0]);
    assert.equal(s.liveTokenBytes, 0);
    ids.forEach((m) => pool.removeModel(m));
    const empty = pool.stats();
    assert.equal(empty.heldBytes, 0);
    assert.equal(empty.freeBytes + empty.unusableBytes, empty.poolBytes);
  });
}

test('a host-memory pool really allocates, and block offsets stay inside it', () => {
  const slab = KvPool.create({ poolBytes: 16 * MiB, slabBytes: 4 * MiB, memory: 'host' });
  const m = slab.addModel({ name: 'tiny', geometry: { tokensPerBlock: 16, layers: 5, kvHeads: 4, headDim: 8, format: 'f32' } });
  const r = slab.alloc(m, 100);
  assert.ok(r.ok);
  const blockBytes = slab.layout(m).blockBytes;
  for (const id of r.blocks) {
    const offset = slab.blockOffset(m, id);
    assert.equal(offset, id * 64);
    assert.ok(offset + blockBytes <= 16 * MiB);
  }
});

test('compaction reclaims a model\'s stranded slabs for the other models', () => {
  const slab = KvPool.create({ poolBytes: 256 * MiB, slabBytes: 64 * MiB });
  const a = slab.addModel({ name: 'a', geometry: llama8b });     // 2 MiB blocks, 32 per slab
  const b = slab.addModel({ name: 'b', geometry: llama8bFp8 });  // 1 MiB blocks
  const got = slab.alloc(a, 128);                                // all four slabs
  assert.ok(got.ok);
  // Keep 4 blocks in each slab: 16 live blocks stranding 4 slabs.
  const keep = new Set<number>();
  const perSlab = new Map<number, number>();
  for (const id of got.blocks) {
    const s = Math.floor((id * 64) / (64 * MiB));
    if ((perSlab.get(s) ?? 0) < 4) {
      keep.add(id);
      perSlab.set(s, (perSlab.get(s) ?? 0) + 1);
    }
  }
  slab.free(a, [...got.blocks].filter((id) => !keep.has(id)));
  assert.equal(slab.availableBlocks(b), 0);
  const { released, moves } = slab.compact(a, 10);
  assert.equal(released, 3);
  assert.equal(moves.length, 2 * 12);
  for (let i = 0; i < moves.length; i += 2) {
    assert.ok(keep.delete(moves[i]!), 'moved a block that was not live');
    keep.add(moves[i + 1]!);
  }
  assert.equal(keep.size, 16);
  for (const id of keep) assert.equal(slab.blockOffset(a, id), id * 64);
  assert.equal(slab.availableBlocks(b), 3 * 60); // fp8 blocks of 1.0625 MiB (K references included): 60 per slab
  assert.equal(slab.stats().models[0]?.blocksMoved, 12);
  // Baselines have nothing to compact.
  const fixed = KvPool.create({ policy: 'static', poolBytes: 256 * MiB });
  const c = fixed.addModel({ name: 'c', geometry: llama8b, partitionBytes: 64 * MiB });
  assert.deepEqual(fixed.compact(c, 4), { released: 0, moves: new Uint32Array(0) });
});
