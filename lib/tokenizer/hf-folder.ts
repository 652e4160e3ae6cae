/**
 * A Hugging Face model folder's tokenizer files: tokenizer.json, with what tokenizer_config.json
 * (BOS/EOS policy, special tokens, chat template), generation_config.json and config.json (the
 * ids that end a generation) and chat_template.jinja add to it.
 * @module
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import { ModelError } from '../errors.js';
import { bosEosPostProcessor, endOfGenerationIds } from './special-tokens.js';
import type { TokenizerJson, TokenizerSpec } from './spec.js';
import { regexes } from './vetted-regex.js';

type Json = Record<string, unknown>;

function fail(file: string, message: string, cause?: unknown): never {
  throw new ModelError('ERR_MODEL_TOKENIZER', `${file}: ${message}`, cause === undefined ? undefined : { cause });
}

function readObject(file: string, required: boolean): Json | undefined {
  if (!required && !existsSync(file)) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    return fail(file, `cannot be read as JSON (${(err as Error).message})`, err);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) fail(file, 'is not a JSON object');
  return value as Json;
}

/** A special token as tokenizer_config.json spells it: a string, or an AddedToken object. */
function tokenText(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (value !== null && typeof value === 'object' && typeof (value as Json).content === 'string') return (value as Json).content as string;
  return undefined;
}

function ids(value: unknown): number[] {
  const all = Array.isArray(value) ? value : [value];
  return all.filter((v): v is number => Number.isInteger(v) && (v as number) >= 0);
}

/**
 * The chat template, in the places transformers has kept it over time: tokenizer_config.json's
 * `chat_template` (a string, or named templates of which `default` is used, else the first),
 * then chat_template.jinja, then chat_template.json.
 */
function chatTemplate(dir: string, config: Json): string | undefined {
  const inline = config.chat_template;
  if (typeof inline === 'string') return inline;
  if (Array.isArray(inline)) {
    const named = inline.filter((t): t is { name: unknown; template: string } => typeof t === 'object' && t !== null && typeof t.template === 'string');
    return (named.find((t) => t.name === 'default') ?? named[0])?.template;
  }
  const jinja = join(dir, 'chat_template.jinja');
  if (existsSync(jinja)) return readFileSync(jinja, 'utf8');
  const template = readObject(join(dir, 'chat_template.json'), false)?.chat_template;
  return typeof template === 'string' ? template : undefined;
}

function inVocabulary(json: TokenizerJson, token: string): boolean {
  if (json.added_tokens.some((t) => t.content === token)) return true;
  const vocab = json.model.vocab;
  if (Array.isArray(vocab)) return vocab.some((entry) => Array.isArray(entry) && entry[0] === token);
  return vocab !== null && typeof vocab === 'object' && Object.hasOwn(vocab, token);
}

/**
 * The tokenizer.json model types @huggingface/tokenizers runs (WordLevel through its word-level
 * lookup); for any other name it guesses a model from the vocabulary's shape, silently.
 */
const MODEL_TYPES: readonly string[] = ['BPE', 'Unigram', 'WordPiece', 'WordLevel'];

/**
 * What the tokenizer library would otherwise accept silently: a model type it does not know (it
 * falls back to a word-level lookup), a vocabulary with no entries, added tokens without an id.
 */
function checkTokenizerJson(file: string, json: TokenizerJson): void {
  if (json.model === null || typeof json.model !== 'object' || Array.isArray(json.model)) fail(file, 'has no "model"');
  const type = json.model.type;
  if (typeof type !== 'string') fail(file, `model.type is ${type === undefined ? 'missing' : JSON.stringify(type)}; expected one of ${MODEL_TYPES.join(', ')}`);
  if (!MODEL_TYPES.includes(type)) fail(file, `model.type = ${JSON.stringify(type)} is not supported (${MODEL_TYPES.join(', ')} are)`);
  const vocab = json.model.vocab;
  if (vocab === null || typeof vocab !== 'object') fail(file, `model.vocab of the ${type} model is missing or not ${type === 'Unigram' ? 'an array' : 'an object'}`);
  const size = Array.isArray(vocab) ? vocab.length : Object.keys(vocab).length;
  if (size === 0) fail(file, `model.vocab of the ${type} model is empty (0 tokens)`);
  // Decoding runs on the serving thread for every generated token, where a regex cannot be
  // stopped; decoders replace fixed strings (SentencePiece's ▁), never need one.
  const decoderRegex = regexes(json.decoder)[0];
  if (decoderRegex !== undefined) fail(file, `decoder has a Regex pattern ${JSON.stringify(decoderRegex).slice(0, 120)}; only String patterns are supported in decoders`);
  json.added_tokens ??= [];
  if (!Array.isArray(json.added_tokens)) fail(file, 'added_tokens is not an array');
  json.added_tokens.forEach((t, i) => {
    if (t === null || typeof t !== 'object' || !Number.isSafeInteger(t.id) || t.id < 0 || typeof t.content !== 'string') {
      fail(file, `added_tokens[${i}] needs a token id (a non-negative integer) and a content string, found ${JSON.stringify(t).slice(0, 120)}`);
    }
  });
}

/**
 * @internal The tokenizer of the folder `dir`. Throws `ModelError` `ERR_MODEL_TOKENIZER` naming
 * the file when tokenizer.json is missing, any of the files is not JSON, or tokenizer.json's
 * model type is unknown, its vocabulary empty or an added token has no valid id.
 */
export function specFromFolder(dir: string): TokenizerSpec {
  const file = join(dir, 'tokenizer.json');
  const json = readObject(file, true) as TokenizerJson;
  checkTokenizerJson(file, json);
  const config = readObject(join(dir, 'tokenizer_config.json'), false) ?? {};
  const generation = readObject(join(dir, 'generation_config.json'), false) ?? {};
  const modelConfig = readObject(join(dir, 'config.json'), false) ?? {};

  const bosToken = tokenText(config.bos_token);
  const eosToken = tokenText(config.eos_token);
  // transformers rebuilds the post-processor of Llama-family tokenizers from these flags, so a
  // config that says add_bos_token: false wins over the tokenizer.json template.
  if (typeof config.add_bos_token === 'boolean' || typeof config.add_eos_token === 'boolean') {
    const bos = config.add_bos_token === true && bosToken !== undefined && inVocabulary(json, bosToken) ? bosToken : undefined;
    const eos = config.add_eos_token === true && eosToken !== undefined && inVocabulary(json, eosToken) ? eosToken : undefined;
    json.post_processor = bosEosPostProcessor(bos, eos);
  }

  const byText = new Map(json.added_tokens.map((t) => [t.content, t.id] as const));
  const extraSpecial = Array.isArray(config.additional_special_tokens) ? config.additional_special_tokens.map(tokenText) : [];
  return {
    source: file,
    json,
    config,
    // transformers no longer cleans up spaces unless the config asks for it.
    cleanUpSpaces: config.clean_up_tokenization_spaces === true,
    bosToken,
    bosTokenId: bosToken === undefined ? ids(generation.bos_token_id ?? modelConfig.bos_token_id)[0] : undefined,
    eosToken,
    eosTokenIds: endOfGenerationIds([...ids(generation.eos_token_id), ...ids(modelConfig.eos_token_id)], json.added_tokens),
    extraSpecialIds: extraSpecial.flatMap((t) => (t !== undefined && byText.has(t) ? [byText.get(t)!] : [])),
    chatTemplate: chatTemplate(dir, config),
  };
}
