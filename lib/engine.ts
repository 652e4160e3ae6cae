/**
 * Engine: the serving API. It owns the devices (each with one KV Slab and one LocalScheduler),
 * loads models onto them in any precision, accepts generation requests, and reports per-model
 * SLO attainment and per-device slab use.
 *
 * ```ts
 * const engine = await Engine.create({ devices: 'auto' });
 * await engine.loadModel({ id: 'chat-int4', source: './model.gguf', precision: 'w4a16-kv8', slo: { ttftMs: 300 } });
 * const run = engine.generate({ model: 'chat-int4', prompt: 'Once upon a time', maxTokens: 64 });
 * for await (const chunk of run) process.stdout.write(chunk.text);
 * const { text, finishReason, timings } = await run.result;
 * await engine.close();
 * ```
 * @module
 */
import { availableParallelism } from 'node:os';

import { EngineError, ModelError } from './errors.js';
import { KvPool, type KvFormat } from './kv-pool.js';
import { BlockManager } from './engine/block-manager.js';
import { checkOwnThreads, closeDevice, type Device, type DeviceStats, deviceStats, openDevices } from './engine/device.js';
import { Executor } from './engine/executor.js';
import { poolForModel, releasePartition } from './engine/kv-memory.js';
import { type ModelCounters } from './engine/model-stats.js';
import { Sequence } from './engine/sequence.js';
import { ServedModel } from './engine/served-model.js';
import { StopMatcher } from './engine/stop.js';
import { checkNumber, checkSampling, checkSlo, checkTemplate, checkTokens, describe, stopStrings } from './engine/validate.js';
import { warmUp } from './engine/warm-up.js';
import { type Calibration, Model } from './model.js';
import { type PrecisionName, type PrecisionSpec, precisionName } from './precision.js';
import { type GenerateOptions, GenerationRun } from './request.js';
import type { SamplingOptions } from './runner.js';
import { fineserveLocalWith, LOCAL_POLICIES, type LocalPolicyName } from './scheduler/local/index.js';
import { MeasuredLatencyModel } from './scheduler/measured-latency.js';
import { createThreadPool } from './thread-pool.js';
import { Tokenizer } from './tokenizer.js';

/**
 * How a device shares its KV memory and picks each iteration's work.
 * - `fineserve`: one KV Slab for all co-located models (per-model minimum reserve) and the
 *   SLO-aware local policy (EDF admission that meets every deadline, TPOT guard, cheapest-victim
 *   preemption), driven by latency measured online.
 * - `static-fcfs`: the vLLM-style baseline: a fixed KV partition per model, first come first served.
 * - `saab`: one KV Slab and the reference FineServe local policy (static per-token TTFT estimate).
 */
export type EnginePolicy = 'fineserve' | 'static-fcfs' | 'saab';

/** Options of {@link Engine.create}. */
export interface EngineOptions {
  /**
   * Where models run. `'auto'` (default) and `'cpu'`: the CPU. `['cuda:0']`: that GPU, with the
   * KV Slab in its memory and models served by the CUDA backend (an addon built with CUDA; see
   * `devices()`). `'auto'` keeps to the CPU until the CUDA backend has been verified on hardware
   * (issue #8): choose a GPU by its id.
   */
  readonly devices?: 'auto' | 'cpu' | readonly string[];
  /** Bytes of the KV Slab of each device (its one allocation, made up front); default 1 GiB. */
  readonly slabBytes?: number;
  /**
   * Worker threads of each CPU device, shared by its models (default every core this process may
   * use); with `sharing: 'space'`, the threads of each model (default 1).
   */
  readonly threads?: number;
  /**
   * How co-located models share a CPU device. `'time'` (default): their steps take turns on one
   * thread pool of `threads` workers. `'space'`: each model gets a pool of its own and their
   * steps run at once, as on a GPU, where each model's executor has its own CUDA stream (GPU
   * devices always share in space). The models' threads together may not exceed the cores.
   */
  readonly sharing?: 'time' | 'space';
  /** Default `fineserve`. */
  readonly policy?: EnginePolicy;
  /** `static-fcfs`: the number of equal partitions the KV memory is cut into; default 4. */
  readonly staticPartitions?: number;
}

/** Latency objectives of a served model, ms. */
export interface ServingSlo {
  /** Time to first token. */
  readonly ttftMs?: number;
  /** Time per output token after the first. */
  readonly tpotMs?: number;
}

/** Options of {@link Engine.loadModel}. */
export interface EngineLoadOptions {
  /** Name requests use (`generate({ model: id })`). */
  readonly id: string;
  /** A `.gguf` file or a Hugging Face folder, or a {@link Model} already loaded. */
  readonly source: string | Model;
  /** Default `'auto'`; see {@link PrecisionName}. Quantized at load when the file is F32/F16/BF16. */
  readonly precision?: PrecisionName | PrecisionSpec;
  /** PTQ calibration data (see {@link Model.load}). */
  readonly calibration?: Calibration;
  /**
   * A Jinja chat template for `messages` requests, used instead of the model's own (and needed
   * when its files bring none); a request's own `chatTemplate` wins over it.
   */
  readonly chatTemplate?: string;
  readonly slo?: ServingSlo;
  /** Context length served; default and maximum the model's. */
  readonly maxContext?: number;
  /** Most sequences in one step; default 64. */
  readonly maxBatch?: number;
  /** Prompt tokens per step (chunked prefill budget); default 256. */
  readonly maxBatchTokens?: number;
  /** KV tokens this model can always get, whatever the others hold (fineserve, saab); default one full context. */
  readonly kvReserveTokens?: number;
  /**
   * When the scheduler finds a request cannot meet its TTFT SLO: `true` ends it at once with
   * finishReason `error` (`ERR_ENGINE_SLO_UNREACHABLE`), as the paper's scheduler drops it;
   * `false` (default) defers it to run best effort behind the requests that can still make it.
   */
  readonly dropLate?: boolean;
  readonly onProgress?: (fraction: number) => void;
  readonly signal?: AbortSignal;
}

/** What {@link Engine.loadModel} resolves with. */
export interface LoadedModelInfo {
  readonly id: string;
  /** The device it runs on (`cpu`). */
  readonly device: string;
  readonly precision: PrecisionSpec;
  /** Its precision's shorthand, e.g. `w4a16-kv8`. */
  readonly precisionName: string;
  readonly kvFormat: KvFormat;
  /** Prompt plus generated tokens one request may hold. */
  readonly maxContext: number;
  /** Bytes of its weights as served (after quantization). */
  readonly weightBytes: number;
  /** KV bytes per token, scales included. */
  readonly kvBytesPerToken: number;
  /** Tokens per KV block in the slab (16, or fewer for shapes whose blocks would not fit 8 to a slab). */
  readonly tokensPerBlock: number;
}

/** One model's part of {@link EngineStats}. */
export interface ModelStats extends ModelCounters, LoadedModelInfo {
  readonly waiting: number;
  readonly running: number;
  readonly liveBlocks: number;
  readonly liveTokens: number;
  readonly kvHeldBytes: number;
  /** The online latency model's current coefficients, ms. */
  readonly latency: MeasuredLatencyModel['coefficients'];
}


export type { DeviceStats };

/** What {@link Engine.stats} returns. */
export interface EngineStats {
  readonly policy: EnginePolicy;
  readonly models: readonly ModelStats[];
  readonly devices: readonly DeviceStats[];
}


const MiB = 2 ** 20;

/** A loaded model, where it runs, and whether the engine loaded its weights (and so frees them). */
interface ModelEntry {
  readonly served: ServedModel;
  readonly device: Device;
  readonly info: LoadedModelInfo;
  readonly ownsModel: boolean;
}


// A CPU prefills a few hundred tokens a second, so the TPOT guard must be free to cut a chunk
// far below the GPU-sized default of 64 tokens to keep co-located decodes on time.
const FINESERVE_ON_CPU = fineserveLocalWith({ minChunkTokens: 8 });

/** See the module comment. */
export class Engine {
  /** How every device of this engine shares KV memory and schedules (see {@link EnginePolicy}). */
  readonly policy: EnginePolicy;
  readonly #devices: Device[];
  readonly #models = new Map<string, ModelEntry>();
  readonly #loading = new Set<string>();
  /** Loads in flight: close() lets them fail and release what they took before freeing the devices. */
  readonly #loads = new Set<Promise<unknown>>();
  readonly #staticPartitions: number;
  #nextId = 1;
  #closed = false;

  private constructor(policy: EnginePolicy, devices: Device[], staticPartitions: number) {
    this.policy = policy;
    this.#devices = devices;
    this.#staticPartitions = staticPartitions;
  }

  /** Makes an engine; throws {@link EngineError} for a bad option or an unusable device. */
  static async create(options: EngineOptions = {}): Promise<Engine> {
    const policy = options.policy ?? 'fineserve';
    if (!['fineserve', 'static-fcfs', 'saab'].includes(policy)) {
      throw new EngineError('ERR_ENGINE_INVALID_REQUEST', `policy = ${JSON.stringify(policy)}: expected fineserve, static-fcfs or saab`);
    }
    const cores = availableParallelism();
    checkNumber('threads', options.threads, 1, cores, true);
    checkNumber('slabBytes', options.slabBytes, 4 * MiB, 256 * 2 ** 30, true);
    checkNumber('staticPartitions', options.staticPartitions, 1, 1024, true);
    const devices = await openDevices(options.devices ?? 'auto', { policy, slabBytes: options.slabBytes ?? 2 ** 30, threads: options.threads, sharing: options.sharing ?? 'time' });
    return new Engine(policy, devices, options.staticPartitions ?? 4);
  }

  #open(what: string): void {
    if (this.#closed) throw new EngineError('ERR_ENGINE_CLOSED', `${what}: the engine is closed`);
  }

  /**
   * Loads a model onto a device and starts serving it. Rejects with {@link ModelError} for a file
   * that cannot be used or an unknown precision, {@link EngineError} for a duplicate id or bad
   * option, {@link KvError} when its KV geometry or reserve does not fit the device's slab.
   */
  async loadModel(options: EngineLoadOptions): Promise<LoadedModelInfo> {
    const job = this.#load(options);
    this.#loads.add(job);
    try {
      return await job;
    } finally {
      this.#loads.delete(job);
    }
  }

  async #load(options: EngineLoadOptions): Promise<LoadedModelInfo> {
    this.#open('loadModel');
    const id = options.id;
    if (typeof id !== 'string' || id.length === 0) throw new EngineError('ERR_ENGINE_INVALID_REQUEST', `id = ${JSON.stringify(id)}: must be a non-empty string`);
    if (this.#models.has(id) || this.#loading.has(id)) throw new EngineError('ERR_ENGINE_DUPLICATE_MODEL', `a model with id "${id}" is already loaded`);
    checkSlo('slo', options.slo);
    checkNumber('maxBatch', options.maxBatch, 1, 4096, true);
    checkNumber('maxBatchTokens', options.maxBatchTokens, 1, 1 << 20, true);
    checkNumber('maxContext', options.maxContext, 2, 1 << 24, true);
    checkNumber('kvReserveTokens', options.kvReserveTokens, 0, 1 << 30, true);
    checkTemplate('chatTemplate', options.chatTemplate);
    if (typeof options.source !== 'string' && !(options.source instanceof Model)) {
      throw new EngineError('ERR_ENGINE_INVALID_REQUEST', `model "${id}": source must be a path (a .gguf file or an HF folder) or a Model, got ${describe(options.source)}`);
    }
    if (typeof options.source !== 'string' && (options.precision !== undefined || options.calibration !== undefined)) {
      throw new EngineError('ERR_ENGINE_INVALID_REQUEST', `model "${id}": precision and calibration apply when loading from a path; a Model object is served in the precision it was loaded with`);
    }
    this.#loading.add(id);
    // What this load owns so far, released in reverse if any later stage fails.
    const undo: (() => void)[] = [];
    try {
      const model =
        typeof options.source === 'string'
          ? await Model.load(options.source, {
              ...(options.precision === undefined ? {} : { precision: options.precision }),
              ...(options.calibration === undefined ? {} : { calibration: options.calibration }),
              ...(options.onProgress === undefined ? {} : { onProgress: options.onProgress }),
              ...(options.signal === undefined ? {} : { signal: options.signal }),
            })
          : options.source;
      // The engine frees weights it loaded itself; a Model the caller passed stays the caller's.
      if (typeof options.source === 'string') undo.push(() => model.dispose());
      this.#open('loadModel');
      const tokenizer = Tokenizer.forModel(model);
      const device = this.#devices[0]!;
      checkOwnThreads(device, id);
      const maxContext = Math.min(options.maxContext ?? model.config.maxContext, model.config.maxContext);
      const served = await this.#serve(id, model, tokenizer, device, maxContext, options, undo);
      this.#open('loadModel');
      device.scheduler.add(served.served);
      this.#models.set(id, { served: served.served, device, info: served.info, ownsModel: typeof options.source === 'string' });
      return served.info;
    } catch (err) {
      for (const release of undo.reverse()) release();
      throw err;
    } finally {
      this.#loading.delete(id);
    }
  }

  async #serve(id: string, model: Model, tokenizer: Tokenizer, device: Device, maxContext: number, options: EngineLoadOptions, undo: (() => void)[]): Promise<{ served: ServedModel; info: LoadedModelInfo }> {
    const pool = poolForModel(device, id, this.#staticPartitions, undo);
    // Space sharing on the CPU: a pool of the model's own, so its steps run beside the others'.
    const ownThreads = device.threadPool === undefined && device.memory === 'host' ? createThreadPool(device.threads) : undefined;
    if (ownThreads !== undefined) undo.push(() => ownThreads.dispose());
    const executor = Executor.attach(model, pool, {
      name: id,
      kvFormat: model.precision.kv,
      threads: device.threads,
      threadPool: device.threadPool ?? ownThreads,
      ownsThreadPool: ownThreads !== undefined,
      ...(device.slab === undefined ? {} : { reserve: { tokens: options.kvReserveTokens ?? maxContext, maxBytes: 0.25 * device.slabBytes } }),
    });
    undo.push(() => executor.dispose());
    // Attach caps the reserve at a quarter of the slab; a reserve asked for explicitly is not cut silently.
    const reserveCap = executor.reserveBlocks * executor.tokensPerBlock;
    if (device.slab !== undefined && options.kvReserveTokens !== undefined && options.kvReserveTokens > reserveCap) {
      throw new EngineError('ERR_ENGINE_INVALID_REQUEST', `model "${id}": kvReserveTokens = ${options.kvReserveTokens}, but at most ${reserveCap} tokens (a quarter of the ${device.id} slab of ${device.slabBytes} bytes) can be reserved for one model; raise slabBytes or lower kvReserveTokens`);
    }
    let measured;
    try {
      measured = await warmUp(executor, maxContext, 0);
    } catch (err) {
      // A model that loads but cannot run a step (a context of 1-2 tokens, broken weights).
      throw new ModelError('ERR_MODEL_LOAD', `${model.source}: the warm-up step failed, so the model cannot be served: ${(err as Error)?.message ?? String(err)}`, { cause: err });
    }
    const latency = new MeasuredLatencyModel({ prior: measured });
    const policyName: LocalPolicyName = this.policy === 'static-fcfs' ? 'fcfs' : this.policy === 'saab' ? 'saab' : 'fineserve';
    const served = new ServedModel({
      id,
      model,
      tokenizer,
      slo: options.slo ?? {},
      limits: { maxBatch: options.maxBatch ?? 64, maxBatchTokens: options.maxBatchTokens ?? 256, maxContext },
      dropLate: options.dropLate ?? false,
      chatTemplate: options.chatTemplate,
      blocks: new BlockManager(pool, executor.kvModel, executor.tokensPerBlock),
      executor,
      latency,
      policy: policyName === 'fineserve' ? FINESERVE_ON_CPU : LOCAL_POLICIES[policyName],
    });
    const info: LoadedModelInfo = {
      id,
      device: device.id,
      precision: model.precision,
      precisionName: precisionName(model.precision),
      kvFormat: executor.kvFormat,
      maxContext,
      weightBytes: model.weightBytes,
      kvBytesPerToken: executor.kvBytesPerToken,
      tokensPerBlock: executor.tokensPerBlock,
    };
    return { served, info };
  }

  /** Ids of the loaded models. */
  get models(): readonly string[] {
    return [...this.#models.keys()];
  }

  /** The tokenizer of a loaded model (to count tokens or render chat templates yourself). */
  tokenizer(model: string): Tokenizer {
    return this.#entry(model, 'tokenizer').served.tokenizer;
  }

  #entry(model: string, what: string): ModelEntry {
    const e = this.#models.get(model);
    if (e !== undefined && e.served.state !== 'ready') throw new EngineError('ERR_ENGINE_UNKNOWN_MODEL', `${what}: model "${model}" is being unloaded`);
    if (e === undefined) {
      const known = [...this.#models.keys()].map((k) => JSON.stringify(k)).join(', ') || 'none';
      throw new EngineError('ERR_ENGINE_UNKNOWN_MODEL', `${what}: no model "${model}" is loaded (loaded: ${known})`);
    }
    return e;
  }

  /**
   * Queues a request and returns its {@link GenerationRun} at once. Throws {@link EngineError}
   * before anything is queued for an unknown model, a bad field (`ERR_ENGINE_INVALID_REQUEST`,
   * naming it), or a prompt past the context (`ERR_ENGINE_CONTEXT_EXCEEDED`); a model without a
   * chat template given `messages` throws {@link ModelError} `ERR_MODEL_TOKENIZER`.
   */
  generate(options: GenerateOptions): GenerationRun {
    this.#open('generate');
    if (typeof options !== 'object' || options === null) throw new EngineError('ERR_ENGINE_INVALID_REQUEST', 'generate() takes an options object');
    const { served: m, device } = this.#entry(options.model, 'generate');
    const sampling = samplingOf(options);
    checkSampling(sampling);
    checkNumber('priority', options.priority, -1e9, 1e9);
    checkSlo('slo', options.slo);
    checkNumber('maxTokens', options.maxTokens, 1, 1 << 24, true);
    if (options.onToken !== undefined && typeof options.onToken !== 'function') throw new EngineError('ERR_ENGINE_INVALID_REQUEST', 'onToken must be a function');
    if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) throw new EngineError('ERR_ENGINE_INVALID_REQUEST', `signal must be an AbortSignal, got ${describe(options.signal)}`);
    const stops = stopStrings(options.stop);
    const prompt = this.#promptTokens(m, options);
    const maxContext = m.limits.maxContext;
    if (prompt.length === 0) throw new EngineError('ERR_ENGINE_INVALID_REQUEST', 'the prompt is empty (no tokens after tokenization)');
    if (prompt.length >= maxContext) {
      throw new EngineError('ERR_ENGINE_CONTEXT_EXCEEDED', `the prompt is ${prompt.length} tokens; model "${m.id}" serves a context of ${maxContext}, leaving no room to generate`);
    }
    if (options.maxTokens !== undefined && prompt.length + options.maxTokens > maxContext) {
      throw new EngineError('ERR_ENGINE_CONTEXT_EXCEEDED', `${prompt.length} prompt tokens + maxTokens ${options.maxTokens} exceed the context of ${maxContext} of model "${m.id}"`);
    }
    let stopTokens: Set<number>;
    if (options.stopTokens !== undefined) {
      checkTokens('stopTokens', options.stopTokens, m.model.config.vocabSize);
      stopTokens = new Set(options.stopTokens);
    } else {
      stopTokens = new Set(m.tokenizer.eosTokenIds);
      if (m.model.config.eosTokenId >= 0) stopTokens.add(m.model.config.eosTokenId);
    }
    const signal = options.signal;
    const id = this.#nextId++;
    const run = new GenerationRun(id);
    const now = performance.now();
    const seq = new Sequence({
      id,
      run,
      arrivalMs: now,
      priority: options.priority ?? 0,
      prompt,
      maxTokens: options.maxTokens ?? maxContext - prompt.length,
      sampling,
      stopTokens,
      decoder: m.tokenizer.createStreamDecoder(),
      stop: new StopMatcher(stops),
      onToken: options.onToken,
      slo: { ...m.slo, ...definedOnly(options.slo) },
    });
    m.stats.arrived(now);
    m.enqueue(seq);
    if (signal?.aborted) {
      m.end(seq, { reason: 'abort' }, now);
      return run;
    }
    if (signal !== undefined) {
      const onAbort = (): void => {
        m.end(seq, { reason: 'abort' }, performance.now());
        device.scheduler.notify();
      };
      signal.addEventListener('abort', onAbort, { once: true });
      void run.result.then(() => signal.removeEventListener('abort', onAbort));
    }
    device.scheduler.notify();
    return run;
  }

  #promptTokens(m: ServedModel, options: GenerateOptions): number[] {
    const given = [options.prompt !== undefined, options.tokens !== undefined, options.messages !== undefined].filter(Boolean).length;
    if (given !== 1) throw new EngineError('ERR_ENGINE_INVALID_REQUEST', 'give exactly one of prompt, tokens or messages');
    if (options.tokens !== undefined) {
      checkTokens('tokens', options.tokens, m.model.config.vocabSize);
      return [...options.tokens];
    }
    if (options.messages !== undefined) {
      if (!Array.isArray(options.messages)) throw new EngineError('ERR_ENGINE_INVALID_REQUEST', 'messages must be an array of { role, content }');
      options.messages.forEach((msg, i) => {
        if (typeof msg !== 'object' || msg === null || typeof msg.role !== 'string' || typeof msg.content !== 'string') {
          throw new EngineError('ERR_ENGINE_INVALID_REQUEST', `messages[${i}] must be { role: string, content: string }`);
        }
      });
      // The template writes BOS itself where the model wants it, as transformers' apply_chat_template.
      checkTemplate('chatTemplate', options.chatTemplate);
      const template = options.chatTemplate ?? m.chatTemplate;
      if (template === undefined && !m.tokenizer.hasChatTemplate) {
        throw new ModelError('ERR_MODEL_TOKENIZER', `${m.model.source}: model "${m.id}" has no chat template; pass chatTemplate (a Jinja chat template) to loadModel or to this generate call, or send a prompt instead of messages`);
      }
      checkTextFits(m, options.messages.reduce((a, msg) => a + msg.content.length, 0));
      const rendered = m.tokenizer.applyChatTemplate(options.messages, { addGenerationPrompt: true, ...(template === undefined ? {} : { template }) });
      checkTextFits(m, rendered.length);
      return m.tokenizer.encode(rendered, { addSpecialTokens: false });
    }
    const text: unknown = options.prompt;
    if (typeof text !== 'string') throw new EngineError('ERR_ENGINE_INVALID_REQUEST', `prompt is a ${typeof text}: must be a string`);
    checkTextFits(m, text.length);
    return m.tokenizer.encode(text);
  }

  /**
   * Stops serving a model and frees its KV memory and weights. `drain: true` lets queued and
   * running requests finish first (new ones are refused at once); `drain: false` (default)
   * ends them with finishReason `abort`.
   */
  async unloadModel(id: string, options: { drain?: boolean } = {}): Promise<void> {
    await this.#unload(this.#entry(id, 'unloadModel'), options.drain === true);
  }

  async #unload(e: ModelEntry, drain: boolean): Promise<void> {
    const m = e.served;
    if (m.state === 'closed') return;
    m.state = 'draining';
    const sched = e.device.scheduler;
    if (drain) {
      while (m.hasWork) await Promise.all([...m.waiting, ...m.running].map((s) => s.run.result));
    } else {
      m.endAll({ reason: 'abort' }, performance.now());
      sched.notify();
      await Promise.all([...m.running].map((s) => s.run.result));
    }
    await sched.quiesce(m);
    if (!this.#models.has(m.id)) return;  // a concurrent unload or close got here first
    sched.remove(m);
    m.close();
    releasePartition(e.device, m.id);
    if (e.ownsModel) m.model.dispose();
    this.#models.delete(m.id);
  }

  /** Per model: queue, running, outcomes, SLO attainment, latency percentiles; per device: slab use by format. */
  stats(): EngineStats {
    this.#open('stats');
    const models: ModelStats[] = [];
    for (const { served: m, info } of this.#models.values()) {
      const kv = m.blocks.pool.stats().models.find((s) => s.id === m.blocks.kvModel);
      models.push({
        ...info,
        ...m.stats.counters(),
        waiting: m.waiting.length,
        running: m.running.length,
        liveBlocks: kv?.liveBlocks ?? 0,
        liveTokens: m.liveTokens,
        kvHeldBytes: kv?.heldBytes ?? 0,
        latency: m.latency.coefficients,
      });
    }
    const devices = this.#devices.map(deviceStats);
    return { policy: this.policy, models, devices };
  }

  /** Resolves when every queued and running request has ended. */
  async idle(): Promise<void> {
    const pending = [...this.#models.values()].flatMap(({ served }) => [...served.waiting, ...served.running].map((s) => s.run.result));
    await Promise.all(pending);
  }

  /**
   * Shuts the engine down: `drain: true` lets every request finish first; by default queued and
   * running requests end with finishReason `abort`. Afterwards every call throws `ERR_ENGINE_CLOSED`.
   */
  async close(options: { drain?: boolean } = {}): Promise<void> {
    if (this.#closed) return;
    // Refuse new work from here on; what is queued drains or is aborted below.
    this.#closed = true;
    if (options.drain === true) {
      for (const { served } of this.#models.values()) served.state = 'draining';
      await this.idle();
    }
    await Promise.allSettled([...this.#loads]);
    for (const e of [...this.#models.values()]) await this.#unload(e, false);
    await Promise.all(this.#devices.map((d) => d.scheduler.stop()));
    for (const d of this.#devices) closeDevice(d);
  }

  /** `await using engine = await Engine.create()`: closes it (aborting what is left) at scope end. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

function samplingOf(o: GenerateOptions): SamplingOptions {
  const s: Record<string, number> = {};
  for (const k of ['temperature', 'topK', 'topP', 'minP', 'repetitionPenalty', 'presencePenalty', 'frequencyPenalty', 'seed', 'logprobs'] as const) {
    const v = o[k];
    if (v !== undefined) s[k] = v as number;
  }
  return s as SamplingOptions;
}

function definedOnly(slo: { readonly ttftMs?: number; readonly tpotMs?: number } | undefined): { ttftMs?: number; tpotMs?: number } {
  const out: { ttftMs?: number; tpotMs?: number } = {};
  if (slo?.ttftMs !== undefined) out.ttftMs = slo.ttftMs;
  if (slo?.tpotMs !== undefined) out.tpotMs = slo.tpotMs;
  return out;
}

/**
 * Refuses, before tokenizing it, a text that cannot fit the context: `chars` UTF-16 units are at
 * least `chars` UTF-8 bytes, and each token stands for at most `maxTokenBytes` of them, so such a
 * text is more than `chars / maxTokenBytes` tokens. The factor 2 leaves room for normalizers that
 * shorten text (NFKC folding ligatures). Tokenizing a megabyte took ~20 s of the event loop.
 */
function checkTextFits(m: ServedModel, chars: number): void {
  const atLeast = Math.floor(chars / (2 * m.tokenizer.maxTokenBytes));
  if (atLeast >= m.limits.maxContext) {
    throw new EngineError('ERR_ENGINE_CONTEXT_EXCEEDED', `the prompt is ${chars} characters, at least ${atLeast} tokens; model "${m.id}" serves a context of ${m.limits.maxContext}, leaving no room to generate`);
  }
}
