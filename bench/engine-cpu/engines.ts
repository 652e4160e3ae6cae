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
  readonly name: 'fineserve' | 'node-llama-cpp';
  /**
   * Generates for every prompt at once; each output stops after `maxTokens` tokens or after the
   * first token in `stop` (which is included). `stop` empty: exactly `maxTokens` tokens each.
   */
  generate(prompts: readonly (readonly number[])[], maxTokens: number, stop: readonly number[]): Promise<number[][]>;
  /** Makes the next `generate` of this many prompts and tokens per sequence start without setup. */
  prepare(sequences: number, tokensPerSequence: number): Promise<void>;
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

// ---- node-llama-cpp ----------------------------------------------------------------------------

/** The part of node-llama-cpp 3.22's API used here (its Token is a branded number). */
interface PeerSequence {
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
