/**
 * What the HTTP server costs over calling the Engine in process, measured side by side in one
 * process run on the same model, prompts and concurrency:
 *
 * 1. in process: `concurrency` loops calling `engine.generate()`, timing the first token and the
 *    rest from the caller's side;
 * 2. over HTTP, streamed: the same loops as `fetch` clients reading the server's SSE stream
 *    (`POST /v1/completions`, `stream: true`), timed the same way from the client's side;
 * 3. over HTTP under load: autocannon (an established HTTP load tool) holding `concurrency`
 *    connections of the same streamed requests for the same time.
 *
 * Throughput is generated tokens per second as the engine counts them (its stats, before and
 * after each phase), so every phase is measured by the same counter. Targets (issue #21): < 5 %
 * throughput overhead and < 2 ms added TTFT at p50. Not a test; `--smoke` runs a tiny version
 * inside `npm test`, and any failed part exits non-zero.
 *
 * `--model demo` serves the demo's generated Llama (768 wide, 4 layers, 8k vocabulary, f16), whose
 * steps cost what a small real model's do; the default, the stories260K fixture, steps so fast
 * that the server's per-token work shows at its largest.
 *
 *   node --import tsx bench/serve-http.ts [--model FILE|demo] [--seconds 10] [--concurrency 4] [--max-tokens 64] [--threads N] [--out FILE] [--smoke]
 * @module
 */
import { once } from 'node:events';
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';

import autocannon from 'autocannon';

import { Engine } from '../lib/engine.js';
import { percentile } from '../lib/engine/model-stats.js';
import { createServer } from '../lib/server/index.js';
import { demoModel } from '../lib/cli/demo.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    seconds: { type: 'string', default: '10' },
    concurrency: { type: 'string', default: '4' },
    'max-tokens': { type: 'string', default: '64' },
    threads: { type: 'string' },
    out: { type: 'string' },
    smoke: { type: 'boolean', default: false },
  },
});
const smoke = values.smoke;
const seconds = smoke ? 1 : Number(values.seconds);
const concurrency = smoke ? 2 : Number(values.concurrency);
const maxTokens = smoke ? 8 : Number(values['max-tokens']);
const threads = values.threads === undefined ? (smoke ? 1 : availableParallelism()) : Number(values.threads);
const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const FIXTURE = resolve(root, '../shared/fixtures/stories260K/stories260K.gguf');
const out = values.out ?? resolve(root, smoke ? 'build/serve-http-smoke.json' : 'bench/results/serve-http.json');
const log = (line: string): void => void process.stderr.write(`${line}\n`);

const PROMPTS = ['Once upon a time', 'Lily wanted to play with', 'The little dog was', 'One day, a big bird', 'Tom and his mom went to', 'There was a tree that'];

interface Phase {
  readonly tokens: number;
  readonly requests: number;
  readonly seconds: number;
  readonly tokensPerSecond: number;
  /** Busy time of the main thread (the engine's scheduler, and the server) per generated token. */
  readonly mainThreadMsPerToken: number;
  readonly ttftMs?: { p50: number; p99: number };
  readonly tpotMs?: { p50: number; p99: number };
  readonly latencyMs?: { p50: number; p99: number };
  readonly non2xx?: number;
  readonly errors?: number;
}

function quantiles(xs: number[]): { p50: number; p99: number } {
  const sorted = [...xs].sort((a, b) => a - b);
  return { p50: percentile(sorted, 0.5) ?? Number.NaN, p99: percentile(sorted, 0.99) ?? Number.NaN };
}

/** Main-thread busy milliseconds since `start` (event-loop utilization times the elapsed time). */
function mainMs(start: ReturnType<typeof performance.eventLoopUtilization>): number {
  const d = performance.eventLoopUtilization(start);
  return d.active;
}

function generated(engine: Engine): number {
  return engine.stats().models.reduce((a, m) => a + m.generatedTokens, 0);
}

/** `concurrency` loops of `one()` for `seconds`; TTFT and TPOT as the caller sees them. */
async function closedLoop(engine: Engine, one: (prompt: string) => Promise<{ ttftMs: number; tpotMs: number | undefined }>): Promise<Phase> {
  const before = generated(engine);
  const elu = performance.eventLoopUtilization();
  const ttft: number[] = [];
  const tpot: number[] = [];
  let requests = 0;
  const start = performance.now();
  const end = start + seconds * 1000;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, c) => {
      for (let i = c; performance.now() < end; i += concurrency) {
        const t = await one(PROMPTS[i % PROMPTS.length]!);
        ttft.push(t.ttftMs);
        if (t.tpotMs !== undefined) tpot.push(t.tpotMs);
        requests++;
      }
    }),
  );
  const elapsed = (performance.now() - start) / 1000;
  const tokens = generated(engine) - before;
  return { tokens, requests, seconds: elapsed, tokensPerSecond: tokens / elapsed, mainThreadMsPerToken: mainMs(elu) / tokens, ttftMs: quantiles(ttft), tpotMs: quantiles(tpot) };
}

async function inProcess(engine: Engine): Promise<Phase> {
  return closedLoop(engine, async (prompt) => {
    const t0 = performance.now();
    let first: number | undefined;
    let last = t0;
    let n = 0;
    const r = await engine.generate({
      model: 'm',
      prompt,
      maxTokens,
      onToken: () => {
        last = performance.now();
        first ??= last;
        n++;
      },
    }).result;
    if (r.finishReason === 'error') throw r.error;
    return { ttftMs: (first ?? last) - t0, tpotMs: n >= 2 ? (last - first!) / (n - 1) : undefined };
  });
}

/**
 * The HTTP clients run in a Worker, as separate client processes would: in the server's own event
 * loop their SSE parsing would be billed to the server.
 */
const CLIENT = `
const { parentPort, workerData } = require('node:worker_threads');
const { url, prompts, maxTokens, concurrency, seconds } = workerData;
async function one(prompt) {
  const t0 = performance.now();
  const res = await fetch(url + '/v1/completions', { method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'm', prompt, max_tokens: maxTokens, stream: true }) });
  if (res.status !== 200 || res.body === null) throw new Error('HTTP ' + res.status + ': ' + (await res.text()));
  let first, last = t0, n = 0, buffer = '';
  const decoder = new TextDecoder();
  for await (const bytes of res.body) {
    buffer += decoder.decode(bytes, { stream: true });
    let at;
    while ((at = buffer.indexOf('\\n\\n')) >= 0) {
      const event = buffer.slice(0, at);
      buffer = buffer.slice(at + 2);
      if (!event.startsWith('data: ') || event === 'data: [DONE]') continue;
      const chunk = JSON.parse(event.slice(6));
      if (chunk.error) throw new Error(chunk.error.message);
      if (chunk.choices[0] && chunk.choices[0].finish_reason != null && chunk.choices[0].text === '') continue;
      last = performance.now();
      if (first === undefined) first = last;
      n++;
    }
  }
  return { ttft: (first ?? last) - t0, tpot: n >= 2 ? (last - first) / (n - 1) : undefined };
}
(async () => {
  const ttft = [], tpot = [];
  let requests = 0;
  const end = performance.now() + seconds * 1000;
  await Promise.all(Array.from({ length: concurrency }, async (_, c) => {
    for (let i = c; performance.now() < end; i += concurrency) {
      const t = await one(prompts[i % prompts.length]);
      ttft.push(t.ttft);
      if (t.tpot !== undefined) tpot.push(t.tpot);
      requests++;
    }
  }));
  parentPort.postMessage({ ttft, tpot, requests });
})().catch((e) => parentPort.postMessage({ error: String(e && e.stack || e) }));
`;

async function overHttp(engine: Engine, url: string): Promise<Phase> {
  const before = generated(engine);
  const elu = performance.eventLoopUtilization();
  const start = performance.now();
  const worker = new Worker(CLIENT, { eval: true, workerData: { url, prompts: PROMPTS, maxTokens, concurrency, seconds } });
  const [msg] = (await once(worker, 'message')) as [{ ttft: number[]; tpot: number[]; requests: number } | { error: string }];
  await worker.terminate();
  if ('error' in msg) throw new Error(`HTTP client: ${msg.error}`);
  const elapsed = (performance.now() - start) / 1000;
  const tokens = generated(engine) - before;
  return { tokens, requests: msg.requests, seconds: elapsed, tokensPerSecond: tokens / elapsed, mainThreadMsPerToken: mainMs(elu) / tokens, ttftMs: quantiles(msg.ttft), tpotMs: quantiles(msg.tpot) };
}

async function underLoad(engine: Engine, url: string): Promise<Phase> {
  const before = generated(engine);
  const elu = performance.eventLoopUtilization();
  const start = performance.now();
  const result = await autocannon({
    url: `${url}/v1/completions`,
    method: 'POST',
    connections: concurrency,
    duration: seconds,
    // In a worker thread of its own, so the load generator is not billed to the server.
    workers: 1,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'm', prompt: PROMPTS[0], max_tokens: maxTokens, stream: true }),
  });
  const elapsed = (performance.now() - start) / 1000;
  const tokens = generated(engine) - before;
  return {
    tokens,
    requests: result.requests.total,
    seconds: elapsed,
    tokensPerSecond: tokens / elapsed,
    mainThreadMsPerToken: mainMs(elu) / tokens,
    latencyMs: { p50: result.latency.p50, p99: result.latency.p99 },
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
  };
}

async function main(): Promise<number> {
  const model = values.model === 'demo' ? await demoModel(log) : values.model ?? FIXTURE;
  const engine = await Engine.create({ threads });
  await engine.loadModel({ id: 'm', source: model });
  const server = createServer(engine, { maxQueue: 4096 });
  const url = await server.listen({ host: '127.0.0.1', port: 0 });
  const failures: string[] = [];
  let report: Record<string, unknown> = {};
  try {
    // A first round of each, unmeasured: page faults, JIT, connection setup.
    await inProcess(engine);
    log(`in process: ${concurrency} callers for ${seconds} s`);
    const direct = await inProcess(engine);
    log(`over HTTP (SSE): ${concurrency} fetch clients for ${seconds} s`);
    const http = await overHttp(engine, url);
    log(`over HTTP under autocannon: ${concurrency} connections for ${seconds} s`);
    const loaded = await underLoad(engine, url);
    if ((loaded.non2xx ?? 0) > 0 || (loaded.errors ?? 0) > 0) failures.push(`autocannon saw ${loaded.non2xx} non-2xx answers and ${loaded.errors} errors`);
    for (const [name, p] of [['in process', direct], ['HTTP', http], ['autocannon', loaded]] as const) {
      if (!(p.tokens > 0) || !Number.isFinite(p.tokensPerSecond)) failures.push(`${name}: no tokens generated`);
    }
    const overhead = {
      throughput: 1 - http.tokensPerSecond / direct.tokensPerSecond,
      throughputUnderLoad: 1 - loaded.tokensPerSecond / direct.tokensPerSecond,
      addedTtftP50Ms: http.ttftMs!.p50 - direct.ttftMs!.p50,
      addedTpotP50Ms: http.tpotMs!.p50 - direct.tpotMs!.p50,
      // The server's own work, free of the client's: main-thread time per token over HTTP less in process.
      serverMainThreadMsPerToken: http.mainThreadMsPerToken - direct.mainThreadMsPerToken,
    };
    report = {
      bench: 'serve-http',
      command: `node --import tsx bench/serve-http.ts ${process.argv.slice(2).join(' ')}`.trim(),
      machine: { cpu: cpus()[0]?.model ?? 'unknown', cores: availableParallelism(), threads },
      model,
      concurrency,
      seconds,
      maxTokens,
      phases: { inProcess: direct, http, autocannon: loaded },
      overhead,
      targets: { throughputOverhead: 0.05, addedTtftP50Ms: 2 },
      met: { throughput: overhead.throughput < 0.05, ttft: overhead.addedTtftP50Ms < 2 },
      failures,
    };
    log(
      `tok/s in process ${direct.tokensPerSecond.toFixed(0)}, HTTP ${http.tokensPerSecond.toFixed(0)} (${(100 * overhead.throughput).toFixed(1)} % overhead), ` +
        `autocannon ${loaded.tokensPerSecond.toFixed(0)}; TTFT p50 ${direct.ttftMs!.p50.toFixed(2)} -> ${http.ttftMs!.p50.toFixed(2)} ms (+${overhead.addedTtftP50Ms.toFixed(2)}); ` +
        `main thread per token ${(1000 * direct.mainThreadMsPerToken).toFixed(0)} -> ${(1000 * http.mainThreadMsPerToken).toFixed(0)} us`,
    );
  } catch (err) {
    failures.push(String(err instanceof Error ? err.stack ?? err.message : err));
    report = { bench: 'serve-http', failures };
  } finally {
    await server.close();
    await engine.close();
  }
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(report, null, 2)}\n`);
  log(`wrote ${out}`);
  for (const f of failures) log(`FAILED: ${f}`);
  return failures.length === 0 ? 0 : 1;
}

process.exitCode = await main();
