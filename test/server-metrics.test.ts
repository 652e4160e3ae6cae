// The server's Prometheus metrics (lib/server/metrics.ts) on a real Engine serving the stories260K
// fixture in two precisions: the page is read back with parse-prometheus-text-format, a parser
// nobody here wrote, and checked against vLLM's names, labels and buckets and against the
// requests' own results. One thread, as for every test on this tiny model.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import parsePrometheusTextFormat, { type ParsedFamily, type ParsedSample } from 'parse-prometheus-text-format';
import { register as globalRegistry } from 'prom-client';

import { Engine, type GenerationResult } from '../lib/index.js';
import { createMetrics } from '../lib/server/metrics.js';
import { fixture } from './fixtures.js';

const GGUF = fixture('stories260K.gguf');

// vLLM's names, types and buckets, transcribed from vllm/v1/metrics/loggers.py (not imported from
// the module under test, so a wrong one there fails here).
const VLLM_TTFT = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0];
const VLLM_TPOT = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0];
const VLLM_LATENCY = [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0];

const GAUGES_PER_MODEL = ['vllm:num_requests_running', 'vllm:num_requests_waiting', 'vllm:kv_cache_usage_perc', 'vllm:gpu_cache_usage_perc', 'fineserve:slo_attainment', 'fineserve:model_kv_held_bytes', 'fineserve:model_info'];
const COUNTERS_PER_MODEL = ['vllm:prompt_tokens_total', 'vllm:generation_tokens_total', 'vllm:num_preemptions_total', 'vllm:request_success_total', 'fineserve:requests_received_total', 'fineserve:request_errors_total', 'fineserve:slo_rejected_total', 'fineserve:requests_rejected_total'];
const HISTOGRAMS_PER_MODEL = ['vllm:time_to_first_token_seconds', 'vllm:time_per_output_token_seconds', 'vllm:request_time_per_output_token_seconds', 'vllm:e2e_request_latency_seconds', 'vllm:request_queue_time_seconds', 'vllm:request_inference_time_seconds', 'vllm:request_prefill_time_seconds', 'vllm:request_decode_time_seconds', 'vllm:request_prompt_tokens', 'vllm:request_generation_tokens'];
const DEVICE_GAUGES = ['fineserve:kv_slab_bytes', 'fineserve:kv_slab_held_bytes', 'fineserve:kv_slab_live_bytes'];

interface Page {
  /** The families as the parser reads the page: names, TYPE, HELP, and the samples of counters and gauges. */
  readonly families: Map<string, ParsedFamily>;
  /**
   * Every sample line by name, labels kept. The parser folds a histogram's series into one and
   * drops their labels (it only handles unlabelled histograms), so histograms are read from the
   * page parsed again without their TYPE lines: then `X_bucket`, `X_sum` and `X_count` come back as
   * plain samples with their labels (`le` included).
   */
  readonly series: Map<string, ParsedSample[]>;
}

function parse(text: string): Page {
  const families = new Map<string, ParsedFamily>();
  for (const f of parsePrometheusTextFormat(text)) {
    assert.ok(!families.has(f.name), `${f.name} appears once`);
    families.set(f.name, f);
  }
  const series = new Map<string, ParsedSample[]>();
  for (const f of parsePrometheusTextFormat(text.replace(/^# TYPE \S+ histogram$/gm, ''))) series.set(f.name, [...(series.get(f.name) ?? []), ...f.metrics]);
  return { families, series };
}

function family(page: Page, name: string, type: ParsedFamily['type']): ParsedFamily {
  const f = page.families.get(name);
  assert.ok(f !== undefined, `${name} is on the page`);
  assert.equal(f.type, type, `${name} is a ${type}`);
  assert.ok(f.help.length > 0, `${name} has a help text`);
  return f;
}

function matching(samples: readonly ParsedSample[], labels: Record<string, string>): ParsedSample[] {
  return samples.filter((s) => Object.entries(labels).every(([k, v]) => s.labels?.[k] === v));
}

function sample(page: Page, name: string, type: 'COUNTER' | 'GAUGE', labels: Record<string, string>): ParsedSample | undefined {
  const matches = matching(family(page, name, type).metrics, labels);
  assert.ok(matches.length <= 1, `${name}${JSON.stringify(labels)}: one series at most`);
  return matches[0];
}

function value(page: Page, name: string, type: 'COUNTER' | 'GAUGE', labels: Record<string, string>): number {
  const s = sample(page, name, type, labels);
  assert.ok(s?.value !== undefined, `${name}${JSON.stringify(labels)} has a value`);
  return Number(s.value);
}

function modelsOf(page: Page, name: string, type: 'COUNTER' | 'GAUGE'): string[] {
  return family(page, name, type).metrics.map((s) => s.labels?.model_name ?? '<none>').sort();
}

/** Checks a histogram series: TYPE histogram, vLLM's boundaries, counts per bucket, +Inf, _count and _sum = what was observed. */
function histogram(page: Page, name: string, model: string, bounds: readonly number[], observed: readonly number[]): void {
  family(page, name, 'HISTOGRAM');
  const labels = { model_name: model };
  const buckets = matching(page.series.get(`${name}_bucket`) ?? [], labels);
  const sums = matching(page.series.get(`${name}_sum`) ?? [], labels);
  const counts = matching(page.series.get(`${name}_count`) ?? [], labels);
  assert.equal(sums.length, 1, `${name}_sum{model_name="${model}"}`);
  assert.equal(counts.length, 1, `${name}_count{model_name="${model}"}`);
  assert.deepEqual(buckets.map((b) => b.labels?.le), [...bounds.map(String), '+Inf'], `${name}: vLLM's bucket boundaries, in order`);
  for (const b of buckets) {
    const le = b.labels!.le === '+Inf' ? Infinity : Number(b.labels!.le);
    assert.equal(Number(b.value), observed.filter((v) => v <= le).length, `${name}{${model}} le=${b.labels!.le}`);
  }
  assert.equal(Number(counts[0]!.value), observed.length, `${name}{${model}}: count = requests with that measure`);
  const sum = observed.reduce((a, b) => a + b, 0);
  assert.ok(Math.abs(Number(sums[0]!.value) - sum) <= 1e-9 * Math.max(1, sum), `${name}{${model}}: sum ${sums[0]!.value} = ${sum}`);
}

test('metrics: vLLM names, labels and buckets; values from the results and engine.stats(); gauges follow unloads and close', async (t) => {
  const engine = await Engine.create({ threads: 1 });
  t.after(() => engine.close());
  const infoA = await engine.loadModel({ id: 'a', source: GGUF, precision: 'fp32', slo: { ttftMs: 5000 } });
  const infoB = await engine.loadModel({ id: 'b', source: GGUF, precision: 'w8a8', slo: { ttftMs: 5000 } });
  const metrics = createMetrics(engine);
  assert.notEqual(metrics.registry, globalRegistry, 'its own registry');
  assert.doesNotThrow(() => createMetrics(engine), 'a second server on the same process registers nothing twice');
  assert.match(metrics.contentType, /^text\/plain; version=0\.0\.4/);

  // Before any request: every per-model counter and histogram of a loaded model starts at 0.
  const before = parse(await metrics.render());
  assert.equal(value(before, 'vllm:generation_tokens_total', 'COUNTER', { model_name: 'b' }), 0);
  assert.equal(value(before, 'vllm:request_success_total', 'COUNTER', { model_name: 'a', finished_reason: 'length' }), 0);
  histogram(before, 'vllm:time_to_first_token_seconds', 'a', VLLM_TTFT, []);

  // A request in flight is running or waiting at the scrape (stats are read when render() is called).
  // Scraped again from its first token, while it holds KV blocks: render() reads engine.stats() when called.
  let midStats: ReturnType<Engine['stats']> | undefined;
  let midPage: Promise<string> | undefined;
  const inFlight = engine.generate({
    model: 'a', prompt: 'Once upon a time', maxTokens: 24, onToken: ({ index }) => {
      if (index !== 0) return;
      midStats = engine.stats();
      midPage = metrics.render();
    },
  });
  metrics.requestReceived('a');
  const during = parse(await metrics.render());
  assert.equal(value(during, 'vllm:num_requests_running', 'GAUGE', { model_name: 'a' }) + value(during, 'vllm:num_requests_waiting', 'GAUGE', { model_name: 'a' }), 1, 'the request in flight');
  const results: { model: string; result: GenerationResult }[] = [];
  const finished = (model: string, result: GenerationResult): void => {
    metrics.requestFinished(model, result);
    results.push({ model, result });
  };
  finished('a', await inFlight.result);
  assert.ok(midStats !== undefined && midPage !== undefined, 'scraped mid-request');
  const mid = parse(await midPage);
  const midA = midStats.models.find((m) => m.id === 'a')!;
  assert.ok(midA.kvHeldBytes > 0, 'the running request holds KV');
  assert.equal(value(mid, 'vllm:num_requests_running', 'GAUGE', { model_name: 'a' }), midA.running);
  assert.ok(midA.running >= 1);
  const midUsage = value(mid, 'vllm:kv_cache_usage_perc', 'GAUGE', { model_name: 'a' });
  assert.equal(midUsage, midA.kvHeldBytes / midStats.devices.find((d) => d.id === midA.device)!.slabBytes, "this model's KV bytes held over its device's slab");
  assert.ok(midUsage > 0 && midUsage <= 1, `kv usage ${midUsage} in (0, 1]`);
  assert.equal(value(mid, 'fineserve:model_kv_held_bytes', 'GAUGE', { model_name: 'a' }), midA.kvHeldBytes);
  for (const [format, bytes] of Object.entries(midStats.devices[0]!.liveTokenBytesByFormat)) assert.equal(value(mid, 'fineserve:kv_slab_live_bytes', 'GAUGE', { device: midStats.devices[0]!.id, kv_format: format }), bytes);

  // What a server does: count each request received, then its result or its refusal.
  const runs: { model: string; run: ReturnType<Engine['generate']> }[] = [];
  const submit = (model: string, options: Omit<Parameters<Engine['generate']>[0], 'model'>): void => {
    metrics.requestReceived(model);
    runs.push({ model, run: engine.generate({ model, ...options } as Parameters<Engine['generate']>[0]) });
  };
  submit('a', { prompt: 'Lily went to the park', maxTokens: 12 });
  submit('a', { prompt: 'The cat', maxTokens: 1 });  // one token: a TTFT but no TPOT
  submit('b', { prompt: 'Once upon a time', maxTokens: 16 });
  submit('b', { prompt: 'Tom had a ball', maxTokens: 8, signal: AbortSignal.abort() });  // aborted before a token
  submit('b', { prompt: 'A dog', maxTokens: 8, onToken: () => { throw new Error('client gone'); } });  // ends in error
  for (const { model, run } of runs) finished(model, await run.result);
  metrics.requestReceived('a');
  metrics.requestRejected('a', 'queue_full');
  metrics.requestReceived('no-such-model');
  metrics.requestRejected('no-such-model', 'unknown_model');
  await engine.idle();

  const reasons = results.map((r) => r.result.finishReason);
  assert.ok(reasons.includes('length') && reasons.includes('abort') && reasons.includes('error'), `a mix of finish reasons: ${reasons.join(', ')}`);
  const page = parse(await metrics.render());

  for (const name of GAUGES_PER_MODEL) assert.deepEqual(modelsOf(page, name, 'GAUGE'), ['a', 'b'], `${name}: one series per loaded model, labelled model_name`);
  for (const name of COUNTERS_PER_MODEL) family(page, name, 'COUNTER');
  for (const name of HISTOGRAMS_PER_MODEL) family(page, name, 'HISTOGRAM');
  for (const name of DEVICE_GAUGES) family(page, name, 'GAUGE');

  const stats = engine.stats();
  // The token buckets are vLLM's 1-2-5 series up to the served context (its max_model_len).
  const maxContext = Math.max(infoA.maxContext, infoB.maxContext);
  const oneTwoFive = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000].filter((b) => b <= maxContext);
  for (const model of ['a', 'b']) {
    const mine = results.filter((r) => r.model === model).map((r) => r.result);
    const labels = { model_name: model };
    const m = stats.models.find((s) => s.id === model)!;
    // Counters: the sums of the results' tokens, which engine.stats() counts too.
    const prompt = mine.reduce((a, r) => a + r.promptTokens, 0);
    const generated = mine.reduce((a, r) => a + r.tokens.length, 0);
    assert.equal(value(page, 'vllm:prompt_tokens_total', 'COUNTER', labels), prompt);
    assert.equal(value(page, 'vllm:generation_tokens_total', 'COUNTER', labels), generated);
    assert.equal(prompt, m.promptTokens);
    assert.equal(generated, m.generatedTokens);
    assert.equal(value(page, 'vllm:num_preemptions_total', 'COUNTER', labels), mine.reduce((a, r) => a + r.preemptions, 0));
    for (const reason of ['stop', 'length', 'abort'] as const) {
      assert.equal(value(page, 'vllm:request_success_total', 'COUNTER', { model_name: model, finished_reason: reason }), mine.filter((r) => r.finishReason === reason).length, `success ${model} ${reason}`);
    }
    assert.equal(sample(page, 'vllm:request_success_total', 'COUNTER', { model_name: model, finished_reason: 'error' }), undefined, 'an error is no success');
    assert.equal(value(page, 'fineserve:request_errors_total', 'COUNTER', labels), mine.filter((r) => r.finishReason === 'error').length);
    assert.equal(value(page, 'fineserve:slo_rejected_total', 'COUNTER', labels), m.sloRejected);

    // Histograms: one observation per finished request that has the measure, in seconds.
    const s = (ms: number): number => ms / 1000;
    histogram(page, 'vllm:time_to_first_token_seconds', model, VLLM_TTFT, mine.flatMap((r) => (r.timings.ttftMs === undefined ? [] : [s(r.timings.ttftMs)])));
    const tpots = mine.flatMap((r) => (r.timings.tpotMs === undefined ? [] : [s(r.timings.tpotMs)]));
    histogram(page, 'vllm:time_per_output_token_seconds', model, VLLM_TPOT, tpots);
    histogram(page, 'vllm:request_time_per_output_token_seconds', model, VLLM_TPOT, tpots);
    histogram(page, 'vllm:e2e_request_latency_seconds', model, VLLM_LATENCY, mine.map((r) => s(r.timings.e2eMs)));
    histogram(page, 'vllm:request_queue_time_seconds', model, VLLM_LATENCY, mine.map((r) => s(r.timings.queueMs)));
    histogram(page, 'vllm:request_prompt_tokens', model, oneTwoFive, mine.map((r) => r.promptTokens));
    histogram(page, 'vllm:request_generation_tokens', model, oneTwoFive, mine.map((r) => r.tokens.length));

    // Gauges: nothing left in flight; KV usage is this model's held bytes over its device's slab.
    assert.equal(value(page, 'vllm:num_requests_running', 'GAUGE', labels), 0);
    assert.equal(value(page, 'vllm:num_requests_waiting', 'GAUGE', labels), 0);
    const usage = value(page, 'vllm:kv_cache_usage_perc', 'GAUGE', labels);
    assert.ok(usage >= 0 && usage <= 1, `kv usage ${usage} in [0, 1]`);
    const device = stats.devices.find((d) => d.id === m.device)!;
    assert.equal(usage, m.kvHeldBytes / device.slabBytes);
    assert.equal(value(page, 'vllm:gpu_cache_usage_perc', 'GAUGE', labels), usage);
    assert.equal(value(page, 'fineserve:model_kv_held_bytes', 'GAUGE', labels), m.kvHeldBytes);
    const attainment = value(page, 'fineserve:slo_attainment', 'GAUGE', labels);
    assert.equal(attainment, m.sloAttainment);
    assert.ok(attainment >= 0 && attainment <= 1);
    assert.equal(value(page, 'fineserve:requests_received_total', 'COUNTER', labels), mine.length + (model === 'a' ? 1 : 0));
  }
  // The token buckets are vLLM's 1-2-5 series up to the served context (max_model_len).
  // Refusals, by reason; a model never loaded gets one shared label, not the name asked for.
  assert.equal(value(page, 'fineserve:requests_rejected_total', 'COUNTER', { model_name: 'a', reason: 'queue_full' }), 1);
  assert.equal(value(page, 'fineserve:requests_rejected_total', 'COUNTER', { model_name: '(unknown)', reason: 'unknown_model' }), 1);
  assert.equal(value(page, 'fineserve:requests_received_total', 'COUNTER', { model_name: '(unknown)' }), 1);
  assert.ok(!family(page, 'fineserve:requests_received_total', 'COUNTER').metrics.some((s) => s.labels?.model_name === 'no-such-model'));

  // Placement, and the device's slab by KV format.
  assert.equal(value(page, 'fineserve:model_info', 'GAUGE', { model_name: 'a', device: 'cpu', precision: 'fp32', kv_format: infoA.kvFormat }), 1);
  assert.equal(value(page, 'fineserve:model_info', 'GAUGE', { model_name: 'b', device: 'cpu', precision: 'w8a8', kv_format: infoB.kvFormat }), 1);
  const cpu = stats.devices.find((d) => d.id === 'cpu')!;
  assert.equal(value(page, 'fineserve:kv_slab_bytes', 'GAUGE', { device: 'cpu' }), cpu.slabBytes);
  for (const [format, bytes] of Object.entries(cpu.heldBytesByFormat)) assert.equal(value(page, 'fineserve:kv_slab_held_bytes', 'GAUGE', { device: 'cpu', kv_format: format }), bytes);
  for (const [format, bytes] of Object.entries(cpu.liveTokenBytesByFormat)) assert.equal(value(page, 'fineserve:kv_slab_live_bytes', 'GAUGE', { device: 'cpu', kv_format: format }), bytes);
  assert.ok(Object.keys(cpu.heldBytesByFormat).length >= 1);

  // Nothing reaches the global registry.
  assert.ok(!(await globalRegistry.metrics()).includes('vllm:'), 'the global registry stays clean');

  // An unloaded model leaves the gauges; its counters stay (they are cumulative).
  await engine.unloadModel('b');
  const afterUnload = parse(await metrics.render());
  for (const name of GAUGES_PER_MODEL) assert.deepEqual(modelsOf(afterUnload, name, 'GAUGE'), ['a'], `${name} no longer lists b`);
  assert.equal(value(afterUnload, 'vllm:generation_tokens_total', 'COUNTER', { model_name: 'b' }), value(page, 'vllm:generation_tokens_total', 'COUNTER', { model_name: 'b' }));
  assert.ok(!modelsOf(afterUnload, 'fineserve:slo_rejected_total', 'COUNTER').includes('b'));

  // After close the page still renders: counters and histograms kept, gauges emptied.
  await engine.close();
  const afterClose = parse(await metrics.render());
  for (const name of [...GAUGES_PER_MODEL, ...DEVICE_GAUGES]) assert.equal(family(afterClose, name, 'GAUGE').metrics.length, 0, `${name} is empty after close`);
  assert.equal(value(afterClose, 'vllm:prompt_tokens_total', 'COUNTER', { model_name: 'a' }), value(page, 'vllm:prompt_tokens_total', 'COUNTER', { model_name: 'a' }));
  histogram(afterClose, 'vllm:e2e_request_latency_seconds', 'a', VLLM_LATENCY, results.filter((r) => r.model === 'a').map((r) => r.result.timings.e2eMs / 1000));
  metrics.requestReceived('a');
  metrics.requestRejected('a', 'draining');
  assert.equal(value(parse(await metrics.render()), 'fineserve:requests_rejected_total', 'COUNTER', { model_name: 'a', reason: 'draining' }), 1);
});
