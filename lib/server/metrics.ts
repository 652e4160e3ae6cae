/**
 * The server's Prometheus metrics, under vLLM's own names, labels and histogram buckets (those of
 * vLLM's `vllm/v1/metrics/loggers.py`), so Grafana dashboards and the Kubernetes inference
 * gateways that scrape vLLM (Gateway API Inference Extension, llm-d, AIBrix) work unchanged; plus
 * fineserve's own under `fineserve:` (SLO attainment, KV Slab use by format, placement, refusals).
 *
 * Two sources: what the server reports (a request received, refused, or ended with its
 * {@link GenerationResult}) feeds counters and histograms; `engine.stats()` feeds the gauges at
 * scrape time, so they list exactly the models loaded now. Built on the public Engine API only.
 *
 * ```ts
 * const metrics = createMetrics(engine);
 * metrics.requestReceived('chat');
 * metrics.requestFinished('chat', await engine.generate({ model: 'chat', prompt }).result);
 * reply.type(metrics.contentType).send(await metrics.render());
 * ```
 * @module
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

import { type Engine, EngineError, type EngineStats, type GenerationResult, type ModelStats } from '../index.js';

export interface ServerMetrics {
  /** prom-client Registry of this server (one per server, never the global default registry). */
  readonly registry: Registry;
  /** Content-Type of render()'s text. */
  readonly contentType: string;
  /** A request for `model` reached the server (counts what the server received, even if refused later). */
  requestReceived(model: string): void;
  /** A request ended (any finish reason); the server passes the engine's result. */
  requestFinished(model: string, result: GenerationResult): void;
  /** A request was refused before reaching the engine (status 400/404/413/429/503): `reason` is a short code, e.g. 'queue_full', 'context', 'unknown_model'. */
  requestRejected(model: string, reason: string): void;
  /** The exposition text: gauges refreshed from engine.stats() at call time, then every metric. */
  render(): Promise<string>;
}

// Bucket boundaries, seconds, as vLLM's PrometheusStatLogger (vllm/v1/metrics/loggers.py) has them.
const TTFT_BUCKETS: readonly number[] = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80, 160, 640, 2560];
const TPOT_BUCKETS: readonly number[] = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80];
const REQUEST_LATENCY_BUCKETS: readonly number[] = [0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480, 960, 1920, 7680];

/** vLLM's build_1_2_5_buckets: 1, 2, 5, 10, 20, 50, ... up to `max` inclusive. */
function buckets125(max: number): number[] {
  const out: number[] = [];
  for (let scale = 1; ; scale *= 10) {
    for (const m of [1, 2, 5]) {
      if (m * scale > max) return out;
      out.push(m * scale);
    }
  }
}

/** Token-count buckets when no model is loaded yet to size them by (vLLM sizes them by max_model_len). */
const DEFAULT_MAX_CONTEXT = 131_072;

/** The label of a model name no loaded model ever had (an unknown model), so refusals cannot grow the label set without bound. */
const UNKNOWN_MODEL = '(unknown)';

/** vLLM's finished_reason values: the request_success series each model starts with at 0. */
const SUCCESS_REASONS = ['stop', 'length', 'abort'] as const;

type ModelLabel = 'model_name';

/** See the module comment. One per server: every metric lives in its own Registry. */
export function createMetrics(engine: Engine): ServerMetrics {
  const registry = new Registry();
  const registers = [registry];

  // One engine.stats() per scrape: every stats-fed metric's collect() runs in the same
  // synchronous pass of registry.metrics(), so the snapshot lives until the next microtask.
  // undefined: the engine is closed (its gauges are emptied, the rest still renders).
  let cached: { stats: EngineStats | undefined } | undefined;
  const snapshot = (): EngineStats | undefined => {
    if (cached === undefined) {
      cached = { stats: currentStats(engine) };
      queueMicrotask(() => {
        cached = undefined;
      });
      for (const m of cached.stats?.models ?? []) touch(m.id);
    }
    return cached.stats;
  };

  /** A gauge refilled from engine.stats() at each scrape (reset first, so what is gone disappears). */
  function statsGauge<L extends string>(name: string, help: string, labelNames: readonly L[], fill: (stats: EngineStats, gauge: Gauge<L>) => void): Gauge<L> {
    return new Gauge<L>({
      name,
      help,
      labelNames,
      registers,
      collect() {
        this.reset();
        const stats = snapshot();
        if (stats !== undefined) fill(stats, this);
      },
    });
  }
  const perModel = (value: (m: ModelStats, stats: EngineStats) => number | undefined) => (stats: EngineStats, g: Gauge<ModelLabel>) => {
    for (const m of stats.models) {
      const v = value(m, stats);
      if (v !== undefined) g.set({ model_name: m.id }, v);
    }
  };

  // --- vLLM: scheduler state and KV cache (gauges from engine.stats()) ---
  statsGauge('vllm:num_requests_running', 'Number of requests in model execution batches.', ['model_name'], perModel((m) => m.running));
  statsGauge('vllm:num_requests_waiting', 'Number of requests waiting to be processed.', ['model_name'], perModel((m) => m.waiting));
  const kvHelp = "KV-cache usage. 1 means 100 percent usage. fineserve: the KV bytes this model holds over the bytes of the KV memory it draws from (its device's KV Slab, shared with the models co-located there; its own partition under policy static-fcfs).";
  statsGauge('vllm:kv_cache_usage_perc', kvHelp, ['model_name'], perModel(kvUsage));
  statsGauge('vllm:gpu_cache_usage_perc', `${kvHelp} DEPRECATED in vLLM 0.9: use vllm:kv_cache_usage_perc instead (kept for gateways that still scrape it).`, ['model_name'], perModel(kvUsage));

  // --- vLLM: counters and histograms from the results the server reports ---
  const promptTokens = new Counter<ModelLabel>({ name: 'vllm:prompt_tokens_total', help: 'Number of prefill tokens processed. fineserve: the prompt tokens of requests that ended, any finish reason.', labelNames: ['model_name'], registers });
  const generationTokens = new Counter<ModelLabel>({ name: 'vllm:generation_tokens_total', help: 'Number of generation tokens processed.', labelNames: ['model_name'], registers });
  const preemptions = new Counter<ModelLabel>({ name: 'vllm:num_preemptions_total', help: 'Cumulative number of preemption from the engine. fineserve: counted when the preempted request ends.', labelNames: ['model_name'], registers });
  const success = new Counter<ModelLabel | 'finished_reason'>({ name: 'vllm:request_success_total', help: "Count of successfully processed requests. fineserve: finish reasons stop, length, abort; a request that ends in error counts in fineserve:request_errors_total instead.", labelNames: ['model_name', 'finished_reason'], registers });
  const tokenBuckets = buckets125(maxContextOf(engine));
  const promptHist = histogram('vllm:request_prompt_tokens', 'Number of prefill tokens processed.', tokenBuckets);
  const generationHist = histogram('vllm:request_generation_tokens', 'Number of generation tokens processed.', tokenBuckets);
  const ttft = histogram('vllm:time_to_first_token_seconds', 'Histogram of time to first token in seconds.', TTFT_BUCKETS);
  const tpot = histogram('vllm:time_per_output_token_seconds', "Histogram of time per output token in seconds. fineserve: one observation per request, its mean time between tokens after the first (as vllm:request_time_per_output_token_seconds); vLLM observes each inter-token interval.", TPOT_BUCKETS);
  const requestTpot = histogram('vllm:request_time_per_output_token_seconds', 'Histogram of time_per_output_token_seconds per request.', TPOT_BUCKETS);
  const e2e = histogram('vllm:e2e_request_latency_seconds', 'Histogram of e2e request latency in seconds.', REQUEST_LATENCY_BUCKETS);
  const queue = histogram('vllm:request_queue_time_seconds', 'Histogram of time spent in WAITING phase for request.', REQUEST_LATENCY_BUCKETS);
  const inference = histogram('vllm:request_inference_time_seconds', 'Histogram of time spent in RUNNING phase for request.', REQUEST_LATENCY_BUCKETS);
  const prefill = histogram('vllm:request_prefill_time_seconds', 'Histogram of time spent in PREFILL phase for request.', REQUEST_LATENCY_BUCKETS);
  const decode = histogram('vllm:request_decode_time_seconds', 'Histogram of time spent in DECODE phase for request.', REQUEST_LATENCY_BUCKETS);
  const histograms = [promptHist, generationHist, ttft, tpot, requestTpot, e2e, queue, inference, prefill, decode];
  function histogram(name: string, help: string, buckets: readonly number[]): Histogram<ModelLabel> {
    return new Histogram<ModelLabel>({ name, help, labelNames: ['model_name'], buckets: [...buckets], registers });
  }

  // --- fineserve: requests by outcome ---
  const received = new Counter<ModelLabel>({ name: 'fineserve:requests_received_total', help: `Requests the server received, refused ones included (model_name "${UNKNOWN_MODEL}": a model that was never loaded).`, labelNames: ['model_name'], registers });
  const rejected = new Counter<ModelLabel | 'reason'>({ name: 'fineserve:requests_rejected_total', help: `Requests refused before reaching the engine (HTTP 400/404/413/429/503), by reason (model_name "${UNKNOWN_MODEL}": a model that was never loaded).`, labelNames: ['model_name', 'reason'], registers });
  const errors = new Counter<ModelLabel>({ name: 'fineserve:request_errors_total', help: 'Requests that ended with finish reason error (a callback that threw, a request dropped for its SLO, an unload).', labelNames: ['model_name'], registers });
  const resultCounters = [promptTokens, generationTokens, preemptions, received, errors];

  // --- fineserve: per model and per device, from engine.stats() ---
  statsGauge('fineserve:slo_attainment', 'Of the finished, non-aborted requests of the model since it was loaded, the share that met its TTFT and TPOT SLOs (0..1); absent until one finished.', ['model_name'], perModel((m) => m.sloAttainment));
  statsGauge('fineserve:model_kv_held_bytes', 'KV bytes the model holds in its KV memory (the numerator of vllm:kv_cache_usage_perc).', ['model_name'], perModel((m) => m.kvHeldBytes));
  statsGauge('fineserve:model_info', 'A loaded model and where it runs: its device, precision and KV-cache format (always 1).', ['model_name', 'device', 'precision', 'kv_format'], (stats, g) => {
    for (const m of stats.models) g.set({ model_name: m.id, device: m.device, precision: m.precisionName, kv_format: m.kvFormat }, 1);
  });
  new Counter<ModelLabel>({
    name: 'fineserve:slo_rejected_total',
    help: 'Requests the scheduler found unable to meet their TTFT SLO (dropped or deferred), since the model was loaded.',
    labelNames: ['model_name'],
    registers,
    collect() {
      this.reset();
      for (const m of snapshot()?.models ?? []) this.inc({ model_name: m.id }, m.sloRejected);
    },
  });
  statsGauge('fineserve:kv_slab_bytes', 'Bytes of the KV memory of the device (its KV Slab, or all its static partitions).', ['device'], (stats, g) => {
    for (const d of stats.devices) g.set({ device: d.id }, d.slabBytes);
  });
  statsGauge('fineserve:kv_slab_held_bytes', 'Bytes of the KV memory of the device held by models, by KV-cache format.', ['device', 'kv_format'], (stats, g) => {
    for (const d of stats.devices) for (const [format, bytes] of Object.entries(d.heldBytesByFormat)) g.set({ device: d.id, kv_format: format }, bytes ?? 0);
  });
  statsGauge('fineserve:kv_slab_live_bytes', 'Bytes of the KV memory of the device holding live tokens, by KV-cache format.', ['device', 'kv_format'], (stats, g) => {
    for (const d of stats.devices) for (const [format, bytes] of Object.entries(d.liveTokenBytesByFormat)) g.set({ device: d.id, kv_format: format }, bytes ?? 0);
  });

  // Label values: model names the engine has served. Each starts its counters and histograms at 0
  // (as vLLM's do) so rate() and the dashboards see it from its first scrape.
  const known = new Set<string>();
  function touch(model: string): void {
    if (known.has(model)) return;
    known.add(model);
    const labels = { model_name: model };
    for (const c of resultCounters) c.inc(labels, 0);
    for (const reason of SUCCESS_REASONS) success.inc({ model_name: model, finished_reason: reason }, 0);
    for (const h of histograms) h.zero(labels);
  }
  function label(model: string): string {
    if (!known.has(model)) {
      if (typeof model !== 'string' || !engine.models.includes(model)) return UNKNOWN_MODEL;
      touch(model);
    }
    return model;
  }
  // The models loaded now start at 0 before any request.
  snapshot();

  return {
    registry,
    contentType: registry.contentType,
    requestReceived(model) {
      received.inc({ model_name: label(model) });
    },
    requestRejected(model, reason) {
      rejected.inc({ model_name: label(model), reason });
    },
    requestFinished(model, r) {
      // The engine ran it, so `model` names a model it served (perhaps unloaded since).
      touch(model);
      const labels = { model_name: model };
      promptTokens.inc(labels, r.promptTokens);
      generationTokens.inc(labels, r.tokens.length);
      preemptions.inc(labels, r.preemptions);
      if (r.finishReason === 'error') errors.inc(labels);
      else success.inc({ model_name: model, finished_reason: r.finishReason });
      promptHist.observe(labels, r.promptTokens);
      generationHist.observe(labels, r.tokens.length);
      const t = r.timings;
      const seconds = (ms: number): number => Math.max(0, ms) / 1000;
      e2e.observe(labels, seconds(t.e2eMs));
      queue.observe(labels, seconds(t.queueMs));
      inference.observe(labels, seconds(t.e2eMs - t.queueMs));
      if (t.ttftMs !== undefined) {
        ttft.observe(labels, seconds(t.ttftMs));
        prefill.observe(labels, seconds(t.ttftMs - t.queueMs));
        decode.observe(labels, seconds(t.e2eMs - t.ttftMs));
      }
      if (t.tpotMs !== undefined) {
        tpot.observe(labels, seconds(t.tpotMs));
        requestTpot.observe(labels, seconds(t.tpotMs));
      }
    },
    render() {
      return registry.metrics();
    },
  };
}

/** engine.stats(), or undefined once the engine is closed. */
function currentStats(engine: Engine): EngineStats | undefined {
  try {
    return engine.stats();
  } catch (err) {
    if (err instanceof EngineError && err.code === 'ERR_ENGINE_CLOSED') return undefined;
    throw err;
  }
}

/** KV bytes the model holds over those of the pool it draws from (the device's slab, or its own static partition). */
function kvUsage(m: ModelStats, stats: EngineStats): number | undefined {
  const device = stats.devices.find((d) => d.id === m.device);
  if (device === undefined) return undefined;
  const pool = device.kv.find((p) => p.models.some((k) => k.name === m.id));
  const bytes = pool?.poolBytes ?? device.slabBytes;
  return bytes > 0 ? Math.min(1, m.kvHeldBytes / bytes) : 0;
}

/** The largest context of the loaded models, which sizes the token-count buckets (vLLM: max_model_len). */
function maxContextOf(engine: Engine): number {
  const models = currentStats(engine)?.models ?? [];
  return models.length === 0 ? DEFAULT_MAX_CONTEXT : Math.max(...models.map((m) => m.maxContext));
}
