/**
 * Which block table holds each live block id, per model, so that compaction's moves are applied
 * in O(moves): each move replaces one id at a known position of one table.
 * @module
 */

/** Anything holding block ids: a request's block table, or blocks waiting to be freed. */
export interface BlockHolder {
  readonly blocks: number[];
}

export class BlockIndex {
  readonly #holder: Map<number, BlockHolder>[];
  readonly #pos: Map<number, number>[];

  constructor(models: number) {
    this.#holder = Array.from({ length: models }, () => new Map<number, BlockHolder>());
    this.#pos = Array.from({ length: models }, () => new Map<number, number>());
  }

  /** Indexes `holder.blocks[from..]`, blocks the holder just received. */
  add(model: number, holder: BlockHolder, from = 0): void {
    const owner = this.#holder[model] as Map<number, BlockHolder>;
    const pos = this.#pos[model] as Map<number, number>;
    for (let i = from; i < holder.blocks.length; i++) {
      const b = holder.blocks[i] as number;
      owner.set(b, holder);
      pos.set(b, i);
    }
  }

  /** Forgets blocks handed back to the pool. */
  remove(model: number, blocks: readonly number[]): void {
    const owner = this.#holder[model] as Map<number, BlockHolder>;
    const pos = this.#pos[model] as Map<number, number>;
    for (const b of blocks) {
      owner.delete(b);
      pos.delete(b);
    }
  }

  size(model: number): number {
    return this.#holder[model]?.size ?? 0;
  }

  /**
   * Applies `compact`'s moves `[from0, to0, from1, to1, ...]` to the block tables, in order (a
   * block moved twice in one call is followed through).
   */
  rewrite(model: number, moves: Uint32Array): void {
    const owner = this.#holder[model] as Map<number, BlockHolder>;
    const pos = this.#pos[model] as Map<number, number>;
    for (let k = 0; k + 1 < moves.length; k += 2) {
      const from = moves[k] as number;
      const to = moves[k + 1] as number;
      const holder = owner.get(from);
      const i = pos.get(from);
      if (holder === undefined || i === undefined || holder.blocks[i] !== from) {
        throw new Error(`compaction moved block ${from} of model ${model}, which no block table holds`);
      }
      if (owner.has(to)) throw new Error(`compaction moved a block of model ${model} onto live block ${to}`);
      holder.blocks[i] = to;
      owner.delete(from);
      pos.delete(from);
      owner.set(to, holder);
      pos.set(to, i);
    }
  }
}
