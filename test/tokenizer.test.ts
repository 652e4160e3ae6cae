// Tokenizers of the serving API. The stories260K GGUF's embedded SentencePiece vocabulary is
// checked against the independent HF tokenizer.json of the same model and the golden prompt ids;
// a small byte-level BPE vocabulary is built here, its expected ids worked out by hand.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';

import { generateModel, Model, ModelError } from '../lib/index.js';
import { type ChatMessage, type StreamDecoder, Tokenizer } from '../lib/tokenizer.js';
import { byteLevelChar } from '../lib/tokenizer/byte-level.js';
import { spmMerges } from '../lib/tokenizer/spm-merges.js';
import { fixture, goldenCases } from './fixtures.js';

const dir = mkdtempSync(join(tmpdir(), 'fineserve-tokenizer-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const MULTIBYTE = 'héllo wörld 日本 🙂 ∑x';

function isTokenizerError(e: unknown, ...parts: string[]): boolean {
  return e instanceof ModelError && e.code === 'ERR_MODEL_TOKENIZER' && parts.every((p) => e.message.includes(p));
}

/** Pushes `ids` one at a time; checks every chunk is whole text; returns the chunks (flush last). */
function streamChunks(decoder: StreamDecoder, ids: readonly number[]): string[] {
  const chunks = ids.map((id) => decoder.push(id));
  chunks.push(decoder.flush());
  for (const [i, c] of chunks.entries()) {
    assert.ok(!c.includes('\uFFFD'), `chunk ${i} ${JSON.stringify(c)} has U+FFFD`);
    const last = c.charCodeAt(c.length - 1);
    assert.ok(!(last >= 0xd800 && last <= 0xdbff), `chunk ${i} ends in a lone high surrogate`);
  }
  assert.equal(decoder.text, chunks.join(''));
  return chunks;
}

/** GGUF metadata as Model.metadata renders it: strings as they are, arrays as JSON. */
function fakeGguf(values: Record<string, string | number | boolean | readonly unknown[]>): { metadata(key: string): string | undefined } {
  return {
    metadata: (key) => {
      const v = values[key];
      return v === undefined ? undefined : Array.isArray(v) ? JSON.stringify(v) : String(v);
    },
  };
}

describe('stories260K: GGUF-embedded SentencePiece vocabulary', async () => {
  const model = await Model.load(fixture('stories260K.gguf'), { checkFinite: false });
  const gguf = Tokenizer.forModel(model);
  const hf = Tokenizer.fromFolder(fixture('hf'));
  const hfJson = JSON.parse(readFileSync(fixture('hf/tokenizer.json'), 'utf8')) as { model: { merges: [string, string][] } };

  test('merges derived from the scores are the HF tokenizer.json merges', () => {
    const tokens = JSON.parse(model.metadata('tokenizer.ggml.tokens')!) as string[];
    const scores = JSON.parse(model.metadata('tokenizer.ggml.scores')!) as number[];
    assert.deepEqual(spmMerges(tokens, scores), hfJson.model.merges);
  });

  test('gives the ids of the HF tokenizer for every line of eval.txt, and for the whole text', () => {
    const text = readFileSync(fixture('eval.txt'), 'utf8');
    const samples = [...text.split('\n'), text, MULTIBYTE, '  two  spaces ', 'tabs\tand\nnewlines\n', '<s>literal</s> specials', ''];
    for (const s of samples) assert.deepEqual(gguf.encode(s), hf.encode(s), JSON.stringify(s));
    assert.ok(gguf.encode(text).length > 400);
  });

  test('encodes the golden prompts to their ids (BOS included), and without BOS when asked', () => {
    for (const c of goldenCases()) {
      assert.deepEqual(gguf.encode(c.prompt), c.prompt_ids, JSON.stringify(c.prompt));
      assert.deepEqual(hf.encode(c.prompt), c.prompt_ids, JSON.stringify(c.prompt));
      assert.deepEqual(gguf.encode(c.prompt, { addSpecialTokens: false }), c.prompt_ids.slice(1));
    }
  });

  test('knows BOS, EOS and the vocabulary size like the HF folder', () => {
    for (const t of [gguf, hf]) {
      assert.equal(t.bosTokenId, 1);
      assert.deepEqual(t.eosTokenIds, [2]);
      assert.equal(t.vocabSize, 512);
      assert.equal(t.hasChatTemplate, false);
    }
  });

  test('decode round-trips text and agrees with the HF tokenizer on the golden continuations', () => {
    for (const s of ['Once upon a time, there was a cat.', MULTIBYTE, '  two  spaces ']) {
      assert.equal(gguf.decode(gguf.encode(s)), s);
    }
    for (const c of goldenCases()) {
      const ids = [...c.prompt_ids, ...c.greedy_ids];
      assert.equal(gguf.decode(ids), hf.decode(ids));
      assert.equal(gguf.decode(ids, { skipSpecialTokens: false }), hf.decode(ids, { skipSpecialTokens: false }));
      assert.ok(gguf.decode(ids).startsWith(c.prompt));
    }
    assert.equal(gguf.decode([1, 2]), '');
    assert.equal(gguf.decode([1, ...gguf.encode('Hi', { addSpecialTokens: false }), 2], { skipSpecialTokens: false }), '<s> Hi</s>');
    assert.equal(gguf.decode([]), '');
    // Ids past the vocabulary (padded embedding rows) give no text; non-ids are errors.
    assert.equal(gguf.decode([...gguf.encode('Hi'), 9999]), 'Hi');
    assert.throws(() => gguf.decode([-1]), (e) => isTokenizerError(e, 'ids[0]'));
    assert.throws(() => gguf.decode([1.5]), (e) => isTokenizerError(e));
  });

  test('StreamDecoder chunks join to decode() for the golden continuations', () => {
    for (const c of goldenCases()) {
      const ids = [...c.prompt_ids, ...c.greedy_ids];
      for (const skipSpecialTokens of [true, false]) {
        const chunks = streamChunks(gguf.createStreamDecoder({ skipSpecialTokens }), ids);
        assert.equal(chunks.join(''), gguf.decode(ids, { skipSpecialTokens }));
      }
      // Token by token, not all at the end.
      const chunks = streamChunks(gguf.createStreamDecoder(), c.greedy_ids);
      assert.ok(chunks.filter((x) => x !== '').length > c.greedy_ids.length / 2);
    }
  });

  test('StreamDecoder holds byte-fallback pieces until a character is whole', () => {
    const ids = gguf.encode(MULTIBYTE);
    const byteTokens = ids.filter((id) => /^<0x[0-9A-F]{2}>$/.test(JSON.parse(model.metadata('tokenizer.ggml.tokens')!)[id]));
    assert.ok(byteTokens.length >= 10, 'the text should fall back to byte tokens');
    const chunks = streamChunks(gguf.createStreamDecoder(), ids);
    assert.equal(chunks.join(''), gguf.decode(ids));
    assert.equal(chunks.join(''), MULTIBYTE);
    assert.ok(chunks.includes('🙂') && chunks.includes('日'), JSON.stringify(chunks));
    // Special tokens and leading spaces mid-stream, and a stream that ends inside a character.
    const mixed = [1, ...gguf.encode(' Hi  there', { addSpecialTokens: false }), 2, ...ids, 2];
    for (const skipSpecialTokens of [true, false]) {
      assert.equal(streamChunks(gguf.createStreamDecoder({ skipSpecialTokens }), mixed).join(''), gguf.decode(mixed, { skipSpecialTokens }));
    }
    const cut = ids.slice(0, -1);
    const d = gguf.createStreamDecoder();
    const held = cut.map((id) => d.push(id)).join('');
    assert.ok(!held.includes('\uFFFD'));
    assert.equal(held + d.flush(), gguf.decode(cut));
  });

  test('forModel on the HF folder reads its tokenizer files', async () => {
    const folder = Tokenizer.forModel(await Model.load(fixture('hf'), { checkFinite: false }));
    assert.deepEqual(folder.encode('Once upon a time'), goldenCases()[1]!.prompt_ids);
  });

  test('chat templates render with bos_token/eos_token; without one it is a typed error', () => {
    assert.throws(
      () => gguf.applyChatTemplate([{ role: 'user', content: 'hi' }]),
      (e) => isTokenizerError(e, 'stories260K.gguf', 'no chat template', 'template'),
    );
    const text = gguf.applyChatTemplate([{ role: 'user', content: 'hi' }], {
      template: '{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}{{ eos_token }}{% endfor %}',
    });
    assert.equal(text, '<s>[user] hi</s>');
    assert.deepEqual(gguf.encode(text, { addSpecialTokens: false }).slice(0, 1), [1]);
  });
});

describe('byte-level BPE vocabulary (GGUF tokenizer.ggml.model = gpt2)', () => {
  // Ids 0..255 are the bytes, in byte order; then what the merges make; then added tokens.
  const merged = ['Ġt', 'he', 'Ġthe', 'at', 'cat', 'Ġcat', '34', "'S", '12', 'dog'];
  const added = ['<|endoftext|>', '<|im_start|>', '<|im_end|>', '<tool>'];
  const tokens = [...Array.from({ length: 256 }, (_, b) => byteLevelChar(b)), ...merged, ...added];
  const MERGES = ['Ġ t', 'h e', 'Ġt he', 'a t', 'c at', 'Ġ cat', '3 4', "' S", '1 2'];
  const id = (t: string) => tokens.indexOf(t);
  const byte = (c: string) => c.charCodeAt(0);
  const [EOT, IM_START, IM_END, TOOL] = added.map(id) as [number, number, number, number];
  const meta = (extra: Record<string, string | number | boolean> = {}) =>
    fakeGguf({
      'tokenizer.ggml.model': 'gpt2',
      'tokenizer.ggml.tokens': tokens,
      'tokenizer.ggml.token_type': tokens.map((t) => (t === '<tool>' ? 4 : t.startsWith('<|') ? 3 : 1)),
      'tokenizer.ggml.merges': MERGES,
      'tokenizer.ggml.bos_token_id': EOT,
      'tokenizer.ggml.eos_token_id': EOT,
      'tokenizer.ggml.eot_token_id': IM_END,
      'tokenizer.ggml.padding_token_id': 4294967295,
      ...extra,
    });
  const gpt2 = Tokenizer.fromGguf(meta(), 'test.gguf');

  test('merges by rank within pre-tokenized words; no BOS by default', () => {
    // "the" → t,h,e → t,he ("Ġt he" needs "Ġt"); " cat" → Ġ,c,at → Ġ,cat → Ġcat.
    assert.deepEqual(gpt2.encode('the cat'), [byte('t'), id('he'), id('Ġcat')]);
    assert.deepEqual(gpt2.encode(' the cat'), [id('Ġthe'), id('Ġcat')]);
    assert.equal(gpt2.vocabSize, tokens.length);
    assert.equal(gpt2.bosTokenId, EOT);
    assert.deepEqual(gpt2.eosTokenIds, [EOT, IM_END]);
  });

  test('the pre-tokenizer follows tokenizer.ggml.pre', () => {
    const llama3 = Tokenizer.fromGguf(meta({ 'tokenizer.ggml.pre': 'llama-bpe' }));
    const qwen2 = Tokenizer.fromGguf(meta({ 'tokenizer.ggml.pre': 'qwen2' }));
    const digits = [...'12345'].map(byte);
    // GPT-2 keeps "12345" one word: "3 4" (ranked first), then "1 2". Llama 3 splits 123|45,
    // Qwen2 every digit; and Qwen2 composes to NFC first.
    assert.deepEqual(gpt2.encode('12345'), [id('12'), id('34'), byte('5')]);
    assert.deepEqual(llama3.encode('12345', { addSpecialTokens: false }), [id('12'), ...digits.slice(2)]);
    assert.deepEqual(qwen2.encode('12345'), digits);
    assert.deepEqual(gpt2.encode('e\u0301'), [0x65, 0xcc, 0x81]);
    assert.deepEqual(qwen2.encode('e\u0301'), [0xc3, 0xa9]);
    // Llama 3's contractions are case-insensitive: "'S" stays one word and merges.
    assert.deepEqual(gpt2.encode("IT'S"), [byte('I'), byte('T'), byte("'"), byte('S')]);
    assert.deepEqual(llama3.encode("IT'S", { addSpecialTokens: false }), [byte('I'), byte('T'), id("'S")]);
    // Llama 3 takes a word that is in the vocabulary as it is (ignore_merges), and adds BOS.
    assert.deepEqual(gpt2.encode('dog'), [...'dog'].map(byte));
    assert.deepEqual(llama3.encode('dog'), [EOT, id('dog')]);
    assert.deepEqual(Tokenizer.fromGguf(meta({ 'tokenizer.ggml.add_bos_token': true })).encode('at'), [EOT, id('at')]);
  });

  test('control tokens are special, user-defined ones are text', () => {
    const ids = gpt2.encode('<|im_start|>user a<tool>b<|im_end|>');
    assert.deepEqual(ids, [IM_START, ...[...'user'].map(byte), byte(' '), byte('a'), TOOL, byte('b'), IM_END]);
    assert.equal(gpt2.decode(ids), 'user a<tool>b');
    assert.equal(gpt2.decode(ids, { skipSpecialTokens: false }), '<|im_start|>user a<tool>b<|im_end|>');
  });

  test('decode round-trips multi-byte text, and streams it whole character by character', () => {
    const ids = gpt2.encode(MULTIBYTE);
    assert.equal(ids.length, new TextEncoder().encode(MULTIBYTE).length);
    assert.equal(gpt2.decode(ids), MULTIBYTE);
    const chunks = streamChunks(gpt2.createStreamDecoder(), ids);
    assert.equal(chunks.join(''), MULTIBYTE);
    assert.ok(chunks.includes('🙂') && chunks.includes('∑'));
    const mixed = [IM_START, ...ids, IM_END, ...gpt2.encode(' the cat')];
    for (const skipSpecialTokens of [true, false]) {
      assert.equal(streamChunks(gpt2.createStreamDecoder({ skipSpecialTokens }), mixed).join(''), gpt2.decode(mixed, { skipSpecialTokens }));
    }
  });

  test('an HF folder with the same vocabulary gives the same ids; tokenizer_config.json has the say', () => {
    const folder = join(dir, 'bpe');
    mkdirSync(folder);
    const vocab = Object.fromEntries(tokens.slice(0, 256 + merged.length).map((t, i) => [t, i]));
    const addedTokens = added.map((content) => ({ id: id(content), content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: content !== '<tool>' }));
    const tokenizerJson = {
      version: '1.0',
      added_tokens: addedTokens,
      normalizer: null,
      pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
      // Adds <|endoftext|> in front; tokenizer_config.json's add_bos_token: false must win.
      post_processor: { type: 'TemplateProcessing', single: [{ SpecialToken: { id: '<|endoftext|>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }], pair: [] },
      decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
      model: { type: 'BPE', dropout: null, unk_token: null, vocab, merges: MERGES },
    };
    writeFileSync(join(folder, 'tokenizer.json'), JSON.stringify(tokenizerJson));
    writeFileSync(join(folder, 'generation_config.json'), JSON.stringify({ eos_token_id: [EOT, IM_END] }));
    writeFileSync(
      join(folder, 'tokenizer_config.json'),
      JSON.stringify({
        add_bos_token: false,
        bos_token: null,
        eos_token: { content: '<|im_end|>', __type: 'AddedToken' },
        chat_template: [
          { name: 'tool_use', template: 'tools!' },
          { name: 'default', template: "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}" },
        ],
      }),
    );
    const hf = Tokenizer.fromFolder(folder);
    for (const s of ['the cat', ' the cat', '12345', "IT'S", MULTIBYTE, '<|im_start|>user a<tool>b<|im_end|>']) {
      assert.deepEqual(hf.encode(s), gpt2.encode(s), JSON.stringify(s));
    }
    assert.equal(hf.bosTokenId, undefined);
    assert.deepEqual(hf.eosTokenIds, [IM_END, EOT]);
    assert.equal(hf.hasChatTemplate, true);
    assert.equal(hf.applyChatTemplate([{ role: 'user', content: 'Hi' }]), '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n');
    assert.equal(hf.applyChatTemplate([{ role: 'user', content: 'Hi' }], { addGenerationPrompt: false }), '<|im_start|>user\nHi<|im_end|>\n');
    writeFileSync(join(folder, 'tokenizer_config.json'), JSON.stringify({ add_bos_token: true, bos_token: '<|endoftext|>' }));
    assert.deepEqual(Tokenizer.fromFolder(folder).encode('at'), [EOT, id('at')]);
    assert.equal(Tokenizer.fromFolder(folder).hasChatTemplate, false);
  });
});

test('a generated GGUF (add_bos_token stored as a bool) tokenizes through Model.metadata', async () => {
  const out = join(dir, 'generated.gguf');
  await generateModel({ shape: 'tiny', layers: 1, vocab: 300, format: 'gguf', out });
  const model = await Model.load(out, { checkFinite: false });
  assert.equal(model.metadata('tokenizer.ggml.add_bos_token'), 'true');
  const t = Tokenizer.forModel(model);
  assert.equal(t.vocabSize, 300);
  // Its pieces are placeholders, so the normalized text ("▁" for the space prefix) falls back
  // to one byte token (id 3 + byte) per byte.
  const ids = t.encode('Hé');
  assert.deepEqual(ids, [1, ...[...new TextEncoder().encode('▁Hé')].map((b) => 3 + b)]);
  // (Past BOS and the "▁" bytes: a vocabulary without "▁" gets it back as bytes, after the
  // decoder's "▁" → " " step, exactly as HF's Llama decoder does.)
  assert.equal(t.decode(ids.slice(4)), 'Hé');
});

describe('chat templates', () => {
  const withTemplate = (template: string) =>
    Tokenizer.fromGguf(
      fakeGguf({
        'tokenizer.ggml.model': 'gpt2',
        'tokenizer.ggml.tokens': [...Array.from({ length: 256 }, (_, b) => byteLevelChar(b)), '<|begin_of_text|>', '<|eot_id|>'],
        'tokenizer.ggml.token_type': [...Array.from({ length: 256 }, () => 1), 3, 3],
        'tokenizer.ggml.merges': [],
        'tokenizer.ggml.bos_token_id': 256,
        'tokenizer.ggml.eos_token_id': 257,
        'tokenizer.chat_template': template,
      }),
      'chat.gguf',
    );
  const conversation: ChatMessage[] = [
    { role: 'system', content: 'Be brief.' },
    { role: 'user', content: ' Hello? ' },
  ];
  const LLAMA3 =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";
  const CHATML =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

  test('a Llama-3 template from the GGUF metadata', () => {
    const t = withTemplate(LLAMA3);
    assert.equal(t.hasChatTemplate, true);
    assert.equal(
      t.applyChatTemplate(conversation),
      '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>' +
        '<|start_header_id|>user<|end_header_id|>\n\nHello?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n',
    );
    const ids = t.encode(t.applyChatTemplate(conversation), { addSpecialTokens: false });
    assert.equal(ids[0], 256);
    assert.equal(ids.filter((x) => x === 257).length, 2);
    assert.deepEqual(t.eosTokenIds, [257]);
  });

  test('a ChatML template passed in overrides the model’s', () => {
    const t = withTemplate(LLAMA3);
    assert.equal(
      t.applyChatTemplate([{ role: 'user', content: 'Hi' }], { template: CHATML }),
      '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n',
    );
    assert.equal(
      t.applyChatTemplate(conversation, { template: CHATML, addGenerationPrompt: false }),
      '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n Hello? <|im_end|>\n',
    );
  });

  test('templates that fail to parse or render are typed errors carrying Jinja’s message', () => {
    assert.throws(() => withTemplate('{% for %}').applyChatTemplate(conversation), (e) => isTokenizerError(e, 'chat.gguf', 'cannot be parsed'));
    const strict = "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}ok";
    assert.throws(() => withTemplate(strict).applyChatTemplate(conversation), (e) => isTokenizerError(e, 'failed to render', 'System role not supported'));
    assert.equal(withTemplate(strict).applyChatTemplate([{ role: 'user', content: 'x' }]), 'ok');
  });
});

describe('typed errors for missing or unsupported tokenizers', () => {
  test('a GGUF without tokenizer.ggml.model, or with another kind, names the file and the value', () => {
    assert.throws(() => Tokenizer.fromGguf(fakeGguf({}), '/models/x.gguf'), (e) => isTokenizerError(e, '/models/x.gguf', 'tokenizer.ggml.model'));
    assert.throws(
      () => Tokenizer.fromGguf(fakeGguf({ 'tokenizer.ggml.model': 'bert', 'tokenizer.ggml.tokens': ['a'] }), '/models/y.gguf'),
      (e) => isTokenizerError(e, '/models/y.gguf', '"bert"'),
    );
    assert.throws(
      () => Tokenizer.fromGguf(fakeGguf({ 'tokenizer.ggml.model': 'gpt2', 'tokenizer.ggml.tokens': ['a'] }), 'z.gguf'),
      (e) => isTokenizerError(e, 'z.gguf', 'tokenizer.ggml.merges'),
    );
  });

  test('a folder without tokenizer.json names the file', () => {
    const empty = join(dir, 'empty');
    mkdirSync(empty);
    assert.throws(() => Tokenizer.fromFolder(empty), (e) => isTokenizerError(e, join(empty, 'tokenizer.json')));
  });
});
