/**
 * ServedModel: one model loaded in the engine on one device: its weights, tokenizer, executor,
 * KV geometry in the device's slab, latency model, and its queue and running set. The device's
 * LocalScheduler drives it; this file does the model's own bookkeeping (admit, preempt, finish,
 * run a step and turn its output into tokens and text).
 * @module
 */
import { ExecutorError } from '../errors.js';
import type { KvPool } from '../kv-pool.js';
import type { Model } from '../model.js';
import type { FinishReason, GenerationResult } from '../request.js';
import type { NativeExecutor } from '../native/addon-types.js';
import type { IterationSample } from '../scheduler/latency-model.js';
import type { LocalPolicy, ModelSnapshot, RunningSequence, WaitingRequest } from '../scheduler/local/types.js';
import type { MeasuredLatencyModel } from '../scheduler/measured-latency.js';
import { CoLocatedLatency } from '../scheduler/measured-latency.js';
import type { Tokenizer } from '../tokenizer.js';
import { ModelStatsRecorder } from './model-stats.js';
import type { Sequence } from './sequence.js';

/** Far-off deadline for requests without a TTFT SLO or deferred ones (finite, so EDF sorts stay total). */
const BEST_EFFORT_MS = 1e12;
/** Share of the TPOT SLO the TPOT guard aims at. */
const TPOT_TARGET = 0.9;

/** One chunk of a step: `n` tokens of `seq` from `seq.computed`. */
export interface StepChunk {
  readonly seq: Sequence;
  readonly n: number;
}

/** Per-model serving limits. */
export interface ServingLimits {
  readonly maxBatch: number;
  readonly maxBatchTokens: number;
  readonly maxContext: number;
}

/** See the module comment. */
export class ServedModel {
  readonly id: string;
  readonly model: Model;
  readonly tokenizer: Tokenizer;
  readonly slo: { readonly ttftMs?: number; readonly tpotMs?: number };
  readonly limits: ServingLimits;
  readonly dropLate: boolean;
  readonly pool: KvPool;
  readonly kvModel: number;
  readonly tokensPerBlock: number;
  readonly latency: MeasuredLatencyModel;
  readonly policy: LocalPolicy;
  readonly stats = new ModelStatsRecorder();
  readonly waiting: Sequence[] = [];
  readonly running: Sequence[] = [];
  /** EWMA of this model's step wall time, what it costs the models it shares the device with. */
  stepEwmaMs = 0;
  /** 'draining': no new requests; 'closed': unloaded. */
  state: 'ready' | 'draining' | 'closed' = 'ready';
  readonly #executor: NativeExecutor;

  constructor(init: {
    id: string;
    model: Model;
    tokenizer: Tokenizer;
    slo: { readonly ttftMs?: number; readonly tpotMs?: number };
    limits: ServingLimits;
    dropLate: boolean;
    pool: KvPool;
    kvModel: number;
    tokensPerBlock: number;
    executor: NativeExecutor;
    latency: MeasuredLatencyModel;
    policy: LocalPolicy;
  }) {
    this.id = init.id;
    this.model = init.model;
    this.tokenizer = init.tokenizer;
    this.slo = init.slo;
    this.limits = init.limits;
    this.dropLate = init.dropLate;
    this.pool = init.pool;
    this.kvModel = init.kvModel;
    this.tokensPerBlock = init.tokensPerBlock;
    this.#executor = init.executor;
    this.latency = init.latency;
    this.policy = init.policy;
  }

  get hasWork(): boolean {
    return this.waiting.length > 0 || this.running.length > 0;
  }

  deadline(seq: Sequence): number {
    if (seq.deferred || this.slo.ttftMs === undefined) return seq.arrivalMs + BEST_EFFORT_MS;
    return seq.arrivalMs + this.slo.ttftMs;
  }

  /** Whether some sequence of this model is decoding (its TPOT is at stake in every step on the device). */
  get decoding(): boolean {
    return this.running.some((s) => s.isDecoding);
  }

  /** One decode-only step of its decoding sequences, as its latency model predicts it; 0 if none. */
  decodeStepMs(): number {
    let n = 0;
    let context = 0;
    for (const s of this.running) {
      if (!s.isDecoding) continue;
      n++;
      context += s.computed;
    }
    return n === 0 ? 0 : this.latency.decodeMs(n, context / n);
  }

  /**
   * The longest this iteration's cycle may take with every decoding sequence's mean TPOT still
   * within the guard's target when it ends, given the time it has used and `cycleMs` per token
   * from here on (the device's decode-only cycle). TPOT is a mean over a request's tokens, so a
   * sequence ahead of its budget can absorb one long prefill step. Its tokens to come are taken
   * as what it decoded so far (at least 16), at most what maxTokens leaves. Undefined without a
   * TPOT SLO or decoding sequences.
   */
  tpotSlackMs(nowMs: number, cycleMs: number): number | undefined {
    if (this.slo.tpotMs === undefined) return undefined;
    const target = TPOT_TARGET * this.slo.tpotMs;
    let slack: number | undefined;
    for (const s of this.running) {
      if (!s.isDecoding) continue;
      const remaining = Math.max(1, Math.min(s.maxTokens - s.decoded, Math.max(s.decoded, 16)));
      const allowed = target * (s.decoded + remaining - 1) - (nowMs - (s.firstTokenMs ?? nowMs)) - (remaining - 1) * cycleMs;
      slack = slack === undefined ? allowed : Math.min(slack, allowed);
    }
    return slack;
  }

  /**
   * What the policy sees this iteration. `othersMs`: co-located models' step time per cycle.
   * `tpotMs`: the tightest TPOT SLO among this model and the co-located models now decoding:
   * their steps take turns, so every step lengthens every decoding model's time per token.
   */
  snapshot(nowMs: number, othersMs: () => number, tpotMs: number | undefined, coLocatedDecoding: boolean, stepLimitMs: number | undefined): ModelSnapshot {
    const waiting: WaitingRequest[] = this.waiting.map((s) => ({
      id: s.id,
      arrivalMs: s.arrivalMs,
      promptTokens: s.target,
      deadlineMs: this.deadline(s),
      priority: s.priority,
    }));
    const running: RunningSequence[] = this.running.map((s) => ({
      id: s.id,
      arrivalMs: s.arrivalMs,
      deadlineMs: this.deadline(s),
      priority: s.priority,
      promptTokens: s.promptTokens,
      decodedTokens: s.decoded,
      computedTokens: s.computed,
      targetTokens: s.target,
      blocks: s.blocks.length,
      started: s.firstTokenMs !== undefined,
    }));
    const latency = new CoLocatedLatency(this.latency, othersMs);
    return {
      nowMs,
      waiting,
      running,
      kv: { freeBlocks: this.pool.availableBlocks(this.kvModel), tokensPerBlock: this.tokensPerBlock },
      limits: { maxBatch: this.limits.maxBatch, maxBatchTokens: this.limits.maxBatchTokens, minBatch: 1 },
      // A tenth of the TPOT SLO is kept back for what the latency model cannot see (JS work
      // between steps, noise from a shared machine): aimed at exactly the SLO, half would miss it.
      slo: { ttftMs: this.slo.ttftMs ?? BEST_EFFORT_MS, ...(tpotMs === undefined ? {} : { tpotMs: TPOT_TARGET * tpotMs }) },
      latency,
      ttftPerTokenMs: latency.prefillMs(1, 128) / 128,
      coLocatedDecoding,
      ...(stepLimitMs === undefined ? {} : { stepLimitMs }),
    };
  }

  /** Moves a waiting sequence into the engine; false (and the request ended) if the executor refused it. */
  admit(seq: Sequence, nowMs: number): boolean {
    const at = this.waiting.indexOf(seq);
    if (at >= 0) this.waiting.splice(at, 1);
    try {
      this.#executor.addSequence(seq.id, Int32Array.from(seq.tokens), seq.sampling);
    } catch (err) {
      this.finish(seq, 'error', nowMs, new ExecutorError('ERR_SAMPLING_INVALID', (err as Error).message, { cause: err }));
      return false;
    }
    seq.inExecutor = true;
    seq.status = 'running';
    seq.admittedMs ??= nowMs;
    this.running.push(seq);
    return true;
  }

  /** Recompute later: its blocks go back to the slab now; its sampler state stays. */
  preempt(seq: Sequence): void {
    this.#freeBlocks(seq);
    seq.computed = 0;
    seq.target = seq.tokens.length;
    seq.preemptions++;
  }

  #freeBlocks(seq: Sequence): void {
    if (seq.blocks.length > 0) this.pool.free(this.kvModel, seq.blocks);
    seq.blocks = [];
  }

  /** Ends a sequence wherever it is: frees its blocks, settles its run. Must not run during a step. */
  finish(seq: Sequence, reason: FinishReason, nowMs: number, error?: Error): void {
    if (seq.status === 'finished') return;
    this.#freeBlocks(seq);
    if (seq.inExecutor) this.#executor.removeSequence(seq.id);
    seq.inExecutor = false;
    const list = seq.status === 'waiting' ? this.waiting : this.running;
    const at = list.indexOf(seq);
    if (at >= 0) list.splice(at, 1);
    seq.status = 'finished';
    let tokens = seq.generated();
    if (reason === 'stop' && tokens.length > 0 && seq.stopTokens.has(tokens.at(-1)!)) tokens = tokens.slice(0, -1);
    const timings = seq.timings(nowMs);
    const sloMet = reason === 'abort' ? undefined : reason !== 'error' && this.#meetsSlo(timings.ttftMs, timings.tpotMs);
    const result: GenerationResult = {
      text: seq.text,
      tokens,
      finishReason: reason,
      promptTokens: seq.promptTokens,
      timings,
      sloMet,
      preemptions: seq.preemptions,
      ...(error === undefined ? {} : { error }),
    };
    this.stats.finished(result, nowMs);
    seq.run.finish(result);
  }

  #meetsSlo(ttft: number | undefined, tpot: number | undefined): boolean {
    if (this.slo.ttftMs !== undefined && (ttft === undefined || ttft > this.slo.ttftMs)) return false;
    if (this.slo.tpotMs !== undefined && tpot !== undefined && tpot > this.slo.tpotMs) return false;
    return true;
  }

  /** Ends the sequences an abort or a failing callback marked. */
  reap(nowMs: number): void {
    for (const seq of [...this.running, ...this.waiting]) {
      const end = seq.pendingEnd;
      if (end !== undefined) this.finish(seq, end.reason, nowMs, end.error);
    }
  }

  /**
   * Gives every chunk the blocks it needs for `computed + n` tokens, in one slab call. Chunks
   * whose blocks are not available are left out of the step (the policy counted on memory that
   * is gone); returns those that can run.
   */
  allocate(chunks: readonly StepChunk[]): StepChunk[] {
    const need = chunks.map((c) => Math.ceil((c.seq.computed + c.n) / this.tokensPerBlock) - c.seq.blocks.length);
    const allocs = need.map((count) => ({ model: this.kvModel, count: Math.max(0, count) }));
    const live = this.running.reduce((a, s) => a + s.computed, 0);
    const r = this.pool.step({ allocs, liveTokens: [{ model: this.kvModel, tokens: live }] });
    const ok: StepChunk[] = [];
    chunks.forEach((c, i) => {
      const got = r.allocs[i]!;
      if (!got.ok) return;
      for (const b of got.blocks) c.seq.blocks.push(b);
      ok.push(c);
    });
    return ok;
  }

  /** Runs one executor step over `chunks` and feeds its wall time to the latency model; returns the sampled token per chunk (-1 where none). */
  async execute(chunks: readonly StepChunk[]): ReturnType<NativeExecutor['step']> {
    const tpb = this.tokensPerBlock;
    const ids = new Uint32Array(chunks.length);
    const nTokens = new Uint32Array(chunks.length);
    const positions = new Uint32Array(chunks.length);
    const nBlocks = new Uint32Array(chunks.length);
    const sample = new Uint8Array(chunks.length);
    let totalTokens = 0;
    let totalBlocks = 0;
    chunks.forEach((c, i) => {
      ids[i] = c.seq.id;
      nTokens[i] = c.n;
      positions[i] = c.seq.computed;
      nBlocks[i] = Math.ceil((c.seq.computed + c.n) / tpb);
      sample[i] = c.seq.computed + c.n === c.seq.tokens.length ? 1 : 0;
      totalTokens += c.n;
      totalBlocks += nBlocks[i]!;
    });
    const tokens = new Int32Array(totalTokens);
    const blocks = new Uint32Array(totalBlocks);
    let t = 0;
    let b = 0;
    chunks.forEach((c, i) => {
      for (let k = 0; k < c.n; k++) tokens[t++] = c.seq.tokens[c.seq.computed + k]!;
      for (let k = 0; k < nBlocks[i]!; k++) blocks[b++] = c.seq.blocks[k]!;
    });
    const start = performance.now();
    const out = await this.#executor.step(ids, tokens, nTokens, positions, blocks, nBlocks, sample, false);
    const ms = performance.now() - start;
    this.#observe(chunks, ms);
    return out;
  }

  #observe(chunks: readonly StepChunk[], ms: number): void {
    let prefillSeqs = 0;
    let prefillTokens = 0;
    let decodeSeqs = 0;
    let decodeContext = 0;
    for (const c of chunks) {
      if (c.seq.isDecoding) {
        decodeSeqs++;
        decodeContext += c.seq.computed;
      } else {
        prefillSeqs++;
        prefillTokens += c.n;
      }
    }
    const sample: IterationSample = { prefillSeqs, prefillTokens, decodeSeqs, decodeContext: decodeSeqs > 0 ? decodeContext / decodeSeqs : 0, measuredMs: ms };
    this.latency.observe(sample);
    this.stepEwmaMs = this.stepEwmaMs === 0 ? ms : 0.8 * this.stepEwmaMs + 0.2 * ms;
    this.stats.step(ms);
  }

  /** Refuses new work from now on. */
  close(): void {
    this.state = 'closed';
  }
}
