/**
 * How a GGUF byte-level BPE vocabulary splits text before merging, chosen by its
 * `tokenizer.ggml.pre` name the way llama.cpp chooses it, written as the tokenizer.json
 * normalizer and pre-tokenizer the model's Hugging Face tokenizer has.
 * @module
 */

// tiktoken-style split of Llama 3: case-insensitive contractions, a letter run with at most one
// leading non-letter, digits in groups of up to three.
const LLAMA3_SPLIT =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
// Qwen2 is Llama 3's split with every digit on its own.
const QWEN2_SPLIT =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

const LLAMA3_NAMES: ReadonlySet<string> = new Set(['llama3', 'llama-bpe', 'llama-v3']);
const LLAMA3_SPLIT_NAMES: ReadonlySet<string> = new Set([...LLAMA3_NAMES, 'smaug-bpe', 'dbrx']);
const QWEN2_NAMES: ReadonlySet<string> = new Set(['qwen2', 'deepseek-r1-qwen']);

/** @internal The split regexes this module writes (the families' own, as their tokenizer.json files spell them). */
export const KNOWN_SPLITS: readonly string[] = [LLAMA3_SPLIT, QWEN2_SPLIT];

/** @internal The text handling before byte-level BPE merges, for one `tokenizer.ggml.pre`. */
export interface BytePreTokenization {
  readonly normalizer: Record<string, unknown> | null;
  readonly preTokenizer: Record<string, unknown>;
  /** Whole words already in the vocabulary are taken as they are (Llama 3 does this). */
  readonly ignoreMerges: boolean;
  /** Whether the family adds BOS when the file does not say (`tokenizer.ggml.add_bos_token`). */
  readonly addBosByDefault: boolean;
}

function split(regex: string): Record<string, unknown> {
  return {
    type: 'Sequence',
    pretokenizers: [
      { type: 'Split', pattern: { Regex: regex }, behavior: 'Isolated', invert: false },
      { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
    ],
  };
}

/**
 * @internal Pre-tokenization for `pre`: Llama 3's split (`llama-bpe`, `llama3`, and the
 * families llama.cpp gives the same regex), Qwen2's (`qwen2`), otherwise GPT-2's.
 */
export function bytePreTokenization(pre: string | undefined): BytePreTokenization {
  if (pre !== undefined && LLAMA3_SPLIT_NAMES.has(pre)) {
    return { normalizer: null, preTokenizer: split(LLAMA3_SPLIT), ignoreMerges: LLAMA3_NAMES.has(pre), addBosByDefault: LLAMA3_NAMES.has(pre) };
  }
  if (pre !== undefined && QWEN2_NAMES.has(pre)) {
    // Qwen2's tokenizer.json composes text to NFC before splitting.
    return { normalizer: { type: 'NFC' }, preTokenizer: split(QWEN2_SPLIT), ignoreMerges: false, addBosByDefault: false };
  }
  // GPT-2's own regex is the ByteLevel pre-tokenizer's built-in one.
  return {
    normalizer: null,
    preTokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    ignoreMerges: false,
    addBosByDefault: false,
  };
}
