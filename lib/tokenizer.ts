/**
 * Tokenizers from a Hugging Face folder's tokenizer.json (and tokenizer_config.json), through
 * @huggingface/tokenizers. Used for calibration text and perplexity; the serving API's tokenizers
 * (GGUF-embedded vocabularies, incremental detokenisation, chat templates) build on this.
 * @module
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';

import { ModelError } from './errors.js';

/** Text to token ids and back. */
export class Tokenizer {
  readonly #inner: HfTokenizer;

  private constructor(inner: HfTokenizer) {
    this.#inner = inner;
  }

  /**
   * Reads `dir/tokenizer.json` and, when present, `dir/tokenizer_config.json` (which says whether
   * BOS is added). Throws `ModelError` `ERR_MODEL_TOKENIZER` naming the file when it is missing or
   * not a tokenizer.
   */
  static fromFolder(dir: string): Tokenizer {
    const file = join(dir, 'tokenizer.json');
    let json: unknown;
    try {
      json = JSON.parse(readFileSync(file, 'utf8'));
    } catch (err) {
      throw new ModelError('ERR_MODEL_TOKENIZER', `${file}: cannot read a tokenizer (${(err as Error).message})`, { cause: err });
    }
    let config: Record<string, unknown> = {};
    try {
      config = JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
    } catch {
      // tokenizer_config.json is optional; tokenizer.json's post-processor then decides on BOS.
    }
    try {
      return new Tokenizer(new HfTokenizer(json as object, config));
    } catch (err) {
      throw new ModelError('ERR_MODEL_TOKENIZER', `${file}: not a usable tokenizer (${(err as Error).message})`, { cause: err });
    }
  }

  /** Token ids of `text`, with the special tokens (BOS) the tokenizer's configuration adds. */
  encode(text: string): number[] {
    return this.#inner.encode(text).ids;
  }

  /** The text of `ids`; special tokens are left out. */
  decode(ids: readonly number[]): string {
    return this.#inner.decode([...ids], { skip_special_tokens: true });
  }
}
