// The OpenAI-compatible server against a client nobody here wrote: the official `openai` package,
// talking to a live server on 127.0.0.1 that serves the stories260K fixture. Outputs are checked
// against the same requests made to the Engine in process; errors against the client's own typed
// errors; the metrics page against an independent Prometheus text parser.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { after, before, test } from 'node:test';

import OpenAI from 'openai';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';

import { Engine } from '../lib/index.js';
import { CHATML_TEMPLATE } from '../lib/cli/serve.js';
import { createServer, type FineserveServer } from '../lib/server/index.js';
import { fixture } from './fixtures.js';

const GGUF = fixture('stories260K.gguf');
let engine: Engine;
let server: FineserveServer;
let client: OpenAI;
let base = '';

before(async () => {
  engine = await Engine.create({ threads: 1, slabBytes: 16 * 2 ** 20 });
  await engine.loadModel({ id: 'm', source: GGUF, slo: { ttftMs: 30_000 }, chatTemplate: CHATML_TEMPLATE });
  server = createServer(engine, { maxQueue: 64 });
  base = await server.listen({ host: '127.0.0.1', port: 0 });
  // The client retries 429/5xx by default; these tests look at the first answer.
  client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'unused', maxRetries: 0 });
});

after(async () => {
  await server.close();
  await engine.close();
});

async function waitFor(what: string, ok: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('completions: greedy text and usage equal the engine in process, whole and streamed', async () => {
  const direct = await engine.generate({ model: 'm', prompt: 'Once upon a time', maxTokens: 24 }).result;
  const whole = await client.completions.create({ model: 'm', prompt: 'Once upon a time', max_tokens: 24, temperature: 0 });
  assert.equal(whole.object, 'text_completion');
  assert.equal(whole.choices[0]!.text, direct.text);
  assert.equal(whole.choices[0]!.finish_reason, direct.finishReason);
  assert.deepEqual(whole.usage, { prompt_tokens: direct.promptTokens, completion_tokens: direct.tokens.length, total_tokens: direct.promptTokens + direct.tokens.length });

  const stream = await client.completions.create({ model: 'm', prompt: 'Once upon a time', max_tokens: 24, temperature: 0, stream: true, stream_options: { include_usage: true } });
  let text = '';
  let finish: string | null = null;
  let usage: OpenAI.CompletionUsage | undefined;
  for await (const chunk of stream) {
    for (const c of chunk.choices) {
      text += c.text;
      finish = c.finish_reason ?? finish;
    }
    if (chunk.usage) usage = chunk.usage;
  }
  assert.equal(text, direct.text);
  assert.equal(finish, direct.finishReason);
  assert.equal(usage?.completion_tokens, direct.tokens.length);

  // Token ids as the prompt, as the API allows.
  const ids = engine.tokenizer('m').encode('Once upon a time');
  const byIds = await client.completions.create({ model: 'm', prompt: ids, max_tokens: 24 });
  assert.equal(byIds.choices[0]!.text, direct.text);
});

test('chat: a streamed answer equals the whole one; seeded sampling repeats; logprobs in both shapes', async () => {
  const messages = [{ role: 'user' as const, content: 'Tell me a story about a cat.' }];
  const whole = await client.chat.completions.create({ model: 'm', messages, max_tokens: 20, temperature: 0 });
  assert.equal(whole.object, 'chat.completion');
  assert.equal(whole.choices[0]!.message.role, 'assistant');
  const stream = await client.chat.completions.create({ model: 'm', messages, max_tokens: 20, temperature: 0, stream: true, stream_options: { include_usage: true } });
  let content = '';
  let role: string | undefined;
  let usage: OpenAI.CompletionUsage | undefined;
  for await (const chunk of stream) {
    role ??= chunk.choices[0]?.delta.role;
    content += chunk.choices[0]?.delta.content ?? '';
    if (chunk.usage) usage = chunk.usage;
  }
  assert.equal(role, 'assistant');
  assert.equal(content, whole.choices[0]!.message.content);
  assert.deepEqual(usage, whole.usage);

  const seeded = { model: 'm', messages, max_tokens: 16, temperature: 0.9, top_p: 0.95, seed: 11 } as const;
  const a = await client.chat.completions.create(seeded);
  const b = await client.chat.completions.create(seeded);
  assert.equal(a.choices[0]!.message.content, b.choices[0]!.message.content);

  const lp = await client.chat.completions.create({ model: 'm', messages, max_tokens: 6, logprobs: true, top_logprobs: 3 });
  const entries = lp.choices[0]!.logprobs!.content!;
  assert.equal(entries.length, lp.usage!.completion_tokens);
  for (const e of entries) {
    assert.ok(e.logprob <= 0);
    assert.equal(e.top_logprobs.length, 3);
    // Greedy: the sampled token is the most likely one.
    assert.equal(e.top_logprobs[0]!.token, e.token);
    assert.ok(Math.abs(e.top_logprobs[0]!.logprob - e.logprob) < 1e-5);
  }
  const clp = await client.completions.create({ model: 'm', prompt: 'Once', max_tokens: 4, logprobs: 2 });
  const l = clp.choices[0]!.logprobs!;
  assert.equal(l.tokens!.length, 4);
  assert.equal(l.token_logprobs!.length, 4);
  assert.equal(Object.keys(l.top_logprobs![0]!).length, 2);
});

test('errors reach the client as its typed errors, with OpenAI\'s shape and status', async () => {
  await assert.rejects(client.chat.completions.create({ model: 'nope', messages: [{ role: 'user', content: 'hi' }] }), (e: unknown) => e instanceof OpenAI.NotFoundError && /nope/.test(e.message));
  await assert.rejects(client.completions.create({ model: 'm', prompt: 'x', max_tokens: -1 }), (e: unknown) => e instanceof OpenAI.BadRequestError && (e.error as { param?: string }).param === 'max_tokens');
  await assert.rejects(client.completions.create({ model: 'm', prompt: 'x', n: 2 }), (e: unknown) => e instanceof OpenAI.BadRequestError && (e.error as { param?: string }).param === 'n');
  await assert.rejects(client.chat.completions.create({ model: 'm', messages: [] }), (e: unknown) => e instanceof OpenAI.BadRequestError && (e.error as { param?: string }).param === 'messages');
  const context = engine.stats().models[0]!.maxContext;
  const long = 'Once upon a time there was a cat. '.repeat(context);
  await assert.rejects(client.completions.create({ model: 'm', prompt: long }), (e: unknown) => e instanceof OpenAI.APIError && e.status === 413 && (e.error as { code?: string }).code === 'context_length_exceeded');
  // Not JSON at all: a 400 in the same shape, and the server keeps serving.
  const res = await fetch(`${base}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"model": "m", "prompt": ' });
  assert.equal(res.status, 400);
  assert.equal(typeof ((await res.json()) as { error: { message: string } }).error.message, 'string');
  const ok = await client.completions.create({ model: 'm', prompt: 'Once', max_tokens: 2 });
  assert.equal(ok.choices.length, 1);
});

test('an SLO that cannot be met is a 429 with Retry-After (dropLate), before any byte of a stream', async () => {
  const strict = await Engine.create({ threads: 1, slabBytes: 16 * 2 ** 20 });
  await strict.loadModel({ id: 's', source: GGUF, dropLate: true });
  const s = createServer(strict, { retryAfterSeconds: 3 });
  const url = await s.listen({ host: '127.0.0.1', port: 0 });
  try {
    for (const stream of [false, true]) {
      const res = await fetch(`${url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-fineserve-ttft-ms': '0.001' },
        body: JSON.stringify({ model: 's', prompt: 'Once upon a time', max_tokens: 4, stream }),
      });
      assert.equal(res.status, 429, `stream: ${stream}`);
      assert.equal(res.headers.get('retry-after'), '3');
      const body = (await res.json()) as { error: { code: string } };
      assert.equal(body.error.code, 'slo_unreachable');
    }
    // The body field wins over the header, and a reachable SLO is served.
    const res = await fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-fineserve-ttft-ms': '0.001' },
      body: JSON.stringify({ model: 's', prompt: 'Once upon a time', max_tokens: 4, fineserve: { slo: { ttft_ms: 60000 }, priority: 2 } }),
    });
    assert.equal(res.status, 200);
  } finally {
    await s.close();
    await strict.close();
  }
});

test('a queue over its bound answers 429 with Retry-After; nothing is lost or answered twice', async () => {
  const e = await Engine.create({ threads: 1, slabBytes: 16 * 2 ** 20 });
  // Long prompts prefilled 32 tokens a step: no request has a token before all eight have arrived.
  await e.loadModel({ id: 'q', source: GGUF, maxBatchTokens: 32 });
  const s = createServer(e, { maxQueue: 2 });
  const url = await s.listen({ host: '127.0.0.1', port: 0 });
  const prompt = e.tokenizer('q').encode('Once upon a time there was a little cat. '.repeat(60)).slice(0, 1000);
  try {
    const post = (): Promise<Response> =>
      fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'q', prompt, max_tokens: 8 }) });
    const responses = await Promise.all(Array.from({ length: 8 }, post));
    const statuses = responses.map((r) => r.status);
    assert.ok(statuses.includes(429), `some request should be over the bound: ${statuses.join(' ')}`);
    assert.ok(statuses.filter((x) => x === 200).length >= 2, `the first two are served: ${statuses.join(' ')}`);
    for (const r of responses) {
      const body = (await r.json()) as { choices?: unknown[]; error?: { code: string } };
      if (r.status === 429) {
        assert.equal(r.headers.get('retry-after'), '1');
        assert.equal(body.error!.code, 'queue_full');
      } else assert.equal(body.choices!.length, 1);
    }
  } finally {
    await s.close();
    await e.close();
  }
});

test('a client that disconnects mid-stream aborts its request and frees its KV blocks at once', async () => {
  const abort = new AbortController();
  const stream = await client.chat.completions.create(
    { model: 'm', messages: [{ role: 'user', content: 'Once upon a time' }], max_tokens: 400, stream: true },
    { signal: abort.signal },
  );
  let chunks = 0;
  try {
    for await (const _ of stream) {
      if (++chunks === 3) abort.abort();
    }
  } catch (e) {
    assert.ok(e instanceof OpenAI.APIUserAbortError || (e as Error).name === 'AbortError', String(e));
  }
  assert.equal(chunks, 3, 'the stream stopped where the client aborted it');
  await waitFor('the aborted request to end', () => {
    const m = engine.stats().models.find((x) => x.id === 'm')!;
    return m.running === 0 && m.waiting === 0 && m.liveBlocks === 0;
  });
  const m = engine.stats().models.find((x) => x.id === 'm')!;
  assert.ok(m.finished.abort >= 1, 'the engine counted the abort');
});

test('models, health and a metrics page an independent Prometheus parser reads', async () => {
  const models = await client.models.list();
  assert.deepEqual(models.data.map((m) => m.id), ['m']);
  const health = await fetch(`${base}/health`);
  assert.equal(health.status, 200);
  const res = await fetch(`${base}/metrics`);
  assert.match(res.headers.get('content-type') ?? '', /text\/plain/);
  const families = parsePrometheusTextFormat(await res.text());
  const byName = new Map(families.map((f) => [f.name, f]));
  for (const name of ['vllm:num_requests_running', 'vllm:num_requests_waiting', 'vllm:prompt_tokens_total', 'vllm:generation_tokens_total', 'vllm:time_to_first_token_seconds', 'vllm:e2e_request_latency_seconds', 'vllm:request_success_total', 'vllm:kv_cache_usage_perc']) {
    const f = byName.get(name);
    assert.ok(f !== undefined, `${name} is on the page`);
    // This parser folds a histogram's label sets into one; the label is checked on the others.
    if (f.type !== 'HISTOGRAM') assert.ok(f.metrics.some((m) => m.labels?.['model_name'] === 'm'), `${name} has model_name="m"`);
  }
  const success = byName.get('vllm:request_success_total')!.metrics.filter((m) => m.labels?.['model_name'] === 'm');
  assert.ok(success.reduce((a, m) => a + Number(m.value), 0) > 0);
});

test('`fineserve serve` drains on SIGTERM: the request in flight completes, then it exits 0', async () => {
  const child = spawn(process.execPath, ['--import', 'tsx', 'lib/cli/main.ts', 'serve', '--model', GGUF, '--port', '0', '--threads', '1', '--slab-mib', '16'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stderr.on('data', (d: Buffer) => (log += d.toString()));
  try {
    await waitFor('the server to be ready', () => /\bready\b/.test(log), 60_000);
    const url = /listening on (http:\/\/[\d.]+:\d+)/.exec(log)![1]!;
    const c = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const stream = await c.completions.create({ model: 'default', prompt: 'Once upon a time', max_tokens: 200, stream: true });
    let text = '';
    let finish: string | null = null;
    let signalled = false;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.text ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
      if (!signalled) {
        signalled = true;
        child.kill('SIGTERM');
        // New work is refused while it drains.
        await waitFor('draining', () => /draining/.test(log));
        const refused = await fetch(`${url}/health`).catch(() => undefined);
        if (refused !== undefined) assert.equal(refused.status, 503);
      }
    }
    assert.ok(finish === 'length' || finish === 'stop', `the request in flight ran to its end (finish ${finish})`);
    assert.ok(text.length > 0);
    const [code] = (await once(child, 'exit')) as [number | null];
    assert.equal(code, 0, log);
    assert.match(log, /1 requests finished while draining, 0 aborted/);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
});

test('while loading, and while draining, generation answers 503 with Retry-After and /health says why', async () => {
  const s = createServer(engine, { loading: true, retryAfterSeconds: 2 });
  const url = await s.listen({ host: '127.0.0.1', port: 0 });
  try {
    const c = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 });
    await assert.rejects(c.completions.create({ model: 'm', prompt: 'Once', max_tokens: 2 }), (e: unknown) => e instanceof OpenAI.InternalServerError && e.status === 503 && e.headers?.get('retry-after') === '2');
    const loading = await fetch(`${url}/health`);
    assert.equal(loading.status, 503);
    assert.equal(((await loading.json()) as { status: string }).status, 'loading');
    s.fineserve.ready();
    assert.equal((await c.completions.create({ model: 'm', prompt: 'Once', max_tokens: 2 })).choices.length, 1);
    assert.deepEqual(await s.fineserve.drain(1000), { finished: 0, aborted: 0 });
    await assert.rejects(c.completions.create({ model: 'm', prompt: 'Once', max_tokens: 2 }), (e: unknown) => e instanceof OpenAI.APIError && e.status === 503);
    assert.equal(((await (await fetch(`${url}/health`)).json()) as { status: string }).status, 'draining');
  } finally {
    await s.close();
  }
});
