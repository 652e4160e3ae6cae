/**
 * BPE merges recovered from a SentencePiece vocabulary's scores, the way transformers'
 * `SentencePieceExtractor` does when it converts a Llama tokenizer to tokenizer.json. A GGUF
 * `llama` vocabulary carries pieces and scores but no merges; with these merges, a byte-fallback
 * BPE over the same pieces gives the ids the Hugging Face Llama tokenizer gives.
 * @module
 */

/**
 * @internal Every split of a piece into two pieces that are both in the vocabulary is a merge;
 * merges are ranked by the merged piece's score (highest first), ties kept in vocabulary order
 * and, within one piece, by the ids of its halves. O(V·L) for V pieces of up to L characters.
 */
export function spmMerges(pieces: readonly string[], scores: readonly number[]): [string, string][] {
  // A later duplicate piece wins, as in the Python dict the extractor builds.
  const ids = new Map<string, number>();
  pieces.forEach((p, i) => ids.set(p, i));

  const merges: { left: string; right: string; score: number }[] = [];
  for (let i = 0; i < pieces.length; i++) {
    const piece = pieces[i]!;
    if (ids.get(piece) !== i) continue;
    const local: { left: string; right: string; l: number; r: number }[] = [];
    // Splits fall between code points (Python slices strings by code point, not UTF-16 unit).
    for (let cut = 1; cut < piece.length; cut++) {
      const unit = piece.charCodeAt(cut);
      if (unit >= 0xdc00 && unit <= 0xdfff) continue;
      const l = ids.get(piece.slice(0, cut));
      if (l === undefined) continue;
      const r = ids.get(piece.slice(cut));
      if (r !== undefined) local.push({ left: piece.slice(0, cut), right: piece.slice(cut), l, r });
    }
    local.sort((a, b) => a.l - b.l || a.r - b.r);
    // Non-finite scores arrive as null (JSON has no NaN); rank them last rather than poison the sort.
    const raw = scores[i];
    const score = typeof raw === 'number' && Number.isFinite(raw) ? raw : -Infinity;
    for (const m of local) merges.push({ left: m.left, right: m.right, score });
  }
  // Array.prototype.sort is stable, which keeps the extractor's tie order.
  merges.sort((a, b) => (a.score < b.score ? 1 : a.score > b.score ? -1 : 0));
  return merges.map((m) => [m.left, m.right]);
}
