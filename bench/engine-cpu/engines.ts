/**
 * The two engines behind one small interface, used by bench/engine-cpu.ts and by
 * test/peer-node-llama-cpp.test.ts: fineserve's ModelRunner and node-llama-cpp (the peer, installed
 * on demand by scripts/peer.mjs into .cache/peers, so it is typed here by hand: only the part of
 * its API used here).
 *
 * Both run greedy generation from token ids (no tokenizer involved) on the same GGUF file.
 * @module
 */
import { ensurePeer, type EnsuredPeer } from '../../scripts/peer.mjs';
import { Model, ModelRunner } from '../../lib/index.js';

/** Greedy generation for a batch of prompts, all of them concurrently. */
export interface Engine {
  readonly name: 'fineserve' | 'fineserve-per-row' | 'node-llama-cpp';
  /**
   * Generates for every prompt at once; each output stops after `maxTokens` tokens or after the
   * first token in `stop` (which is included). `stop` empty: exactly `maxTokens` tokens each.
   */
  generate(prompts: readonly (readonly number[])[], maxTokens: number, stop: readonly number[]): Promise<number[][]>;
  /** Makes the next `generate` of this many prompts and tokens per sequence start without setup. */
  prepare(sequences: number, tokensPerSequence: number): Promise<void>;
  /**
   * Perplexity of `tokens`: each token after the first scored given its whole prefix, natural
   * log, one sequence.
   */
  /** Scored in windows of `window` tokens that share one token, as Model.perplexity does. */
  perplexity(tokens: readonly number[], window: number, vocab: number): Promise<{ perplexity: number; nllSum: number; scored: number }>;
  /** How it was configured, for the results file. */
  describe(): Record<string, unknown>;
  close(): Promise<void>;
}

// ---- fineserve ---------------------------------------------------------------------------------

export interface FineserveEngineOptions {
  readonly threads: number;
  readonly kvFormat: 'f32' | 'f16';
}

export class FineserveEngine implements Engine {
  readonly name = 'fineserve' as const;
  readonly model: Model;
  readonly runner: ModelRunner;
  readonly #options: FineserveEngineOptions;

  private constructor(model: Model, runner: ModelRunner, options: FineserveEngineOptions) {
    this.model = model;
    this.runner = runner;
    this.#options = options;
  }

  static async open(path: string, options: FineserveEngineOptions): Promise<FineserveEngine> {
    const model = await Model.load(path, { checkFinite: false });
    const runner = ModelRunner.create(model, { threads: options.threads, kvFormat: options.kvFormat });
    return new FineserveEngine(model, runner, options);
  }

  async prepare(): Promise<void> {}

  async perplexity(tokens: readonly number[], window: number): Promise<{ perplexity: number; nllSum: number; scored: number }> {
    return this.model.perplexity(tokens, { kvFormat: this.#options.kvFormat, threads: this.#options.threads, window });
  }

  async generate(prompts: readonly (readonly number[])[], maxTokens: number, stop: readonly number[]): Promise<number[][]> {
    const outs = await this.runner.generate(prompts.map((prompt) => ({ prompt, maxTokens, stopTokens: stop })));
    return outs.map((o) => o.tokens);
  }

  describe(): Record<string, unknown> {
    return {
      threads: this.#options.threads,
      kvFormat: this.#options.kvFormat,
      maxBatchTokens: 512,
      weightBytes: this.model.weightBytes,
    };
  }

  async close(): Promise<void> {}
}

/**
 * fineserve with the per-row kernels the GEMM replaced (gemm/gemm.h): FINESERVE_GEMM=0 while it
 * generates. The native side reads the variable at each linear() call, so the two fineserve
 * engines of one process alternate paths; calls never overlap (the benchmark awaits each).
 */
export class PerRowKernelsEngine implements Engine {
  readonly name = 'fineserve-per-row' as const;
  readonly #inner: FineserveEngine;

  private constructor(inner: FineserveEngine) {
    this.#inner = inner;
  }

  static async open(path: string, options: FineserveEngineOptions): Promise<PerRowKernelsEngine> {
    return new PerRowKernelsEngine(await FineserveEngine.open(path, options));
  }

  async #withPerRow<T>(work: () => Promise<T>): Promise<T> {
    const before = process.env.FINESERVE_GEMM;
    process.env.FINESERVE_GEMM = '0';
    try {
      return await work();
    } finally {
      if (before === undefined) delete process.env.FINESERVE_GEMM;
      else process.env.FINESERVE_GEMM = before;
    }
  }

  async prepare(): Promise<void> {}

  perplexity(tokens: readonly number[], window: number, vocab: number): Promise<{ perplexity: number; nllSum: number; scored: number }> {
    return this.#withPerRow(() => this.#inner.perplexity(tokens, window));
  }

  generate(prompts: readonly (readonly number[])[], maxTokens: number, stop: readonly number[]): Promise<number[][]> {
    return this.#withPerRow(() => this.#inner.generate(prompts, maxTokens, stop));
  }

  describe(): Record<string, unknown> {
    return { ...this.#inner.describe(), kernels: 'per-row (FINESERVE_GEMM=0)' };
  }

  close(): Promise<void> {
    return this.#inner.close();
  }
}

// ---- node-llama-cpp ----------------------------------------------------------------------------

/** The part of node-llama-cpp 3.22's API used here (its Token is a branded number). */
type PeerEvaluateItem = number | [number, { generateNext: { logits: { filter: { tokens: number[]; includeMax: boolean } }; totalLogitWeight: boolean } }];
interface PeerSequence {
  controlledEvaluate(input: PeerEvaluateItem[]): Promise<({ next: { logits?: Map<number, number>; totalLogitWeight?: number } } | undefined)[]>;
  evaluate(tokens: number[], options?: { temperature?: number; yieldEogToken?: boolean }): AsyncGenerator<number, void, void | number>;
  clearHistory(): Promise<void>;
}
interface PeerContext {
  readonly contextSize: number;
  readonly batchSize: number;
  readonly currentThreads: number;
  readonly totalSequences: number;
  getSequence(): PeerSequence;
  dispose(): Promise<void>;
}
interface PeerContextOptions {
  sequences: number;
  contextSize: number;
  threads: number;
  batchSize?: number;
  experimentalKvCacheKeyType?: string;
  experimentalKvCacheValueType?: string;
}
interface PeerModel {
  createContext(options: PeerContextOptions): Promise<PeerContext>;
  dispose(): Promise<void>;
}
interface PeerLlama {
  readonly buildType: string;
  readonly cpuMathCores: number;
  readonly systemInfo: string;
  readonly llamaCppRelease: { repo: string; release: string };
  loadModel(options: { modelPath: string; gpuLayers: number }): Promise<PeerModel>;
  dispose(): Promise<void>;
}
interface PeerModule {
  getLlama(options: {
    gpu: false;
    build: 'never';
    skipDownload: boolean;
    progressLogs: boolean;
    maxThreads: number;
    logLevel: string;
  }): Promise<PeerLlama>;
  LlamaLogLevel: { error: string };
}

/** Installs the peer if needed (scripts/peer.mjs) and imports it. */
export async function importPeer(log?: (line: string) => void): Promise<{ peer: EnsuredPeer; module: PeerModule }> {
  const peer = await ensurePeer(log === undefined ? {} : { log });
  const module = (await import(peer.importPath)) as PeerModule;
  return { peer, module };
}

export interface PeerEngineOptions {
  readonly threads: number;
  /** KV cache type: node-llama-cpp's default is f16. */
  readonly kvFormat: 'f32' | 'f16';
}

export class PeerEngine implements Engine {
  readonly name = 'node-llama-cpp' as const;
  readonly llama: PeerLlama;
  readonly #model: PeerModel;
  readonly #options: PeerEngineOptions;
  readonly #version: string;
  #context: { context: PeerContext; sequences: PeerSequence[]; perSequence: number } | undefined;

  private constructor(llama: PeerLlama, model: PeerModel, options: PeerEngineOptions, version: string) {
    this.llama = llama;
    this.#model = model;
    this.#options = options;
    this.#version = version;
  }

  static async open(path: string, options: PeerEngineOptions, log?: (line: string) => void): Promise<PeerEngine> {
    const { peer, module } = await importPeer(log);
    const llama = await module.getLlama({
      gpu: false,
      build: 'never',
      skipDownload: true,
      progressLogs: false,
      maxThreads: options.threads,
      logLevel: module.LlamaLogLevel.error,
    });
    const model = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
    return new PeerEngine(llama, model, options, peer.version);
  }

  /**
   * One context holds `sequences` sequences of `tokensPerSequence` cells each (node-llama-cpp sizes
   * contexts per sequence); it is kept while later calls fit in it.
   */
  async prepare(sequences: number, tokensPerSequence: number): Promise<void> {
    const have = this.#context;
    if (have !== undefined && have.sequences.length === sequences && have.perSequence >= tokensPerSequence) return;
    if (have !== undefined) await have.context.dispose();
    this.#context = undefined;
    const perSequence = Math.ceil(tokensPerSequence / 256) * 256;
    const kv = this.#options.kvFormat === 'f32' ? { experimentalKvCacheKeyType: 'F32', experimentalKvCacheValueType: 'F32' } : {};
    const context = await this.#model.createContext({
      sequences,
      contextSize: perSequence,
      threads: this.#options.threads,
      ...kv,
    });
    const list = Array.from({ length: sequences }, () => context.getSequence());
    this.#context = { context, sequences: list, perSequence };
  }

  async generate(prompts: readonly (readonly number[])[], maxTokens: number, stop: readonly number[]): Promise<number[][]> {
    const longest = Math.max(...prompts.map((p) => p.length));
    await this.prepare(prompts.length, longest + maxTokens);
    const { sequences } = this.#context!;
    const stopSet = new Set(stop);
    const outputs = await Promise.all(
      prompts.map(async (prompt, i) => {
        const sequence = sequences[i]!;
        const tokens: number[] = [];
        for await (const token of sequence.evaluate([...prompt], { temperature: 0, yieldEogToken: true })) {
          tokens.push(token);
          if (stopSet.has(token) || tokens.length >= maxTokens) break;
        }
        return tokens;
      }),
    );
    await Promise.all(sequences.slice(0, prompts.length).map((s) => s.clearHistory()));
    return outputs;
  }

  /**
   * Log-probabilities from llama.cpp's raw logits over the whole vocabulary, log-softmax taken
   * here in double (node-llama-cpp's totalLogitWeight is not the softmax normaliser of raw logits).
   */
  async perplexity(tokens: readonly number[], window: number, vocab: number): Promise<{ perplexity: number; nllSum: number; scored: number }> {
    let nllSum = 0;
    let scored = 0;
    for (let start = 0; start === 0 || start + 1 < tokens.length; start += window - 1) {
      const part = tokens.slice(start, start + window);
      const rows = await this.logits(part.slice(0, -1), vocab);
      rows.forEach((row, i) => {
        let max = -Infinity;
        for (const v of row) max = Math.max(max, v);
        let sum = 0;
        for (const v of row) sum += Math.exp(v - max);
        nllSum -= row[part[i + 1]!]! - max - Math.log(sum);
      });
      scored += part.length - 1;
    }
    return { perplexity: Math.exp(nllSum / scored), nllSum, scored };
  }

  /** llama.cpp's raw logits over the whole vocabulary after each of `tokens` (one evaluation from an empty cache). */
  async logits(tokens: readonly number[], vocab: number): Promise<Float32Array[]> {
    await this.prepare(1, tokens.length);
    const sequence = this.#context!.sequences[0]!;
    const all = Array.from({ length: vocab }, (_, i) => i);
    const out = await sequence.controlledEvaluate(
      tokens.map((t) => [t, { generateNext: { logits: { filter: { tokens: all, includeMax: false } }, totalLogitWeight: false } }]),
    );
    await sequence.clearHistory();
    return out.map((o, i) => {
      const map = o?.next.logits;
      if (map === undefined || map.size !== vocab) throw new Error(`node-llama-cpp returned no logits for position ${i}`);
      const row = new Float32Array(vocab);
      for (const [token, logit] of map) row[token] = logit;
      return row;
    });
  }

  describe(): Record<string, unknown> {
    const c = this.#context?.context;
    return {
      version: this.#version,
      llamaCpp: this.llama.llamaCppRelease.release,
      build: this.llama.buildType,
      threads: this.#options.threads,
      kvFormat: this.#options.kvFormat,
      ...(c === undefined ? {} : { contextThreads: c.currentThreads, batchSize: c.batchSize }),
      systemInfo: this.llama.systemInfo,
    };
  }

  async close(): Promise<void> {
    await this.#context?.context.dispose();
    this.#context = undefined;
    await this.#model.dispose();
    await this.llama.dispose();
  }
}
