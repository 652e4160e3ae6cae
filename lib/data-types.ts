/**
 * Plain data shapes that the public facades and the addon's surface (lib/native/addon-types.ts)
 * share: a model's configuration, sampling options, and what the addon's long jobs resolve with.
 * This file imports nothing, so neither side depends on the other through it.
 * @module
 */
/** Hyper-parameters of a Llama-family model. */
export interface LlamaConfig {
  readonly architecture: string;
  readonly vocabSize: number;
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly layers: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly maxContext: number;
  readonly rmsNormEps: number;
  readonly ropeTheta: number;
  readonly ropeStyle: 'interleaved' | 'half-split';
  readonly ropeScaling: string;
  readonly tiedEmbeddings: boolean;
  readonly qkvBias: boolean;
  readonly bosTokenId: number;
  readonly eosTokenId: number;
}

/** How the next token is chosen. Defaults: greedy. */
export interface SamplingOptions {
  /** 0 (default) is greedy. */
  readonly temperature?: number;
  readonly topK?: number;
  readonly topP?: number;
  readonly minP?: number;
  readonly repetitionPenalty?: number;
  readonly presencePenalty?: number;
  readonly frequencyPenalty?: number;
  /** Same seed, same tokens, alone or in any batch. */
  readonly seed?: number;
  /** Top alternatives to return with each token (0..20). */
  readonly logprobs?: number;
}

/** Result of {@link Model.perplexity}. */
export interface PerplexityResult {
  /** exp(nllSum / scored). */
  readonly perplexity: number;
  /** Sum of -ln p(token | prefix) over the scored tokens (all but the first). */
  readonly nllSum: number;
  readonly scored: number;
}

/** What {@link generateModel} wrote. */
export interface GeneratedModel {
  /** The file or folder written (`out`). */
  readonly path: string;
  /** Weights in the model (tied embeddings counted once). */
  readonly parameters: number;
  /** Bytes written, all files together. */
  readonly bytes: number;
}

/** What {@link quantizeGguf} wrote. */
export interface QuantizedGguf {
  readonly path: string;
  readonly bytes: number;
  /** Tensors written in the file type's main block type (Q4_K for `q4_k_m`). */
  readonly quantized: number;
  /**
   * Tensors written in another type, and which: norms stay F32, the output projection and Q4_K_M's
   * attn_v/ffn_down picks take Q6_K (Q8_0 in Q8_0/Q4_0 files), rows that are not whole blocks fall
   * back (Q8_0 where a multiple of 32, else the source type).
   */
  readonly kept: readonly { readonly name: string; readonly type: string }[];
}
