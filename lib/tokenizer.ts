/**
 * Tokenizers of the serving API: a Hugging Face folder's tokenizer.json (with
 * tokenizer_config.json), or the vocabulary a GGUF file embeds, run by @huggingface/tokenizers;
 * incremental detokenization for streaming; chat templates.
 * @module
 */
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';

import { ModelError } from './errors.js';
import { type ChatMessage, renderChatTemplate } from './tokenizer/chat-template.js';
import { type GgufMetadataSource, specFromGguf } from './tokenizer/gguf-vocab.js';
import { specFromFolder } from './tokenizer/hf-folder.js';
import { TokenizerThread } from './tokenizer/isolated.js';
import { runsOnlyVettedRegexes } from './tokenizer/vetted-regex.js';
import type { TokenizerSpec } from './tokenizer/spec.js';
import { StreamDecoder } from './tokenizer/stream-decoder.js';
import { utf8TailCheck } from './tokenizer/token-bytes.js';

export type { ChatMessage } from './tokenizer/chat-template.js';
export type { GgufMetadataSource } from './tokenizer/gguf-vocab.js';
export { StreamDecoder } from './tokenizer/stream-decoder.js';

/** Options of {@link Tokenizer.encode}. */
export interface TokenizerEncodeOptions {
  /** Add the special tokens the tokenizer's configuration adds (BOS, for most models). Default true. */
  readonly addSpecialTokens?: boolean;
}

/** Options of {@link Tokenizer.decode} and {@link Tokenizer.createStreamDecoder}. */
export interface TokenizerDecodeOptions {
  /** Leave out special tokens (BOS, EOS, chat control tokens). Default true. */
  readonly skipSpecialTokens?: boolean;
}

/** Options of {@link Tokenizer.applyChatTemplate}. */
export interface ChatTemplateOptions {
  /** End with the header of an assistant turn, so the model writes the reply. Default true. */
  readonly addGenerationPrompt?: boolean;
  /** A Jinja chat template to use instead of the model's own. */
  readonly template?: string;
}

/**
 * Options of {@link Tokenizer.encodeAsync} and {@link Tokenizer.applyChatTemplateAsync}: the
 * work runs on the tokenizer's worker thread under a deadline.
 */
export interface TokenizerBudgetOptions {
  /**
   * How long the job may run once started. Default: 1 s plus 0.05 ms per character of the text
   * to tokenize (about 4x what a megabyte takes), or 1 s plus 0.01 ms per character of the
   * messages to render.
   */
  readonly timeoutMs?: number | undefined;
  /** Drops the job (stops it, if running); the promise rejects with the signal's reason. */
  readonly signal?: AbortSignal | undefined;
}

/** Texts up to this many characters are tokenized inline when every regex of the tokenizer is vetted (at most a few ms). */
const INLINE_CHARS = 2048;
const BUDGET_MS = 1000;
const ENCODE_MS_PER_CHAR = 0.05;
const RENDER_MS_PER_CHAR = 0.01;

/** A model as {@link Tokenizer.forModel} needs it: where it came from and its GGUF metadata. */
export interface TokenizerModelSource extends GgufMetadataSource {
  /** The `.gguf` file, or the Hugging Face folder. */
  readonly source: string;
  readonly format: 'gguf' | 'safetensors';
  /** The model's vocabulary size (its embedding rows), which the tokenizer's ids must fit. */
  readonly config?: { readonly vocabSize: number };
}

/**
 * Rows a Hugging Face model may have past its tokenizer's vocabulary: checkpoints pad the
 * embedding (Qwen2 has 151,936 rows for 151,665 tokens, DeepSeek 102,400 for 100,015), by at most
 * this fraction of the rows, or by up to PAD_ROWS rows in a small vocabulary. A GGUF file lists a
 * token for every row (llama.cpp's converter pads the list), so it gets no allowance.
 */
const PAD_FRACTION = 1 / 16;
const PAD_ROWS = 64;

/** Text to token ids and back, streaming detokenization, chat templates. */
export class Tokenizer {
  readonly #inner: HfTokenizer;
  readonly #source: string;
  readonly #cleanUpSpaces: boolean;
  readonly #special: ReadonlySet<number>;
  readonly #added: ReadonlySet<number>;
  readonly #endsInsideChar: (ids: readonly number[]) => boolean;
  readonly #chatTemplate: string | undefined;
  readonly #bosToken: string;
  readonly #eosToken: string;
  readonly #spec: TokenizerSpec;
  readonly #vetted: boolean;
  #thread: TokenizerThread | undefined;
  #maxTokenBytes: number | undefined;

  /** The id of the beginning-of-sequence token, if the tokenizer has one. */
  readonly bosTokenId: number | undefined;
  /**
   * Ids that end a generation: the EOS token first, then end-of-turn/end-of-message tokens the
   * files name (GGUF `tokenizer.ggml.eot_token_id`/`eom_token_id`, generation_config.json's
   * `eos_token_id`) or that are special tokens of well-known chat formats (`<|eot_id|>`,
   * `<|im_end|>`, `<end_of_turn>`, ...).
   */
  readonly eosTokenIds: readonly number[];
  /** Number of token ids (one more than the largest), added tokens included. */
  readonly vocabSize: number;

  private constructor(spec: TokenizerSpec) {
    let inner: HfTokenizer;
    try {
      inner = new HfTokenizer(spec.json, { ...spec.config, clean_up_tokenization_spaces: spec.cleanUpSpaces });
    } catch (err) {
      throw new ModelError('ERR_MODEL_TOKENIZER', `${spec.source}: not a usable tokenizer (${(err as Error).message})`, { cause: err });
    }
    const model = inner.model!;
    // A GGUF vocabulary may list a piece twice; the library keeps one id per piece, and the
    // other ids must still decode to their piece.
    spec.pieces?.forEach((piece, id) => {
      model.vocab[id] ??= piece;
    });
    this.#inner = inner;
    this.#spec = spec;
    this.#vetted = runsOnlyVettedRegexes(spec.json);
    this.#source = spec.source;
    this.#cleanUpSpaces = spec.cleanUpSpaces;
    // An empty template (some converters write one) renders nothing useful: treat it as none.
    this.#chatTemplate = spec.chatTemplate === '' ? undefined : spec.chatTemplate;
    this.vocabSize = model.vocab.length;

    const added = new Set(spec.json.added_tokens.map((t) => t.id));
    this.#added = added;
    this.#special = new Set([...spec.json.added_tokens.filter((t) => t.special).map((t) => t.id), ...(spec.extraSpecialIds ?? [])]);
    this.#endsInsideChar = utf8TailCheck(spec.json.decoder, (id) => model.vocab[id], (id) => added.has(id));

    const idOf = (token: string | undefined) => (token === undefined ? undefined : inner.token_to_id(token));
    this.bosTokenId = spec.bosTokenId ?? idOf(spec.bosToken);
    this.#bosToken = spec.bosToken ?? (this.bosTokenId === undefined ? '' : (model.vocab[this.bosTokenId] ?? ''));
    const eos = idOf(spec.eosToken);
    this.eosTokenIds = Object.freeze([...new Set([...(eos === undefined ? [] : [eos]), ...spec.eosTokenIds])]);
    const firstEos = this.eosTokenIds[0];
    this.#eosToken = spec.eosToken ?? (firstEos === undefined ? '' : (model.vocab[firstEos] ?? ''));
  }

  /** @internal The tokenizer of a spec (the worker thread rebuilds its tokenizer from the main thread's). */
  static fromSpec(spec: TokenizerSpec): Tokenizer {
    return new Tokenizer(spec);
  }

  /**
   * Reads `dir/tokenizer.json` and, when present, tokenizer_config.json (`add_bos_token`,
   * `add_eos_token`, `bos_token`, `eos_token`, `chat_template`), generation_config.json and
   * config.json (`eos_token_id`s), chat_template.jinja. Throws `ModelError`
   * `ERR_MODEL_TOKENIZER` naming the file when tokenizer.json is missing or not a tokenizer.
   */
  static fromFolder(dir: string): Tokenizer {
    return new Tokenizer(specFromFolder(dir));
  }

  /**
   * The tokenizer a GGUF file embeds (`tokenizer.ggml.*`): SentencePiece (`llama`) or byte-level
   * BPE (`gpt2`, split as `tokenizer.ggml.pre` says), with its BOS/EOS policy and
   * `tokenizer.chat_template`. `source` (the file) is named in errors. Throws `ModelError`
   * `ERR_MODEL_TOKENIZER` when `tokenizer.ggml.model` is missing or another kind, or the
   * vocabulary is malformed.
   */
  static fromGguf(meta: GgufMetadataSource, source = 'GGUF metadata'): Tokenizer {
    return new Tokenizer(specFromGguf(meta, source));
  }

  /**
   * The tokenizer of a loaded model: its GGUF vocabulary, or its folder's tokenizer files. With
   * `model.config`, also checks that the tokenizer fits the model: every id it can produce (added
   * tokens included) and its BOS/EOS ids inside the model's vocabulary, and a vocabulary no
   * smaller than the model's (a GGUF file's exactly as large; an HF folder's within the padding
   * checkpoints add). Throws `ModelError` `ERR_MODEL_TOKENIZER` naming the file and both values.
   */
  static forModel(model: TokenizerModelSource): Tokenizer {
    const tokenizer = model.format === 'gguf' ? Tokenizer.fromGguf(model, model.source) : Tokenizer.fromFolder(model.source);
    if (model.config !== undefined) tokenizer.#checkFits(model.format, model.config.vocabSize);
    return tokenizer;
  }

  #checkFits(format: 'gguf' | 'safetensors', rows: number): void {
    const declared = format === 'gguf' ? `the model's vocabulary of ${rows} tokens (token_embd.weight rows)` : `config.json vocab_size = ${rows}`;
    const fail = (message: string): never => {
      throw new ModelError('ERR_MODEL_TOKENIZER', `${this.#source}: ${message}`);
    };
    const vocab = this.#inner.model!.vocab;
    const top = this.vocabSize - 1;
    if (top >= rows) {
      const added = this.#added.has(top) ? ' (an added token)' : '';
      fail(`token id ${top} (${JSON.stringify(vocab[top] ?? '')}${added}) is outside the model's vocabulary: ${declared}, and the tokenizer holds ${this.vocabSize} ids (0..${top})`);
    }
    const named: [string, number | undefined][] = [['BOS id', this.bosTokenId], ...this.eosTokenIds.map((id): [string, number] => ['EOS id', id])];
    for (const [what, id] of named) {
      if (id !== undefined && id >= rows) fail(`${what} ${id} is outside the model's vocabulary: ${declared}`);
    }
    const unused = rows - this.vocabSize;
    const allowed = format === 'gguf' ? 0 : Math.max(PAD_ROWS, Math.floor(rows * PAD_FRACTION));
    if (unused > allowed) {
      fail(
        `the tokenizer holds ${this.vocabSize} ids, but ${declared}: ${unused} rows would have no token${format === 'gguf' ? '' : ` (padding of up to ${allowed} is accepted)`}; the tokenizer is not this model's`,
      );
    }
  }

  /**
   * An upper bound on the UTF-8 bytes of text one token stands for (the longest piece as the
   * vocabulary spells it, which only overstates: byte-level and SentencePiece markers take more
   * bytes than the bytes they mean). A text of more than `maxTokenBytes · n` bytes is more than
   * `n` tokens, which is known without tokenizing it.
   */
  get maxTokenBytes(): number {
    if (this.#maxTokenBytes === undefined) {
      let max = 1;
      for (const piece of this.#inner.model!.vocab) if (piece !== undefined) max = Math.max(max, Buffer.byteLength(piece));
      this.#maxTokenBytes = max;
    }
    return this.#maxTokenBytes;
  }

  /** Whether the model brings a chat template ({@link applyChatTemplate} needs one or `template`). */
  get hasChatTemplate(): boolean {
    return this.#chatTemplate !== undefined;
  }

  /** Token ids of `text`, by default with the special tokens (BOS) the tokenizer's configuration adds. */
  encode(text: string, options: TokenizerEncodeOptions = {}): number[] {
    return this.#inner.encode(text, { add_special_tokens: options.addSpecialTokens ?? true }).ids;
  }

  /**
   * {@link encode} on the tokenizer's worker thread, so the event loop goes on meanwhile, under a
   * deadline: a tokenizer.json whose regexes backtrack without end (or a text too costly) rejects
   * with `ModelError` `ERR_MODEL_TOKENIZER_BUDGET` when the deadline passes or the thread runs out
   * of memory, and the jobs queued behind it go on in a fresh thread.
   */
  async encodeAsync(text: string, options: TokenizerEncodeOptions & TokenizerBudgetOptions = {}): Promise<number[]> {
    const timeoutMs = options.timeoutMs ?? BUDGET_MS + ENCODE_MS_PER_CHAR * text.length;
    const request = { kind: 'encode', text, addSpecialTokens: options.addSpecialTokens ?? true } as const;
    return (await this.#isolated().run(request, { timeoutMs, signal: options.signal })) as number[];
  }

  /**
   * @internal {@link encode} at once when that is known to be cheap (a short text, and every regex
   * the tokenizer runs is one of the vetted pre-tokenizer patterns), else undefined: use
   * {@link encodeAsync}.
   */
  encodeInline(text: string, options: TokenizerEncodeOptions = {}): number[] | undefined {
    return this.#vetted && text.length <= INLINE_CHARS ? this.encode(text, options) : undefined;
  }

  /**
   * {@link applyChatTemplate} on the tokenizer's worker thread under a deadline: a template that
   * loops without end (or builds a huge string) rejects with `ModelError`
   * `ERR_MODEL_TEMPLATE_BUDGET`; only this call fails.
   */
  async applyChatTemplateAsync(messages: readonly ChatMessage[], options: ChatTemplateOptions & TokenizerBudgetOptions = {}): Promise<string> {
    this.#templateOf(options);
    const chars = messages.reduce((n, m) => n + (typeof m?.content === 'string' ? m.content.length : 0), 0);
    const timeoutMs = options.timeoutMs ?? BUDGET_MS + RENDER_MS_PER_CHAR * chars;
    const request = { kind: 'render', messages, template: options.template, addGenerationPrompt: options.addGenerationPrompt ?? true } as const;
    return (await this.#isolated().run(request, { timeoutMs, signal: options.signal })) as string;
  }

  #isolated(): TokenizerThread {
    return (this.#thread ??= new TokenizerThread(this.#spec));
  }

  /**
   * The text of `ids`; special tokens are left out unless `skipSpecialTokens` is false. Ids with
   * no token (past the vocabulary, as a model's padded embedding rows are) give no text. Throws
   * `ModelError` `ERR_MODEL_TOKENIZER` for an id that is not a non-negative integer.
   */
  decode(ids: readonly number[], options: TokenizerDecodeOptions = {}): string {
    const skip = options.skipSpecialTokens ?? true;
    const kept: number[] = [];
    ids.forEach((id, i) => {
      if (!Number.isInteger(id) || id < 0) throw new ModelError('ERR_MODEL_TOKENIZER', `decode: ids[${i}] = ${id} is not a token id`);
      if (!this.#dropped(id, skip)) kept.push(id);
    });
    return this.#decodeKept(kept);
  }

  /**
   * A decoder for a sequence that arrives one token at a time (see {@link StreamDecoder}); its
   * chunks joined equal {@link decode} of the whole sequence with the same options.
   */
  createStreamDecoder(options: TokenizerDecodeOptions = {}): StreamDecoder {
    const skip = options.skipSpecialTokens ?? true;
    return new StreamDecoder({
      dropped: (id) => {
        if (!Number.isInteger(id) || id < 0) throw new ModelError('ERR_MODEL_TOKENIZER', `StreamDecoder.push: ${id} is not a token id`);
        return this.#dropped(id, skip);
      },
      decode: (ids) => this.#decodeKept(ids),
      endsInsideChar: this.#endsInsideChar,
    });
  }

  /**
   * The prompt text of a conversation, rendered with the model's chat template (or
   * `options.template`) the way transformers renders it: variables `messages`, `bos_token`,
   * `eos_token`, `add_generation_prompt`. Templates usually write BOS themselves, so encode the
   * result with `{ addSpecialTokens: false }`. Throws `ModelError` `ERR_MODEL_TOKENIZER` when
   * there is no template, or it fails to parse or render (Jinja's message included).
   */
  applyChatTemplate(messages: readonly ChatMessage[], options: ChatTemplateOptions = {}): string {
    const template = this.#templateOf(options);
    return renderChatTemplate(options.template === undefined ? this.#source : 'options.template', template, messages, {
      bosToken: this.#bosToken,
      eosToken: this.#eosToken,
      addGenerationPrompt: options.addGenerationPrompt ?? true,
    });
  }

  #templateOf(options: ChatTemplateOptions): string {
    const template = options.template ?? this.#chatTemplate;
    if (template === undefined) {
      throw new ModelError(
        'ERR_MODEL_TOKENIZER',
        `${this.#source}: the model has no chat template; pass options.template (a Jinja chat template) or send a prompt instead of messages`,
      );
    }
    return template;
  }

  #dropped(id: number, skipSpecial: boolean): boolean {
    return this.#inner.model!.vocab[id] === undefined || (skipSpecial && this.#special.has(id));
  }

  #decodeKept(ids: readonly number[]): string {
    // The library rejects an empty list rather than decoding it to nothing.
    if (ids.length === 0) return '';
    return this.#inner.decode([...ids], { skip_special_tokens: false, clean_up_tokenization_spaces: this.#cleanUpSpaces });
  }
}
