/**
 * ServedModel: one model loaded in the engine on one device: its weights, tokenizer, executor,
 * block manager, latency model, and its queue and running set. Each step goes one way, as in
 * nano-vllm: `schedule` (the policy's decision applied: drops, preemptions, admissions, the
 * chunks and their blocks), `run` (one executor step, timed), `postprocess` (the step's time to
 * the latency model, then each sampled token's whole life: stream decoding, stop matching,
 * onToken, finish). The device's LocalScheduler only chooses which model steps next and hands it
 * a {@link DeviceView} of the others, as plain values.
 * @module
 */
import { EngineError, ExecutorError } from '../errors.js';
import type { Model } from '../model.js';
import type { FinishReason, GenerationResult } from '../request.js';
import { BusyMeter } from './busy-meter.js';
import type { IterationSample } from '../scheduler/latency-model.js';
import type { IterationDecision, LocalPolicy, ModelSnapshot } from '../scheduler/local/types.js';
import type { MeasuredLatencyModel } from '../scheduler/measured-latency.js';
import type { Tokenizer } from '../tokenizer.js';
import type { BlockManager, StepChunk } from './block-manager.js';
import type { Executor, ExecutorStepResult, SampledToken } from './executor.js';
import { ModelStatsRecorder } from './model-stats.js';
import type { PendingEnd, Sequence } from './sequence.js';

export type { StepChunk } from './block-manager.js';

/** Far-off deadline for requests without a TTFT SLO or deferred ones (finite, so EDF sorts stay total). */
const BEST_EFFORT_MS = 1e12;
/** Share of the TPOT SLO the TPOT guard aims at. */
const TPOT_TARGET = 0.9;

function meetsSlo(slo: { readonly ttftMs?: number; readonly tpotMs?: number }, ttft: number | undefined, tpot: number | undefined): boolean {
  if (slo.ttftMs !== undefined && (ttft === undefined || ttft > slo.ttftMs)) return false;
  if (slo.tpotMs !== undefined && tpot !== undefined && tpot > slo.tpotMs) return false;
  return true;
}

/** Per-model serving limits. */
export interface ServingLimits {
  readonly maxBatch: number;
  readonly maxBatchTokens: number;
  readonly maxContext: number;
}

/** What the device tells a model about the others before its step: plain values, read once. */
export interface DeviceView {
  /** Co-located models' step time per cycle, added to each of this model's iterations (time sharing). */
  readonly othersMs: number;
  /** The tightest TPOT SLO among this model and the co-located models decoding now. */
  readonly tpotMs: number | undefined;
  /** A co-located model is decoding and this model's steps delay its tokens. */
  readonly coLocatedDecoding: boolean;
  /** The longest this step may take with every decoding sequence's mean TPOT still on target. */
  readonly stepLimitMs: number | undefined;
}

/** A scheduled step: the chunks to run (with their blocks) and whether scheduling changed anything. */
export interface StepPlan {
  readonly chunks: readonly StepChunk[];
  readonly progressed: boolean;
}

/** How a step ended: its output and wall time, or the error that ended it having written nothing. */
export type StepOutcome = { readonly ok: true; readonly result: ExecutorStepResult; readonly ms: number } | { readonly ok: false; readonly error: unknown };

/** See the module comment. */
export class ServedModel {
  readonly id: string;
  readonly model: Model;
  readonly tokenizer: Tokenizer;
  readonly slo: { readonly ttftMs?: number; readonly tpotMs?: number };
  readonly limits: ServingLimits;
  readonly dropLate: boolean;
  /** The chat template `messages` requests use instead of the model's own, if one was given. */
  readonly chatTemplate: string | undefined;
  readonly blocks: BlockManager;
  readonly latency: MeasuredLatencyModel;
  readonly policy: LocalPolicy;
  /** Shared by the replicas of one model, so its counters and attainment span all of them. */
  readonly stats: ModelStatsRecorder;
  readonly waiting: Sequence[] = [];
  readonly running: Sequence[] = [];
  /** EWMA of this model's step wall time, what it costs the models it shares the device with. */
  stepEwmaMs = 0;
  /** The share of its device's time its steps take lately (what the re-planner trusts). */
  readonly busy = new BusyMeter(performance.now());
  /** 'draining': no new requests; 'closed': unloaded. */
  state: 'ready' | 'draining' | 'closed' = 'ready';
  /** Its lane starts no step while set: a migration is taking its requests away. */
  paused = false;
  readonly #executor: Executor;
  /** A step is running: its sequences must not be finished until it returns. */
  #stepping = false;

  constructor(init: {
    id: string;
    model: Model;
    tokenizer: Tokenizer;
    slo: { readonly ttftMs?: number; readonly tpotMs?: number };
    limits: ServingLimits;
    dropLate: boolean;
    chatTemplate: string | undefined;
    blocks: BlockManager;
    executor: Executor;
    latency: MeasuredLatencyModel;
    policy: LocalPolicy;
    stats?: ModelStatsRecorder;
  }) {
    this.stats = init.stats ?? new ModelStatsRecorder();
    this.id = init.id;
    this.model = init.model;
    this.tokenizer = init.tokenizer;
    this.slo = init.slo;
    this.limits = init.limits;
    this.dropLate = init.dropLate;
    this.chatTemplate = init.chatTemplate;
    this.blocks = init.blocks;
    this.#executor = init.executor;
    this.latency = init.latency;
    this.policy = init.policy;
  }

  get hasWork(): boolean {
    return this.waiting.length > 0 || this.running.length > 0;
  }

  get stepping(): boolean {
    return this.#stepping;
  }

  deadline(seq: Sequence): number {
    if (seq.deferred || seq.slo.ttftMs === undefined) return seq.arrivalMs + BEST_EFFORT_MS;
    return seq.arrivalMs + seq.slo.ttftMs;
  }

  /** The tightest TPOT SLO of its decoding sequences (a request's own or the model's). */
  get decodingTpotMs(): number | undefined {
    let tpot: number | undefined;
    for (const s of this.running) {
      if (s.isDecoding && s.slo.tpotMs !== undefined) tpot = tpot === undefined ? s.slo.tpotMs : Math.min(tpot, s.slo.tpotMs);
    }
    return tpot;
  }

  /** Whether some sequence of this model is decoding (its TPOT is at stake in every step on the device). */
  get decoding(): boolean {
    return this.running.some((s) => s.isDecoding);
  }

  /** Tokens its running sequences hold in the cache. */
  get liveTokens(): number {
    return this.running.reduce((a, s) => a + s.computed, 0);
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
    let slack: number | undefined;
    for (const s of this.running) {
      if (!s.isDecoding || s.slo.tpotMs === undefined) continue;
      const target = TPOT_TARGET * s.slo.tpotMs;
      const remaining = Math.max(1, Math.min(s.maxTokens - s.decoded, Math.max(s.decoded, 16)));
      const allowed = target * (s.decoded + remaining - 1) - (nowMs - (s.firstTokenMs ?? nowMs)) - (remaining - 1) * cycleMs;
      slack = slack === undefined ? allowed : Math.min(slack, allowed);
    }
    return slack;
  }

  /** What the policy sees this iteration: plain values only, so the policy stays a pure function. */
  snapshot(nowMs: number, view: DeviceView): ModelSnapshot {
    return {
      nowMs,
      waiting: this.waiting.map((s) => ({ id: s.id, arrivalMs: s.arrivalMs, promptTokens: s.target, deadlineMs: this.deadline(s), priority: s.priority })),
      running: this.running.map((s) => ({
        id: s.id,
        arrivalMs: s.arrivalMs,
        deadlineMs: this.deadline(s),
        priority: s.priority,
        promptTokens: s.promptTokens,
        decodedTokens: s.decoded,
        computedTokens: s.computed,
        targetTokens: s.target,
        blocks: s.blockTable.length,
        started: s.firstTokenMs !== undefined,
      })),
      kv: { freeBlocks: this.blocks.available(), tokensPerBlock: this.blocks.tokensPerBlock },
      limits: { maxBatch: this.limits.maxBatch, maxBatchTokens: this.limits.maxBatchTokens, minBatch: 1 },
      // A tenth of the TPOT SLO is kept back for what the latency model cannot see (JS work
      // between steps, noise from a shared machine): aimed at exactly the SLO, half would miss it.
      slo: { ttftMs: this.slo.ttftMs ?? BEST_EFFORT_MS, ...(view.tpotMs === undefined ? {} : { tpotMs: TPOT_TARGET * view.tpotMs }) },
      latency: this.latency,
      othersMs: view.othersMs,
      ttftPerTokenMs: (this.latency.prefillMs(1, 128) + view.othersMs) / 128,
      coLocatedDecoding: view.coLocatedDecoding,
      ...(view.stepLimitMs === undefined ? {} : { stepLimitMs: view.stepLimitMs }),
    };
  }

  /** Queues a new request. */
  enqueue(seq: Sequence): void {
    this.waiting.push(seq);
  }

  /** Ends a request from outside (abort, unload): now if no step holds it, else when the step returns. */
  end(seq: Sequence, end: PendingEnd, nowMs: number): void {
    if (seq.status === 'finished') return;
    if (seq.status === 'running' && this.#stepping) seq.endAtBoundary(end);
    else this.finish(seq, end.reason, nowMs, end.error);
  }

  /** Ends every queued and running request with `end` (see {@link end}). */
  endAll(end: PendingEnd, nowMs: number): void {
    for (const s of [...this.waiting, ...this.running]) this.end(s, end, nowMs);
  }

  /** Applies the policy's decision for this iteration and gives the chunks their blocks (after {@link reap}). */
  schedule(nowMs: number, view: DeviceView): StepPlan {
    const d: IterationDecision = this.policy(this.snapshot(nowMs, view));
    const byId = new Map<number, Sequence>();
    for (const s of this.waiting) byId.set(s.id, s);
    for (const s of this.running) byId.set(s.id, s);
    for (const id of d.drop) {
      const seq = byId.get(id);
      if (seq === undefined || seq.deferred) continue;
      this.stats.sloRejected();
      // A latency model whose recent error is high may be what is wrong: such a request runs best
      // effort instead, and teaches it, rather than a wrong model locking its own model out.
      if (this.dropLate && this.latency.trusted) {
        this.finish(seq, 'error', nowMs, new EngineError('ERR_ENGINE_SLO_UNREACHABLE', `request ${seq.run.id} to "${this.id}" cannot meet its TTFT SLO of ${seq.slo.ttftMs} ms and was dropped`));
      } else {
        seq.defer();
      }
    }
    for (const id of d.preempt) {
      const seq = byId.get(id);
      if (seq !== undefined && seq.status === 'running') this.blocks.preempt(seq);
    }
    for (const id of d.admit) {
      const seq = byId.get(id);
      if (seq !== undefined && seq.status === 'waiting') this.admit(seq, nowMs);
    }
    const chunks: StepChunk[] = [];
    for (const p of d.prefill) {
      const seq = byId.get(p.id);
      if (seq !== undefined && seq.status === 'running' && p.tokens > 0) chunks.push({ seq, n: Math.min(p.tokens, seq.uncomputed) });
    }
    for (const id of d.decode) {
      const seq = byId.get(id);
      if (seq !== undefined && seq.status === 'running' && seq.isDecoding) chunks.push({ seq, n: 1 });
    }
    const runnable = this.blocks.allocate(
      chunks.filter((c) => c.n > 0),
      this.liveTokens,
    );
    return { chunks: runnable, progressed: runnable.length > 0 || d.admit.length > 0 || d.drop.length > 0 || d.preempt.length > 0 };
  }

  /**
   * Moves a waiting sequence into the engine; false (and the request ended) if the executor
   * refused it. A sequence that generated tokens on another replica resumes its sampler after them.
   */
  admit(seq: Sequence, nowMs: number): boolean {
    const at = this.waiting.indexOf(seq);
    if (at >= 0) this.waiting.splice(at, 1);
    try {
      this.#executor.addSequence(seq.id, seq.decoded === 0 ? seq.tokens : seq.tokens.slice(0, seq.promptTokens), seq.sampling, seq.generated());
    } catch (err) {
      this.finish(seq, 'error', nowMs, err instanceof ExecutorError ? err : new ExecutorError('ERR_SAMPLING_INVALID', (err as Error).message, { cause: err }));
      return false;
    }
    seq.admitted(nowMs);
    this.running.push(seq);
    return true;
  }

  /**
   * Gives up every sequence it holds to another replica of its model (a live migration): each
   * running one loses its blocks and executor state and will recompute there. Must not be called
   * while a step runs. Sequences whose end is pending end here. Returns them in arrival order.
   */
  detachAll(nowMs: number): Sequence[] {
    if (this.#stepping) throw new Error(`detachAll on "${this.id}" while a step runs`);
    this.reap(nowMs);
    const out = [...this.running, ...this.waiting].filter((s) => s.status !== 'finished' && s.pendingEnd === undefined);
    for (const seq of out) {
      this.blocks.free(seq);
      if (seq.inExecutor) this.#executor.removeSequence(seq.id);
      seq.detach();
    }
    this.running.length = 0;
    this.waiting.length = 0;
    return out.sort((a, b) => a.arrivalMs - b.arrivalMs || a.id - b.id);
  }

  /**
   * Takes a sequence detached from another replica: a request that had not started queues as if
   * sent here; one that had runs at once from everything it knows (a recompute, as after a
   * preemption; never dropped for its TTFT, which is past), its sampler resumed.
   */
  adopt(seq: Sequence, nowMs: number): void {
    if (seq.movable) this.enqueue(seq);
    else this.admit(seq, nowMs);
  }

  /** Runs one executor step over the plan's chunks; never rejects (a failure is an outcome). */
  async run(plan: StepPlan): Promise<StepOutcome> {
    this.#stepping = true;
    const start = performance.now();
    try {
      const result = await this.#executor.step(
        plan.chunks.map(({ seq, n }) => ({
          seqId: seq.id,
          tokens: seq.tokens.slice(seq.computed, seq.computed + n),
          position: seq.computed,
          blocks: seq.blockTable,
          sample: seq.computed + n === seq.tokens.length,
        })),
      );
      return { ok: true, result, ms: performance.now() - start };
    } catch (error) {
      return { ok: false, error };
    } finally {
      this.#stepping = false;
    }
  }

  /** What a step produced: its time to the latency model, then each chunk's progress and token. */
  postprocess(plan: StepPlan, outcome: StepOutcome, nowMs: number): void {
    if (!outcome.ok) {
      // A failed step wrote nothing; its sequences cannot continue, the others can.
      const e = outcome.error;
      const message = e instanceof Error ? e.message : String(e);
      for (const { seq } of plan.chunks) this.finish(seq, 'error', nowMs, new ExecutorError('ERR_EXECUTOR_INVALID', `step of "${this.id}" failed: ${message}`, { cause: e }));
      this.reap(nowMs);
      return;
    }
    this.#observe(plan.chunks, outcome.ms);
    this.reap(nowMs);
    plan.chunks.forEach(({ seq, n }, i) => {
      if (seq.status !== 'running') return;
      seq.advance(n);
      const sample = outcome.result.samples[i];
      if (sample !== undefined && seq.computed === seq.tokens.length) this.#accept(seq, sample, nowMs);
    });
    this.reap(nowMs);
  }

  /** A sampled token: stream it, and end the sequence on a stop, its length or the context. */
  #accept(seq: Sequence, sample: SampledToken, nowMs: number): void {
    const { token, logprob } = sample;
    seq.appendToken(token, logprob, nowMs);
    const index = seq.decoded - 1;
    let reason: 'stop' | 'length' | undefined;
    let text: string;
    if (seq.stopTokens.has(token)) {
      reason = 'stop';
      text = seq.stop.push(seq.decoder.flush()).emit + seq.stop.flush();
    } else {
      const piece = seq.stop.push(seq.decoder.push(token));
      text = piece.emit;
      if (piece.stopped) reason = 'stop';
      else if (seq.decoded >= seq.maxTokens || seq.tokens.length >= this.limits.maxContext) reason = 'length';
      if (reason === 'length') text += seq.stop.push(seq.decoder.flush()).emit + seq.stop.flush();
    }
    seq.appendText(text);
    const wantLogprobs = (seq.sampling.logprobs ?? 0) > 0;
    if (reason !== 'stop' || !seq.stopTokens.has(token) || text.length > 0) {
      const chunk = { text, tokenId: token, index, ...(wantLogprobs ? { logprob, topLogprobs: [...sample.top] } : {}) };
      seq.run.push(chunk);
      const failed = (err: unknown): PendingEnd => ({
        reason: 'error',
        error: new ExecutorError('ERR_CALLBACK', `onToken threw at token ${index} of request ${seq.run.id}: ${(err as Error)?.message ?? String(err)}`, { cause: err }),
      });
      try {
        const returned: unknown = seq.onToken?.(chunk);
        // An async callback's rejection ends the request like a throw, never the process.
        if (returned instanceof Promise) returned.catch((err: unknown) => this.end(seq, failed(err), performance.now()));
      } catch (err) {
        seq.endAtBoundary(failed(err));
        return;
      }
    }
    if (reason !== undefined) this.finish(seq, reason, nowMs);
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
    this.busy.add(performance.now(), ms);
  }

  /** Ends a sequence wherever it is: frees its blocks, settles its run. Must not run during a step. */
  finish(seq: Sequence, reason: FinishReason, nowMs: number, error?: Error): void {
    if (seq.status === 'finished') return;
    this.blocks.free(seq);
    if (seq.inExecutor) this.#executor.removeSequence(seq.id);
    const list = seq.status === 'waiting' ? this.waiting : this.running;
    const at = list.indexOf(seq);
    if (at >= 0) list.splice(at, 1);
    seq.finished();
    let tokens = seq.generated();
    if (reason === 'stop' && tokens.length > 0 && seq.stopTokens.has(tokens.at(-1)!)) tokens = tokens.slice(0, -1);
    const timings = seq.timings(nowMs);
    const sloMet = reason === 'abort' ? undefined : reason !== 'error' && meetsSlo(seq.slo, timings.ttftMs, timings.tpotMs);
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

  /** Ends the sequences an abort or a failing callback marked. */
  reap(nowMs: number): void {
    if (this.#stepping) return;
    for (const seq of [...this.running, ...this.waiting]) {
      const end = seq.pendingEnd;
      if (end !== undefined) this.finish(seq, end.reason, nowMs, end.error);
    }
  }

  /** Refuses new work and frees the executor and the model's KV registration. Between steps only. */
  close(): void {
    this.state = 'closed';
    this.#executor.dispose();
  }
}
