/**
 * A GGUF file's embedded vocabulary (the `tokenizer.ggml.*` metadata) as a tokenizer.json: a
 * SentencePiece vocabulary (`llama`) becomes the byte-fallback BPE that transformers converts
 * Llama tokenizers to, a byte-level BPE vocabulary (`gpt2`) the ByteLevel BPE it came from.
 * @module
 */
import { ModelError } from '../errors.js';
import { bytePreTokenization } from './bpe-pretokenizers.js';
import { bosEosPostProcessor, endOfGenerationIds } from './special-tokens.js';
import type { AddedTokenJson, TokenizerJson, TokenizerSpec } from './spec.js';
import { spmMerges } from './spm-merges.js';

/** Where GGUF metadata comes from: a loaded `Model`, or anything with the same accessor. */
export interface GgufMetadataSource {
  /** A metadata value as text: numbers in decimal, booleans as `true`/`false`, arrays as JSON. */
  metadata(key: string): string | undefined;
}

// llama.cpp's token types (llama_token_type).
const NORMAL = 1;
const UNKNOWN = 2;
const CONTROL = 3;
const USER_DEFINED = 4;
const BYTE = 6;

const BYTE_PIECE = /^<0x[0-9A-Fa-f]{2}>$/;

/** Reads typed values out of string-rendered metadata, failing with the key and the value. */
class MetadataReader {
  constructor(
    private readonly meta: GgufMetadataSource,
    private readonly source: string,
  ) {}

  fail(message: string): never {
    throw new ModelError('ERR_MODEL_TOKENIZER', `${this.source}: ${message}`);
  }

  string(key: string): string | undefined {
    return this.meta.metadata(key);
  }

  array(key: string, required: true): unknown[];
  array(key: string, required: false): unknown[] | undefined;
  array(key: string, required: boolean): unknown[] | undefined {
    const text = this.meta.metadata(key);
    if (text === undefined) {
      // The loader leaves out values too large to render rather than truncate them; say so.
      const omitted = this.meta.metadata('fineserve.metadata_omitted');
      if (omitted !== undefined && omitted.includes(JSON.stringify(key))) this.fail(`${key} is too large for the metadata reader and was left out`);
      if (required) this.fail(`the GGUF vocabulary has no ${key}`);
      return undefined;
    }
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      value = undefined;
    }
    if (!Array.isArray(value)) this.fail(`${key} is not an array (${text.slice(0, 80)})`);
    return value;
  }

  bool(key: string): boolean | undefined {
    const text = this.meta.metadata(key);
    if (text === undefined) return undefined;
    if (text === 'true' || text === '1') return true;
    if (text === 'false' || text === '0') return false;
    return this.fail(`${key} = ${JSON.stringify(text)} is not a boolean`);
  }

  /**
   * A token id, or undefined when absent or "none" (-1, which llama.cpp stores as 2^32-1; like
   * the model loader, any value past int32). An id past the vocabulary fails, naming the key.
   */
  tokenId(key: string, vocabSize: number): number | undefined {
    const text = this.meta.metadata(key);
    if (text === undefined) return undefined;
    const id = Number(text);
    if (!Number.isInteger(id)) this.fail(`${key} = ${JSON.stringify(text)} is not a token id`);
    if (id < 0 || id > 0x7fffffff) return undefined;
    if (id >= vocabSize) this.fail(`${key} = ${id} is outside the vocabulary: tokenizer.ggml.tokens holds ${vocabSize} tokens (ids 0..${vocabSize - 1})`);
    return id;
  }
}

function strings(reader: MetadataReader, key: string, values: unknown[]): string[] {
  values.forEach((v, i) => {
    if (typeof v !== 'string') reader.fail(`${key}[${i}] is not a string`);
  });
  return values as string[];
}

/**
 * Token types, inferred when the file has none: pieces spelled `<0xNN>` are bytes of a
 * SentencePiece vocabulary, the BOS/EOS/UNK ids control tokens, the rest normal.
 */
function tokenTypes(reader: MetadataReader, tokens: readonly string[], spm: boolean, named: readonly (number | undefined)[]): number[] {
  const stored = reader.array('tokenizer.ggml.token_type', false);
  if (stored !== undefined) {
    if (stored.length !== tokens.length) reader.fail(`tokenizer.ggml.token_type has ${stored.length} entries for ${tokens.length} tokens`);
    return stored.map((t) => (typeof t === 'number' ? t : NORMAL));
  }
  return tokens.map((t, id) => (named.includes(id) ? CONTROL : spm && BYTE_PIECE.test(t) ? BYTE : NORMAL));
}

// Python dict semantics: a later duplicate piece wins. A null-prototype object keeps pieces
// such as "__proto__" as plain keys.
function vocabRecord(tokens: readonly string[]): Record<string, number> {
  const vocab = Object.create(null) as Record<string, number>;
  tokens.forEach((t, id) => {
    vocab[t] = id;
  });
  return vocab;
}

/**
 * Control, unknown and user-defined tokens are matched in text before the model sees it, as
 * llama.cpp does; control and unknown ones are special (decode skips them), user-defined ones
 * are text. Empty pieces cannot be matched and are left to the vocabulary.
 */
function addedTokens(tokens: readonly string[], types: readonly number[]): AddedTokenJson[] {
  const added: AddedTokenJson[] = [];
  tokens.forEach((content, id) => {
    const type = types[id];
    if (content === '' || (type !== CONTROL && type !== UNKNOWN && type !== USER_DEFINED)) return;
    added.push({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: type !== USER_DEFINED });
  });
  return added;
}

function spmJson(reader: MetadataReader, tokens: string[], types: number[], unk: string | undefined, post: Record<string, unknown>): TokenizerJson {
  const scoresRaw = reader.array('tokenizer.ggml.scores', false);
  if (scoresRaw !== undefined && scoresRaw.length !== tokens.length) reader.fail(`tokenizer.ggml.scores has ${scoresRaw.length} entries for ${tokens.length} tokens`);
  // Without scores every piece ranks alike and vocabulary order decides, as llama.cpp's 0.0 default.
  const scores = scoresRaw === undefined ? tokens.map(() => 0) : scoresRaw.map((s) => (typeof s === 'number' ? s : Number.NaN));
  // SentencePiece's add_dummy_prefix: a word-initial "▁" for the first word of each text.
  const spacePrefix = reader.bool('tokenizer.ggml.add_space_prefix') ?? true;
  const replaceSpaces = { type: 'Replace', pattern: { String: ' ' }, content: '▁' };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: addedTokens(tokens, types),
    normalizer: spacePrefix ? { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '▁' }, replaceSpaces] } : replaceSpaces,
    pre_tokenizer: null,
    post_processor: post,
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: '▁' }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        ...(spacePrefix ? [{ type: 'Strip', content: ' ', start: 1, stop: 0 }] : []),
      ],
    },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: unk ?? null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      ignore_merges: false,
      vocab: vocabRecord(tokens),
      merges: spmMerges(tokens, scores),
    },
  };
}

function gpt2Json(reader: MetadataReader, tokens: string[], types: number[], pre: ReturnType<typeof bytePreTokenization>, post: Record<string, unknown>): TokenizerJson {
  const merges = strings(reader, 'tokenizer.ggml.merges', reader.array('tokenizer.ggml.merges', true)).map((m, i): [string, string] => {
    // Split at the first space after the first character, as llama.cpp reads merges.
    const at = m.indexOf(' ', 1);
    if (at < 0) reader.fail(`tokenizer.ggml.merges[${i}] = ${JSON.stringify(m)} is not two tokens separated by a space`);
    return [m.slice(0, at), m.slice(at + 1)];
  });
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: addedTokens(tokens, types),
    normalizer: pre.normalizer,
    pre_tokenizer: pre.preTokenizer,
    post_processor: post,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: pre.ignoreMerges,
      vocab: vocabRecord(tokens),
      merges,
    },
  };
}

/**
 * @internal The tokenizer a GGUF file embeds. Throws `ModelError` `ERR_MODEL_TOKENIZER` naming
 * `source` and the key when `tokenizer.ggml.model` is missing or not `llama`/`gpt2`, or the
 * vocabulary is malformed.
 */
export function specFromGguf(meta: GgufMetadataSource, source: string): TokenizerSpec {
  const reader = new MetadataReader(meta, source);
  const kind = reader.string('tokenizer.ggml.model');
  if (kind === undefined) reader.fail('no tokenizer.ggml.model: this GGUF file embeds no tokenizer');
  if (kind !== 'llama' && kind !== 'gpt2') {
    reader.fail(`tokenizer.ggml.model = ${JSON.stringify(kind)} is not supported (fineserve reads "llama" SentencePiece and "gpt2" byte-level BPE vocabularies)`);
  }
  const spm = kind === 'llama';
  const tokens = strings(reader, 'tokenizer.ggml.tokens', reader.array('tokenizer.ggml.tokens', true));
  if (tokens.length === 0) reader.fail('tokenizer.ggml.tokens is empty');

  const id = (key: string) => reader.tokenId(`tokenizer.ggml.${key}`, tokens.length);
  const bos = id('bos_token_id');
  const eos = id('eos_token_id');
  const types = tokenTypes(reader, tokens, spm, [bos, eos, id('unknown_token_id')]);
  const unkId = id('unknown_token_id') ?? types.indexOf(UNKNOWN);
  const unk = unkId >= 0 ? tokens[unkId] : undefined;

  const pre = spm ? undefined : bytePreTokenization(reader.string('tokenizer.ggml.pre'));
  const addBos = (reader.bool('tokenizer.ggml.add_bos_token') ?? (spm || pre!.addBosByDefault)) && bos !== undefined;
  const addEos = (reader.bool('tokenizer.ggml.add_eos_token') ?? false) && eos !== undefined;
  const post = bosEosPostProcessor(addBos ? tokens[bos!] : undefined, addEos ? tokens[eos!] : undefined);

  const json = spm ? spmJson(reader, tokens, types, unk, post) : gpt2Json(reader, tokens, types, pre!, post);
  return {
    source,
    json,
    // llama.cpp never rewrites spaces around punctuation when detokenizing.
    config: { clean_up_tokenization_spaces: false },
    cleanUpSpaces: false,
    bosTokenId: bos,
    eosTokenIds: endOfGenerationIds([eos, id('eot_token_id'), id('eom_token_id')], json.added_tokens),
    chatTemplate: reader.string('tokenizer.chat_template'),
    pieces: tokens,
  };
}
