/**
 * The shape every tokenizer source (a Hugging Face folder, a GGUF vocabulary) is turned into
 * before one {@link Tokenizer} class serves them all.
 * @module
 */

/** @internal One entry of tokenizer.json's `added_tokens`. */
export interface AddedTokenJson {
  id: number;
  content: string;
  single_word: boolean;
  lstrip: boolean;
  rstrip: boolean;
  normalized: boolean;
  special: boolean;
}

/** @internal The parts of a tokenizer.json that @huggingface/tokenizers reads. */
export interface TokenizerJson {
  added_tokens: AddedTokenJson[];
  normalizer: Record<string, unknown> | null;
  pre_tokenizer: Record<string, unknown> | null;
  post_processor: Record<string, unknown> | null;
  decoder: Record<string, unknown> | null;
  model: Record<string, unknown>;
  [key: string]: unknown;
}

/** @internal A tokenizer's definition, whatever file it came from. */
export interface TokenizerSpec {
  /** What is named in error messages: the file the tokenizer came from. */
  readonly source: string;
  readonly json: TokenizerJson;
  /** tokenizer_config.json-style options @huggingface/tokenizers reads (e.g. `remove_space`). */
  readonly config: Record<string, unknown>;
  /** Apply transformers' `clean_up_tokenization_spaces` (" ." → ".") when decoding. */
  readonly cleanUpSpaces: boolean;
  /** BOS by text, by id, or both; the Tokenizer resolves whichever is missing. */
  readonly bosToken?: string | undefined;
  readonly bosTokenId?: number | undefined;
  readonly eosToken?: string | undefined;
  /** End-of-generation ids besides the EOS token: eot/eom ids the files name. */
  readonly eosTokenIds: readonly number[];
  /** Ids decode leaves out with `skipSpecialTokens`, besides added tokens marked special. */
  readonly extraSpecialIds?: readonly number[];
  readonly chatTemplate?: string | undefined;
  /** Every id's piece, when the vocabulary may hold a piece more than once (GGUF). */
  readonly pieces?: readonly string[];
}
