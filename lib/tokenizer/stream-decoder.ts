/**
 * Incremental detokenization: text for each generated token as it arrives, such that the
 * chunks joined are exactly what decoding the whole sequence gives.
 * @module
 */

/** @internal What a {@link StreamDecoder} needs from its tokenizer. */
export interface StreamDecoderSource {
  /** Whether the stream drops this id (a special token when skipping them, an id with no token). */
  dropped(id: number): boolean;
  /** The text of `ids` (none dropped), decoded as a whole sequence. */
  decode(ids: readonly number[]): string;
  /** Whether the bytes of `ids` stop inside a UTF-8 character. */
  endsInsideChar(ids: readonly number[]): boolean;
}

/**
 * Turns token ids into text one at a time. `push` returns the text the new token completes,
 * possibly empty: the bytes of a character split over several tokens (byte-fallback or
 * byte-level pieces) are held back until the character is whole, so no chunk ends inside a
 * character and none shows U+FFFD for a character still arriving. The chunks of all `push`
 * calls and `flush` joined equal `decode()` of all the ids.
 *
 * Each push decodes only a short window: the tokens since the text last emitted began (the
 * "prefix", which gives the decoder its context, e.g. whether a SentencePiece "▁" is the
 * sequence's first) and the tokens not yet emitted. Cost per token does not grow with the
 * sequence.
 */
export class StreamDecoder {
  readonly #source: StreamDecoderSource;
  /** Ids from the prefix offset on; the first `#read` of them are already emitted. */
  #window: number[] = [];
  #read = 0;
  /** Text of `#window.slice(0, #read)`, decoded together with what follows. */
  #prefixText = '';
  #text = '';

  /** @internal Made by `Tokenizer.createStreamDecoder`. */
  constructor(source: StreamDecoderSource) {
    this.#source = source;
  }

  /** Everything emitted so far (all `push` and `flush` results, joined). */
  get text(): string {
    return this.#text;
  }

  /** Adds one token; returns the text it makes available (often the token's text, maybe ''). */
  push(tokenId: number): string {
    if (this.#source.dropped(tokenId)) return '';
    this.#window.push(tokenId);
    if (this.#source.endsInsideChar(this.#window.slice(this.#read))) return '';
    return this.#emit(false);
  }

  /**
   * Returns what is still held back: the start of a character whose remaining bytes never came
   * (U+FFFD, as `decode` gives it) or a token whose text no later token revealed. Call it when
   * the sequence ends.
   */
  flush(): string {
    return this.#emit(true);
  }

  #emit(force: boolean): string {
    if (this.#read === this.#window.length) return '';
    const full = this.#source.decode(this.#window);
    // Text that has not grown (a token the decoder renders as nothing, a space the decoder may
    // still strip) is held: moving the prefix past those tokens would lose their context.
    if (full.length <= this.#prefixText.length && !force) return '';
    const chunk = full.slice(this.#prefixText.length);
    this.#window = this.#window.slice(this.#read);
    this.#read = this.#window.length;
    this.#prefixText = this.#source.decode(this.#window);
    this.#text += chunk;
    return chunk;
  }
}
