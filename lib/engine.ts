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
import { closeDevice, type Device, type DeviceOptions, type DeviceStats, deviceStats, openDevices } from './engine/device.js';
import { type EnginePlacement, GlobalScheduler, type PlacementEvent, type ReplanResult } from './engine/global-scheduler.js';
import { KV_POOL_KINDS, type KvMemoryOptions } from './engine/kv-memory.js';
import { ModelGroup } from './engine/model-group.js';
import type { DeviceLoad, PlacementMove, ReplicaDecision } from './engine/placement.js';
import { freeReplica } from './engine/replica.js';
import { Sequence } from './engine/sequence.js';
import type { ServedModel } from './engine/served-model.js';
import { StopMatcher } from './engine/stop.js';
import type { EngineLoadOptions, EngineOptions, EnginePolicy, EngineStats, LoadedModelInfo, ModelStats, ReplicaStats } from './engine/types.js';
import { checkNumber, checkSampling, checkSlo, checkTemplate, checkTokens, describe, stopStrings } from './engine/validate.js';
import { Model } from './model.js';
import { type GenerateOptions, GenerationRun } from './request.js';
import type { SamplingOptions } from './runner.js';
import { fineserveLocalWith, LOCAL_POLICIES, type LocalPolicyName } from './scheduler/local/index.js';
import { Tokenizer } from './tokenizer.js';

export type { EngineLoadOptions, EngineOptions, EnginePolicy, EngineStats, LoadedModelInfo, ModelStats, ReplicaStats, ServingSlo } from './engine/types.js';
export type { DeviceLoad, DeviceOptions, DeviceStats, EnginePlacement, PlacementEvent, PlacementMove, ReplanResult, ReplicaDecision };

const MiB = 2 ** 20;

// A CPU prefills a few hundred tokens a second, so the TPOT guard must be free to cut a chunk
// far below the GPU-sized default of 64 tokens to keep co-located decodes on time.
const FINESERVE_ON_CPU = fineserveLocalWith({ minChunkTokens: 8 });

/** See the module comment. */
export class Engine {
  /** How every device of this engine shares KV memory and schedules (see {@link EnginePolicy}). */
  readonly policy: EnginePolicy;
  readonly #devices: Device[];
  readonly #models = new Map<string, ModelGroup>();
  readonly #loading = new Set<string>();
  /** Loads in flight: close() lets them fail and release what they took before freeing the devices. */
  readonly #loads = new Set<Promise<unknown>>();
  /** Where models go, re-planning, migration. */
  readonly #global: GlobalScheduler;
  readonly #replanTimer: NodeJS.Timeout | undefined;
  #nextId = 1;
  #closed = false;

  private constructor(policy: EnginePolicy, devices: Device[], kv: KvMemoryOptions, options: EngineOptions) {
    this.policy = policy;
    this.#devices = devices;
    const policyName: LocalPolicyName = policy === 'static-fcfs' ? 'fcfs' : policy === 'saab' ? 'saab' : 'fineserve';
    this.#global = new GlobalScheduler({
      devices,
      models: this.#models,
      factory: { kv, policy: policyName === 'fineserve' ? FINESERVE_ON_CPU : LOCAL_POLICIES[policyName] },
      cooldownMs: options.replanCooldownMs ?? 15_000,
      onPlacement: options.onPlacement,
      isOpen: () => !this.#closed,
    });
    // One device has nowhere to move a model to.
    const every = options.replanIntervalMs ?? (this.#devices.length > 1 ? 5_000 : 0);
    if (every > 0) {
      this.#replanTimer = setInterval(() => {
        if (!this.#global.moving && this.#loads.size === 0) this.replan().catch(() => undefined);
      }, every);
      this.#replanTimer.unref();
    }
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
    checkNumber('replanIntervalMs', options.replanIntervalMs, 0, 2 ** 31 - 1);
    checkNumber('replanCooldownMs', options.replanCooldownMs, 0, 2 ** 31 - 1);
    if (options.onPlacement !== undefined && typeof options.onPlacement !== 'function') throw new EngineError('ERR_ENGINE_INVALID_REQUEST', 'onPlacement must be a function');
    const kvPool = options.kvPool ?? (policy === 'static-fcfs' ? 'static' : 'kv-slab');
    if (!KV_POOL_KINDS.includes(kvPool)) throw new EngineError('ERR_ENGINE_INVALID_REQUEST', `kvPool = ${JSON.stringify(kvPool)}: expected one of ${KV_POOL_KINDS.join(', ')}`);
    checkNumber('kvPoolOptions.blockBytes', options.kvPoolOptions?.blockBytes, 64, 2 ** 36, true);
    checkNumber('kvPoolOptions.pageBytes', options.kvPoolOptions?.pageBytes, 4096, 2 ** 36, true);
    checkNumber('kvPoolOptions.mapCostNs', options.kvPoolOptions?.mapCostNs, 0, 1e9, true);
    const devices = await openDevices(options.devices ?? 'auto', { policy, kvPool, slabBytes: options.slabBytes ?? 2 ** 30, threads: options.threads, sharing: options.sharing ?? 'time' });
    return new Engine(policy, devices, { ...options.kvPoolOptions, kind: kvPool, partitions: options.staticPartitions ?? 4 }, options);
  }

  #open(what: string): void {
    if (this.#closed) throw new EngineError('ERR_ENGINE_CLOSED', `${what}: the engine is closed`);
  }

  /**
   * Loads a model and starts serving it on the device(s) placement chooses (or the one given).
   * Rejects with {@link ModelError} for a file that cannot be used or an unknown precision,
   * {@link EngineError} for a duplicate id or bad option, or (`ERR_ENGINE_PLACEMENT`) when no
   * device can hold it, naming each device's failed constraint; {@link KvError} when its KV
   * geometry or reserve does not fit the slab.
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
    checkNumber('replicas', options.replicas, 1, this.#devices.length, true);
    checkNumber('expectedRate', options.expectedRate, 0, 1e9);
    checkTemplate('chatTemplate', options.chatTemplate);
    if (options.device !== undefined && !this.#devices.some((d) => d.id === options.device)) {
      throw new EngineError('ERR_ENGINE_DEVICE', `model "${id}": device = ${JSON.stringify(options.device)} is not one of this engine's devices (${this.#devices.map((d) => d.id).join(', ')})`);
    }
    if (options.device !== undefined && (options.replicas ?? 1) > 1) throw new EngineError('ERR_ENGINE_INVALID_REQUEST', `model "${id}": device pins a model to one device, so replicas must be 1 (got ${options.replicas})`);
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
      const maxContext = Math.min(options.maxContext ?? model.config.maxContext, model.config.maxContext);
      const group = new ModelGroup({
        id,
        model,
        tokenizer,
        ownsModel: typeof options.source === 'string',
        settings: {
          slo: options.slo ?? {},
          limits: { maxBatch: options.maxBatch ?? 64, maxBatchTokens: options.maxBatchTokens ?? 256, maxContext },
          dropLate: options.dropLate ?? false,
          chatTemplate: options.chatTemplate,
          kvReserveTokens: options.kvReserveTokens,
        },
        expectedRate: options.expectedRate ?? 1,
        pinned: options.device,
        fixedReplicas: options.replicas,
        nowMs: performance.now(),
      });
      const replicas = await this.#global.place(group, undo);
      this.#open('loadModel');
      for (const r of replicas) {
        r.device.scheduler.add(r.served);
        group.replicas.push(r);
      }
      this.#models.set(id, group);
      this.#global.placed('load', id, replicas.map((r) => ({ kind: 'add', model: id, to: r.device.id })));
      return this.#info(group);
    } catch (err) {
      for (const release of undo.reverse()) release();
      throw err;
    } finally {
      this.#loading.delete(id);
    }
  }

  #info(g: ModelGroup): LoadedModelInfo {
    const fp = g.footprint!;
    const devices = g.serving.map((r) => r.device.id);
    return {
      id: g.id,
      device: devices[0] ?? g.replicas[0]?.device.id ?? '',
      devices,
      precision: g.model.precision,
      precisionName: g.model.precisionName,
      kvFormat: fp.kvFormat,
      maxContext: g.settings.limits.maxContext,
      weightBytes: g.model.weightBytes,
      kvBytesPerToken: fp.kvBytesPerToken,
      tokensPerBlock: fp.tokensPerBlock,
    };
  }

  /**
   * The current placement: each model's replicas with their predicted load, TTFT, attainment and
   * the reason for where they are, each device's memory and load, and the plan's score
   * (predicted SLO goodput, output tokens per second), at the arrival rates measured now.
   */
  placement(): EnginePlacement {
    this.#open('placement');
    return this.#global.placement();
  }

  /**
   * Re-plans at the arrival rates measured now and applies the moves it finds worth their cost:
   * a replica moved, added or removed, each live (the new replica serves before the old one
   * drains; nothing is lost or run twice). Resolves when the moves are done. Also runs every
   * `replanIntervalMs`.
   */
  async replan(): Promise<ReplanResult> {
    this.#open('replan');
    return this.#global.replan();
  }

  /**
   * Moves a model's replica to device `to` live (see {@link replan}): from `from` (default its
   * only replica). Resolves when the old replica has drained and is freed. Throws EngineError for
   * an unknown model or device, a pinned model, or a move the placement's constraints forbid.
   */
  async migrate(model: string, to: string, options: { from?: string } = {}): Promise<void> {
    this.#open('migrate');
    const g = this.#entry(model, 'migrate');
    const on = g.serving.map((r) => r.device.id);
    const from = options.from ?? (on.length === 1 ? on[0]! : undefined);
    if (from === undefined || !on.includes(from)) throw new EngineError('ERR_ENGINE_INVALID_REQUEST', `migrate: from = ${JSON.stringify(options.from)}: model "${model}" is served on ${on.join(', ')}; name one of them`);
    if (!this.#devices.some((d) => d.id === to)) throw new EngineError('ERR_ENGINE_DEVICE', `migrate: to = ${JSON.stringify(to)} is not one of this engine's devices (${this.#devices.map((d) => d.id).join(', ')})`);
    if (g.pinned !== undefined) throw new EngineError('ERR_ENGINE_INVALID_REQUEST', `migrate: model "${model}" was loaded with device ${g.pinned}`);
    if (on.includes(to)) throw new EngineError('ERR_ENGINE_INVALID_REQUEST', `migrate: model "${model}" already has a replica on ${to}`);
    await this.#global.migrate(g, from, to);
  }

  /** Ids of the loaded models. */
  get models(): readonly string[] {
    return [...this.#models.keys()];
  }

  /** The tokenizer of a loaded model (to count tokens or render chat templates yourself). */
  tokenizer(model: string): Tokenizer {
    return this.#entry(model, 'tokenizer').tokenizer;
  }

  #entry(model: string, what: string): ModelGroup {
    const e = this.#models.get(model);
    if (e !== undefined && e.state !== 'ready') throw new EngineError('ERR_ENGINE_UNKNOWN_MODEL', `${what}: model "${model}" is being unloaded`);
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
    const group = this.#entry(options.model, 'generate');
    // Replicas share the tokenizer, the weights and the limits: any one checks the request.
    const lead = group.serving[0]!.served;
    const sampling = samplingOf(options);
    checkSampling(sampling);
    checkNumber('priority', options.priority, -1e9, 1e9);
    checkSlo('slo', options.slo);
    checkNumber('maxTokens', options.maxTokens, 1, 1 << 24, true);
    if (options.onToken !== undefined && typeof options.onToken !== 'function') throw new EngineError('ERR_ENGINE_INVALID_REQUEST', 'onToken must be a function');
    if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) throw new EngineError('ERR_ENGINE_INVALID_REQUEST', `signal must be an AbortSignal, got ${describe(options.signal)}`);
    const stops = stopStrings(options.stop);
    let stopTokens: Set<number>;
    if (options.stopTokens !== undefined) {
      checkTokens('stopTokens', options.stopTokens, lead.model.config.vocabSize);
      stopTokens = new Set(options.stopTokens);
    } else {
      stopTokens = new Set(lead.tokenizer.eosTokenIds);
      if (lead.model.config.eosTokenId >= 0) stopTokens.add(lead.model.config.eosTokenId);
    }
    const prompt = this.#promptTokens(lead, options);
    // The request exists from here: its id, and the arrival its TTFT counts from (tokenizing included).
    const request: AcceptedRequest = { run: new GenerationRun(this.#nextId), id: this.#nextId, arrivalMs: performance.now(), sampling, stops, stopTokens };
    if (Array.isArray(prompt)) {
      // Refusals past this point (context) throw before anything is queued.
      this.#enqueue(options, prompt, request);
      this.#nextId++;
      return request.run;
    }
    // Long texts and untrusted tokenizers are tokenized off the event loop: what fails after
    // (the budget, the context, an unload meanwhile) ends the run instead of throwing.
    this.#nextId++;
    const fail = (reason: 'error' | 'abort', error?: Error): void => {
      const timings = { queueMs: 0, ttftMs: undefined, tpotMs: undefined, e2eMs: performance.now() - request.arrivalMs };
      request.run.finish({ text: '', tokens: [], finishReason: reason, promptTokens: 0, timings, sloMet: undefined, preemptions: 0, ...(error === undefined ? {} : { error }) });
    };
    prompt.then(
      (ids) => {
        try {
          this.#enqueue(options, ids, request);
        } catch (err) {
          fail('error', err as Error);
        }
      },
      (err: unknown) => (options.signal?.aborted === true ? fail('abort') : fail('error', err as Error)),
    );
    return request.run;
  }

  /** Routes a tokenized request to a replica and queues it; throws (queuing nothing) for a prompt past the context. */
  #enqueue(options: GenerateOptions, prompt: number[], r: AcceptedRequest): void {
    this.#open('generate');
    const group = this.#entry(options.model, 'generate');
    const replica = group.route(prompt.length);
    const m = replica.served;
    const maxContext = m.limits.maxContext;
    if (prompt.length === 0) throw new EngineError('ERR_ENGINE_INVALID_REQUEST', 'the prompt is empty (no tokens after tokenization)');
    if (prompt.length >= maxContext) {
      throw new EngineError('ERR_ENGINE_CONTEXT_EXCEEDED', `the prompt is ${prompt.length} tokens; model "${m.id}" serves a context of ${maxContext}, leaving no room to generate`);
    }
    if (options.maxTokens !== undefined && prompt.length + options.maxTokens > maxContext) {
      throw new EngineError('ERR_ENGINE_CONTEXT_EXCEEDED', `${prompt.length} prompt tokens + maxTokens ${options.maxTokens} exceed the context of ${maxContext} of model "${m.id}"`);
    }
    const signal = options.signal;
    const { run, arrivalMs: now } = r;
    const seq = new Sequence({
      id: r.id,
      run,
      arrivalMs: now,
      priority: options.priority ?? 0,
      prompt,
      maxTokens: options.maxTokens ?? maxContext - prompt.length,
      sampling: r.sampling,
      stopTokens: r.stopTokens,
      decoder: m.tokenizer.createStreamDecoder(),
      stop: new StopMatcher(r.stops),
      onToken: options.onToken,
      slo: { ...m.slo, ...definedOnly(options.slo) },
    });
    m.stats.arrived(now);
    group.rate.arrived(now);
    group.arrivedWith(prompt.length, seq.maxTokens);
    m.enqueue(seq);
    if (signal?.aborted) {
      m.end(seq, { reason: 'abort' }, performance.now());
      return;
    }
    if (signal !== undefined) {
      // Wherever the request is by then: a migration may have moved it to another replica.
      const onAbort = (): void => group.end(seq, { reason: 'abort' }, performance.now());
      signal.addEventListener('abort', onAbort, { once: true });
      void run.result.then(() => signal.removeEventListener('abort', onAbort));
    }
    replica.device.scheduler.notify();
  }

  #promptTokens(m: ServedModel, options: GenerateOptions): number[] | Promise<number[]> {
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
      // Templates and tokenizer regexes are programs from the model's files: they run on the
      // tokenizer's thread under a deadline, never on the event loop (issue #16 items 4 and 5).
      const { tokenizer } = m;
      const signal = options.signal;
      return tokenizer.applyChatTemplateAsync(options.messages, { addGenerationPrompt: true, ...(template === undefined ? {} : { template }), signal }).then((rendered) => {
        checkTextFits(m, rendered.length);
        return tokenizer.encodeInline(rendered, { addSpecialTokens: false }) ?? tokenizer.encodeAsync(rendered, { addSpecialTokens: false, signal });
      });
    }
    const text: unknown = options.prompt;
    if (typeof text !== 'string') throw new EngineError('ERR_ENGINE_INVALID_REQUEST', `prompt is a ${typeof text}: must be a string`);
    checkTextFits(m, text.length);
    return m.tokenizer.encodeInline(text) ?? m.tokenizer.encodeAsync(text, { signal: options.signal });
  }

  /**
   * Stops serving a model and frees its KV memory and weights. `drain: true` lets queued and
   * running requests finish first (new ones are refused at once); `drain: false` (default)
   * ends them with finishReason `abort`.
   */
  async unloadModel(id: string, options: { drain?: boolean } = {}): Promise<void> {
    await this.#unload(this.#entry(id, 'unloadModel'), options.drain === true);
    this.#global.placed('unload', id, []);
  }

  async #unload(g: ModelGroup, drain: boolean): Promise<void> {
    if (g.state === 'closed') return;
    g.state = 'draining';
    if (drain) {
      while (g.hasWork) await Promise.all(g.pending());
    } else {
      for (const r of g.replicas) {
        r.served.endAll({ reason: 'abort' }, performance.now());
        r.device.scheduler.notify();
      }
      await Promise.all(g.replicas.flatMap((r) => r.served.running.map((s) => s.run.result)));
    }
    for (const r of g.replicas) await r.device.scheduler.quiesce(r.served);
    if (!this.#models.has(g.id)) return;  // a concurrent unload or close got here first
    this.#models.delete(g.id);
    g.state = 'closed';
    for (const r of g.replicas.splice(0)) freeReplica(r);
    if (g.ownsModel) g.model.dispose();
  }

  /**
   * Per model: queue, running, outcomes, SLO attainment, latency percentiles, arrival rate, and
   * each replica; per device: slab use by format.
   */
  stats(): EngineStats {
    this.#open('stats');
    const models: ModelStats[] = [];
    const now = performance.now();
    for (const g of this.#models.values()) {
      const replicas: ReplicaStats[] = g.replicas.map((r) => {
        const m = r.served;
        const kv = m.blocks.pool.stats().models.find((s) => s.id === m.blocks.kvModel);
        return {
          device: r.device.id,
          state: r.state,
          waiting: m.waiting.length,
          running: m.running.length,
          liveBlocks: kv?.liveBlocks ?? 0,
          liveTokens: m.liveTokens,
          kvHeldBytes: kv?.heldBytes ?? 0,
          latency: m.latency.coefficients,
        };
      });
      const sum = (k: 'waiting' | 'running' | 'liveBlocks' | 'liveTokens' | 'kvHeldBytes'): number => replicas.reduce((a, r) => a + r[k], 0);
      models.push({
        ...this.#info(g),
        ...g.stats.counters(),
        waiting: sum('waiting'),
        running: sum('running'),
        liveBlocks: sum('liveBlocks'),
        liveTokens: sum('liveTokens'),
        kvHeldBytes: sum('kvHeldBytes'),
        latency: replicas[0]?.latency ?? g.costs.values().next().value!.coefficients,
        rate: g.rate.rate(now),
        replicas,
      });
    }
    const devices = this.#devices.map(deviceStats);
    return { policy: this.policy, models, devices };
  }

  /** Resolves when every queued and running request has ended. */
  async idle(): Promise<void> {
    await Promise.all([...this.#models.values()].flatMap((g) => g.pending()));
  }

  /**
   * Shuts the engine down: `drain: true` lets every request finish first; by default queued and
   * running requests end with finishReason `abort`. Afterwards every call throws `ERR_ENGINE_CLOSED`.
   */
  async close(options: { drain?: boolean } = {}): Promise<void> {
    if (this.#closed) return;
    // Refuse new work from here on; what is queued drains or is aborted below.
    this.#closed = true;
    if (this.#replanTimer !== undefined) clearInterval(this.#replanTimer);
    if (options.drain === true) {
      for (const g of this.#models.values()) g.state = 'draining';
      await this.idle();
    }
    // A migration waits for its old replica to drain: the aborts below let it end.
    for (const g of this.#models.values()) for (const r of g.replicas) r.served.endAll({ reason: 'abort' }, performance.now());
    for (const d of this.#devices) d.scheduler.notify();
    await Promise.allSettled([...this.#loads, this.#global.settle()]);
    for (const g of [...this.#models.values()]) await this.#unload(g, false);
    await Promise.all(this.#devices.map((d) => d.scheduler.stop()));
    for (const d of this.#devices) closeDevice(d);
  }

  /** `await using engine = await Engine.create()`: closes it (aborting what is left) at scope end. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** What generate() fixed for a request before its prompt was tokenized. */
interface AcceptedRequest {
  readonly run: GenerationRun;
  readonly id: number;
  readonly arrivalMs: number;
  readonly sampling: SamplingOptions;
  readonly stops: ReturnType<typeof stopStrings>;
  readonly stopTokens: Set<number>;
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
