/**
 * How many tokens a model's KV block holds in a pool: the block follows the pool's slab size (which
 * is cut before the models are known; see `slabSizeFor` in kv-memory.ts), so that neither the
 * slab's tail nor small blocks' padding wastes much of it.
 * @module
 */
import { type KvGeometry, KvPool } from '../kv-pool.js';

/** Share of a slab's best token count a larger block may give up (see {@link tokensPerBlockFor}). */
const BLOCK_TOKEN_SLACK = 0.05;
/** The native KV Slab's default limit on the share of a slab a block size may leave as its tail. */
const MAX_TAIL_FRACTION = 0.125;

/**
 * Tokens per KV block of a model in slabs of `slabBytes`: of `requested` and its halvings, the
 * largest whose blocks fill a slab with at least 95 % of the tokens the best of them does
 * (`blockBytesAt(t)`: the block's bytes at t tokens, as the native layout pads it; a block that
 * does not fit, or leaves more than an eighth of the slab as tail, holds none). Both ends waste:
 * one or two large blocks leave the slab's tail unused (a 16-token int8 block of an 8-layer model,
 * 67,584 B, fills half of a 128 KiB slab), while small blocks cost more per token (each layer's K
 * and V regions are padded to 64 bytes, and int4 and fp8 keep K's per-channel parameters per
 * block: the same model's int4 blocks take 2,624 B a token at 16 tokens, 6,400 at 2). With none
 * fitting it returns 1, and the pool's error names the slab.
 */
export function tokensPerBlockFor(slabBytes: number, requested: number, blockBytesAt: (tokens: number) => number): number {
  const sizes: { tokens: number; perSlab: number }[] = [];
  for (let t = Math.max(1, Math.floor(requested)); ; t = Math.max(1, Math.floor(t / 2))) {
    const block = blockBytesAt(t);
    const blocks = Math.floor(slabBytes / block);
    const tail = slabBytes - blocks * block;
    sizes.push({ tokens: t, perSlab: blocks > 0 && tail <= MAX_TAIL_FRACTION * slabBytes ? blocks * t : 0 });
    if (t === 1) break;
  }
  const best = Math.max(...sizes.map((s) => s.perSlab));
  if (best === 0) return 1;
  return sizes.find((s) => s.perSlab >= (1 - BLOCK_TOKEN_SLACK) * best)!.tokens;
}

/** Bytes of one KV block of `geometry` as the native layout pads it, measured on an accounting-only pool. */
export function blockBytesOf(geometry: Required<KvGeometry>): number {
  const probe = KvPool.create({ policy: 'paged', poolBytes: 2 ** 36 });
  try {
    return probe.layout(probe.addModel({ name: 'probe', geometry })).blockBytes;
  } finally {
    probe.dispose();
  }
}
