// Tokenizers that do not fit their model, or are not tokenizers at all, are refused when the
// model is loaded (issue 16, item 10), not at the first step that meets a bad id. Each case copies
// the stories260K HF folder (or builds GGUF metadata) and corrupts one thing.
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';

import { Engine, Model, ModelError } from '../lib/index.js';
import { Tokenizer } from '../lib/tokenizer.js';
import { fixture } from './fixtures.js';

const root = mkdtempSync(join(tmpdir(), 'fineserve-load-validation-'));
after(() => rmSync(root, { recursive: true, force: true }));

type Json = Record<string, any>;

let copies = 0;
/** A copy of the fixture's HF folder with tokenizer.json and config.json edited in place. */
function folder(edit: { tokenizer?: (t: Json) => void; config?: (c: Json) => void; files?: Record<string, unknown> } = {}): string {
  const dir = join(root, `hf-${copies++}`);
  cpSync(fixture('hf'), dir, { recursive: true });
  for (const [name, change] of [['tokenizer.json', edit.tokenizer], ['config.json', edit.config]] as const) {
    if (change === undefined) continue;
    const json = JSON.parse(readFileSync(join(dir, name), 'utf8')) as Json;
    change(json);
    writeFileSync(join(dir, name), JSON.stringify(json));
  }
  for (const [name, value] of Object.entries(edit.files ?? {})) writeFileSync(join(dir, name), JSON.stringify(value));
  return dir;
}

function isError(code: string, ...parts: string[]): (e: unknown) => boolean {
  return (e) => {
    assert.ok(e instanceof ModelError, `not a ModelError: ${String(e)}`);
    assert.equal(e.code, code, e.message);
    for (const p of parts) assert.ok(e.message.includes(p), `message lacks ${JSON.stringify(p)}: ${e.message}`);
    return true;
  };
}

/** Keeps the ids below `n`: vocabulary entries, added tokens and the merges that need no dropped piece. */
function keepIds(t: Json, n: number): void {
  const vocab = t.model.vocab as Record<string, number>;
  t.model.vocab = Object.fromEntries(Object.entries(vocab).filter(([, id]) => id < n));
  const kept = t.model.vocab as Record<string, number>;
  t.model.merges = (t.model.merges as [string, string][]).filter(([a, b]) => a in kept && b in kept && a + b in kept);
  t.added_tokens = (t.added_tokens as { id: number }[]).filter((a) => a.id < n);
}

async function forFolder(dir: string): Promise<Tokenizer> {
  const model = await Model.load(dir, { checkFinite: false });
  try {
    return Tokenizer.forModel(model);
  } finally {
    model.dispose();
  }
}

/** GGUF metadata as a loaded model renders it, for Tokenizer.fromGguf / forModel. */
function ggufModel(values: Record<string, unknown>, vocabSize: number) {
  return {
    source: '/models/m.gguf',
    format: 'gguf' as const,
    config: { vocabSize },
    metadata: (key: string) => {
      const v = values[key];
      return v === undefined ? undefined : Array.isArray(v) ? JSON.stringify(v) : String(v);
    },
  };
}
const pieces = (n: number) => ['<unk>', '<s>', '</s>', ...Array.from({ length: n - 3 }, (_, i) => `t${i}`)];

describe('the tokenizer vocabulary against the model’s', () => {
  test('the fixture folder fits its model', async () => {
    assert.equal((await forFolder(folder())).vocabSize, 512);
  });

  test('a 300-token vocabulary against a declared 512 is refused, naming the file and both sizes', async () => {
    const dir = folder({ tokenizer: (t) => keepIds(t, 300) });
    assert.equal(Tokenizer.fromFolder(dir).vocabSize, 300);  // a tokenizer of its own, just not this model's
    await assert.rejects(forFolder(dir), isError('ERR_MODEL_TOKENIZER', join(dir, 'tokenizer.json'), 'holds 300 ids', 'vocab_size = 512'));
  });

  test('padding rows past the tokenizer, as checkpoints add, are accepted', async () => {
    const dir = folder({ tokenizer: (t) => keepIds(t, 500) });
    assert.equal((await forFolder(dir)).vocabSize, 500);
  });

  test('a vocabulary larger than the model’s is refused, naming the id', async () => {
    const dir = folder({ tokenizer: (t) => t.added_tokens.push({ id: 600, content: '<extra>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }) });
    await assert.rejects(forFolder(dir), isError('ERR_MODEL_TOKENIZER', join(dir, 'tokenizer.json'), 'token id 600', '"<extra>"', 'added token', 'vocab_size = 512'));
  });

  test('Engine.loadModel refuses it at load, not at a step', async () => {
    const dir = folder({ tokenizer: (t) => t.added_tokens.push({ id: 512, content: '<extra>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: false }) });
    const engine = await Engine.create({ threads: 1, slabBytes: 16 * 2 ** 20 });
    try {
      await assert.rejects(engine.loadModel({ id: 'bad', source: dir }), isError('ERR_MODEL_TOKENIZER', 'token id 512', 'vocab_size = 512'));
    } finally {
      await engine.close();
    }
  });

  test('a GGUF token list shorter than the model’s rows is refused', () => {
    assert.throws(
      () => Tokenizer.forModel(ggufModel({ 'tokenizer.ggml.model': 'llama', 'tokenizer.ggml.tokens': pieces(300) }, 512)),
      isError('ERR_MODEL_TOKENIZER', '/models/m.gguf', 'holds 300 ids', 'vocabulary of 512 tokens'),
    );
    assert.equal(Tokenizer.forModel(ggufModel({ 'tokenizer.ggml.model': 'llama', 'tokenizer.ggml.tokens': pieces(512) }, 512)).vocabSize, 512);
  });
});

describe('empty vocabularies and unknown tokenizer types', () => {
  test('an empty tokenizer.json vocabulary', () => {
    const dir = folder({ tokenizer: (t) => ((t.model.vocab = {}), (t.model.merges = []), (t.added_tokens = [])) });
    assert.throws(() => Tokenizer.fromFolder(dir), isError('ERR_MODEL_TOKENIZER', join(dir, 'tokenizer.json'), 'model.vocab', 'empty'));
  });

  test('an empty GGUF token list', () => {
    assert.throws(() => Tokenizer.fromGguf(ggufModel({ 'tokenizer.ggml.model': 'llama', 'tokenizer.ggml.tokens': [] }, 512), 'e.gguf'), isError('ERR_MODEL_TOKENIZER', 'e.gguf', 'tokenizer.ggml.tokens is empty'));
  });

  test('an unknown or missing tokenizer.json model.type (WordLevel, as generated folders have, is known)', () => {
    for (const type of ['Foo', 'bpe']) {
      const dir = folder({ tokenizer: (t) => (t.model.type = type) });
      assert.throws(() => Tokenizer.fromFolder(dir), isError('ERR_MODEL_TOKENIZER', join(dir, 'tokenizer.json'), 'model.type', JSON.stringify(type), 'BPE'));
    }
    const dir = folder({ tokenizer: (t) => delete t.model.type });
    assert.throws(() => Tokenizer.fromFolder(dir), isError('ERR_MODEL_TOKENIZER', 'model.type is missing'));
  });

  test('an unknown GGUF tokenizer.ggml.model', () => {
    assert.throws(() => Tokenizer.fromGguf(ggufModel({ 'tokenizer.ggml.model': 'rwkv', 'tokenizer.ggml.tokens': pieces(8) }, 8), 'k.gguf'), isError('ERR_MODEL_TOKENIZER', 'k.gguf', 'tokenizer.ggml.model', '"rwkv"'));
  });

  test('an added token without a valid id', () => {
    const dir = folder({ tokenizer: (t) => (t.added_tokens[1].id = -1) });
    assert.throws(() => Tokenizer.fromFolder(dir), isError('ERR_MODEL_TOKENIZER', join(dir, 'tokenizer.json'), 'added_tokens[1]'));
  });
});

describe('BOS/EOS ids outside the vocabulary', () => {
  test('generation_config.json eos_token_id past the model’s vocabulary', async () => {
    const dir = folder({ files: { 'generation_config.json': { bos_token_id: 1, eos_token_id: [2, 700] } } });
    await assert.rejects(forFolder(dir), isError('ERR_MODEL_TOKENIZER', join(dir, 'tokenizer.json'), 'EOS id 700', 'vocab_size = 512'));
  });

  test('config.json bos_token_id past vocab_size fails the model load', async () => {
    const dir = folder({ config: (c) => (c.bos_token_id = 600) });
    await assert.rejects(Model.load(dir), isError('ERR_MODEL_CORRUPT', join(dir, 'config.json'), 'bos_token_id', 'token id 600', 'vocab_size = 512'));
  });

  test('GGUF bos/eos/eot ids past the token list name the key; 2^32-1 is "none"', () => {
    const base = { 'tokenizer.ggml.model': 'llama', 'tokenizer.ggml.tokens': pieces(512) };
    for (const key of ['tokenizer.ggml.bos_token_id', 'tokenizer.ggml.eos_token_id', 'tokenizer.ggml.eot_token_id']) {
      assert.throws(() => Tokenizer.fromGguf(ggufModel({ ...base, [key]: 600 }, 512), 'b.gguf'), isError('ERR_MODEL_TOKENIZER', 'b.gguf', `${key} = 600`, '512 tokens'));
    }
    assert.equal(Tokenizer.fromGguf(ggufModel({ ...base, 'tokenizer.ggml.bos_token_id': 4294967295 }, 512)).bosTokenId, undefined);
  });
});
