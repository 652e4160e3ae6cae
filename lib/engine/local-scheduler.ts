/**
 * LocalScheduler: the iteration loop of one device (the paper's local scheduler at run time).
 * Each iteration takes the next co-located model with work (round robin), asks its policy what to
 * run (admit, drop or defer, preempt, prefill chunks, decodes), gives the chunks their slab blocks,
 * runs one executor step, and streams the sampled tokens.
 *
 * Two ways to share a device. Time sharing (the CPU's default): the models' steps take turns on
 * one thread pool, so each model's latency view adds the steps of the others between two of its
 * own, and the TPOT guard of any decoding model bounds every step. Space sharing (a GPU, where
 * each model's executor has its own CUDA stream; or a CPU whose models each own a share of the
 * cores): every model runs its own loop and their steps overlap, so a model's latency is its own
 * step time as measured under the others' load, and only its own SLOs bound it.
 * @module
 */
import { EngineError, ExecutorError } from '../errors.js';
import type { ServedModel, StepChunk } from './served-model.js';
import type { Sequence } from './sequence.js';

/** See the module comment. */
export class LocalScheduler {
  readonly device: string;
  /** Space sharing: one loop per model, steps of different models in flight at once. */
  readonly concurrent: boolean;
  readonly #models: ServedModel[] = [];
  #next = 0;
  #wake: (() => void) | undefined;
  #loop: Promise<void> | undefined;
  #stopping = false;
  /** The models with a step running: their sequences in it must not be finished until it returns. */
  readonly #inFlight = new Map<ServedModel, Promise<unknown>>();
  /** The most models that had a step in flight at once. */
  peakConcurrentSteps = 0;
  /** Space sharing: the lanes whose last iteration could not run anything. */
  readonly #stuck = new Set<ServedModel>();

  constructor(device: string, options: { concurrent?: boolean } = {}) {
    this.device = device;
    this.concurrent = options.concurrent ?? false;
  }

  get models(): readonly ServedModel[] {
    return this.#models;
  }

  add(m: ServedModel): void {
    this.#models.push(m);
  }

  remove(m: ServedModel): void {
    const at = this.#models.indexOf(m);
    if (at >= 0) this.#models.splice(at, 1);
  }

  /** Whether `m` has a step in flight. */
  stepping(m: ServedModel): boolean {
    return this.#inFlight.has(m);
  }

  /** Resolves once `m` has no step in flight. */
  async quiesce(m: ServedModel): Promise<void> {
    for (let step = this.#inFlight.get(m); step !== undefined; step = this.#inFlight.get(m)) {
      await step.then(() => undefined, () => undefined);
    }
  }

  /** New work or an abort: make sure the loop runs. */
  notify(): void {
    if (this.#wake !== undefined) {
      const wake = this.#wake;
      this.#wake = undefined;
      wake();
    } else if (this.#loop === undefined && !this.#stopping) {
      this.#loop = (this.concurrent ? this.#runConcurrent() : this.#run()).finally(() => {
        this.#loop = undefined;
      });
    }
  }

  /** Stops the loop once the current step ends. */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.notify();
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
    await this.#loop;
  }

  async #run(): Promise<void> {
    let idleRounds = 0;
    while (!this.#stopping) {
      const m = this.#pick();
      if (m === undefined) {
        await new Promise<void>((resolve) => {
          this.#wake = resolve;
        });
        idleRounds = 0;
        continue;
      }
      const progressed = await this.#iterate(m);
      idleRounds = progressed ? 0 : idleRounds + 1;
      if (idleRounds >= this.#models.length) {
        // Nobody could run: resolve requests that can never fit, then wait for an event
        // (a finish elsewhere, an abort, a new request) instead of spinning.
        if (!this.#resolveStall()) {
          await new Promise<void>((resolve) => {
            this.#wake = resolve;
            setTimeout(resolve, 5);
          });
          this.#wake = undefined;
        }
        idleRounds = 0;
      }
    }
  }

  /** Space sharing: a lane per model with work, started as work arrives, until stopped. */
  async #runConcurrent(): Promise<void> {
    const lanes = new Map<ServedModel, Promise<void>>();
    while (!this.#stopping) {
      for (const m of this.#models) {
        if (!lanes.has(m) && m.hasWork) lanes.set(m, this.#lane(m).finally(() => lanes.delete(m)));
      }
      const woken = new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
      await Promise.race([woken, ...lanes.values()]);
      this.#wake = undefined;
    }
    await Promise.all(lanes.values());
  }

  /**
   * One model's iterations while it has work. A lane that cannot progress waits: another model's
   * steps may free what it needs. Only when every model with work is stuck, the device is stalled
   * and the ways out of #resolveStall are taken.
   */
  async #lane(m: ServedModel): Promise<void> {
    try {
      while (!this.#stopping && m.hasWork && this.#models.includes(m)) {
        if (await this.#iterate(m)) {
          this.#stuck.delete(m);
          continue;
        }
        this.#stuck.add(m);
        const withWork = this.#models.filter((o) => o.hasWork);
        if (!(withWork.every((o) => this.#stuck.has(o)) && this.#resolveStall())) {
          await new Promise<void>((resolve) => setTimeout(resolve, 5));
        }
      }
    } finally {
      this.#stuck.delete(m);
    }
  }

  #pick(): ServedModel | undefined {
    const n = this.#models.length;
    for (let k = 0; k < n; k++) {
      const m = this.#models[(this.#next + k) % n]!;
      if (m.hasWork) {
        this.#next = (this.#next + k + 1) % n;
        return m;
      }
    }
    return undefined;
  }

  /** Sum of the step times of the other models with work: what `m` waits between its steps. */
  #othersMs(m: ServedModel): number {
    if (this.concurrent) return 0;  // they run beside it; their load is in its measured step time
    let ms = 0;
    for (const o of this.#models) if (o !== m && o.hasWork) ms += o.stepEwmaMs;
    return ms;
  }

  #tpotMs(m: ServedModel): number | undefined {
    let tpot = m.slo.tpotMs;
    if (this.concurrent) return tpot;
    for (const o of this.#models) {
      if (o === m || o.slo.tpotMs === undefined || !o.decoding) continue;
      tpot = tpot === undefined ? o.slo.tpotMs : Math.min(tpot, o.slo.tpotMs);
    }
    return tpot;
  }

  async #iterate(m: ServedModel): Promise<boolean> {
    let now = performance.now();
    m.reap(now);
    if (!m.hasWork) return true;
    // Time sharing: this step delays every decoding model by its length; space sharing: only m's own.
    const sharers = this.concurrent ? [m] : this.#models;
    let slack: number | undefined;
    const cycleMs = sharers.reduce((a, o) => a + o.decodeStepMs(), 0);
    for (const o of sharers) {
      const v = o.tpotSlackMs(now, cycleMs);
      if (v !== undefined) slack = slack === undefined ? v : Math.min(slack, v);
    }
    const d = m.policy(m.snapshot(now, () => this.#othersMs(m), this.#tpotMs(m), sharers.some((o) => o !== m && o.decoding), slack));
    const byId = new Map<number, Sequence>();
    for (const s of m.waiting) byId.set(s.id, s);
    for (const s of m.running) byId.set(s.id, s);
    for (const id of d.drop) {
      const seq = byId.get(id);
      if (seq === undefined || seq.deferred) continue;
      m.stats.sloRejected();
      if (m.dropLate) {
        m.finish(seq, 'error', now, new EngineError('ERR_ENGINE_SLO_UNREACHABLE', `request ${seq.run.id} to "${m.id}" cannot meet its TTFT SLO of ${m.slo.ttftMs} ms and was dropped`));
      } else {
        seq.deferred = true;
      }
    }
    for (const id of d.preempt) {
      const seq = byId.get(id);
      if (seq !== undefined && seq.status === 'running') m.preempt(seq);
    }
    for (const id of d.admit) {
      const seq = byId.get(id);
      if (seq !== undefined && seq.status === 'waiting') m.admit(seq, now);
    }
    const chunks: StepChunk[] = [];
    for (const p of d.prefill) {
      const seq = byId.get(p.id);
      if (seq !== undefined && seq.status === 'running' && p.tokens > 0) chunks.push({ seq, n: Math.min(p.tokens, seq.tokens.length - seq.computed) });
    }
    for (const id of d.decode) {
      const seq = byId.get(id);
      if (seq !== undefined && seq.status === 'running' && seq.isDecoding) chunks.push({ seq, n: 1 });
    }
    const runnable = m.allocate(chunks.filter((c) => c.n > 0));
    if (runnable.length === 0) return d.admit.length > 0 || d.drop.length > 0 || d.preempt.length > 0;
    let out;
    try {
      const step = m.execute(runnable);
      this.#inFlight.set(m, step);
      this.peakConcurrentSteps = Math.max(this.peakConcurrentSteps, this.#inFlight.size);
      out = await step;
    } catch (err) {
      this.#inFlight.delete(m);
      // A failed step wrote nothing; its sequences cannot continue, the others can.
      now = performance.now();
      const error = err instanceof Error ? err : new Error(String(err));
      for (const c of runnable) m.finish(c.seq, 'error', now, new ExecutorError('ERR_EXECUTOR_INVALID', `step of "${m.id}" failed: ${error.message}`, { cause: err }));
      return true;
    }
    this.#inFlight.delete(m);
    now = performance.now();
    m.reap(now);
    runnable.forEach((c, i) => {
      if (c.seq.status !== 'running') return;
      c.seq.computed += c.n;
      const token = out.tokens[i]!;
      if (c.seq.computed !== c.seq.tokens.length || token < 0) return;
      const top: { token: number; logprob: number }[] = [];
      for (let j = 0; j < out.topK; j++) {
        const t = out.topTokens[i * out.topK + j]!;
        if (t >= 0) top.push({ token: t, logprob: out.topLogprobs[i * out.topK + j]! });
      }
      this.#emit(m, c.seq, token, out.logprobs[i]!, top, now);
    });
    m.reap(now);
    return true;
  }

  /** A sampled token: stream it, and end the sequence on a stop, its length or the context. */
  #emit(m: ServedModel, seq: Sequence, token: number, logprob: number, top: { token: number; logprob: number }[], now: number): void {
    seq.tokens.push(token);
    seq.logprobs.push(logprob);
    seq.firstTokenMs ??= now;
    seq.lastTokenMs = now;
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
      else if (seq.decoded >= seq.maxTokens || seq.tokens.length >= m.limits.maxContext) reason = 'length';
      if (reason === 'length') text += seq.stop.push(seq.decoder.flush()).emit + seq.stop.flush();
    }
    seq.text += text;
    const wantLogprobs = (seq.sampling.logprobs ?? 0) > 0;
    if (reason !== 'stop' || !seq.stopTokens.has(token) || text.length > 0) {
      const chunk = { text, tokenId: token, index, ...(wantLogprobs ? { logprob, topLogprobs: top } : {}) };
      seq.run.push(chunk);
      try {
        seq.onToken?.(chunk);
      } catch (err) {
        seq.pendingEnd = { reason: 'error', error: new ExecutorError('ERR_CALLBACK', `onToken threw at token ${index} of request ${seq.run.id}: ${(err as Error)?.message ?? String(err)}`, { cause: err }) };
        return;
      }
    }
    if (reason !== undefined) m.finish(seq, reason, now);
  }

  /**
   * Nothing could run on any model. Three ways out, tried in order: sequences that hold blocks
   * and wait for more of each other's (prefills that outgrew the memory) lose the cheapest of them
   * to recompute; a request that needs more KV than its model can get with the device otherwise
   * empty ends with a typed error; and an idle device admits the most urgent request whatever
   * the policy's reasons. Returns whether something changed.
   */
  #resolveStall(): boolean {
    const now = performance.now();
    // A model with a step in flight is left alone: its sequences are in use until the step returns.
    const idle = this.#models.filter((m) => !this.#inFlight.has(m));
    const holders = idle.flatMap((m) => m.running.filter((s) => s.blocks.length > 0).map((s) => ({ m, s })));
    if (holders.length >= 2) {
      const v = holders.reduce((a, b) => (b.s.priority < a.s.priority || (b.s.priority === a.s.priority && b.s.computed < a.s.computed) ? b : a));
      v.m.preempt(v.s);
      return true;
    }
    let ended = false;
    for (const m of idle) {
      for (const seq of [...m.waiting, ...m.running]) {
        // Read per sequence: ending one frees its blocks for the next.
        const free = m.pool.availableBlocks(m.kvModel);
        const need = Math.ceil((seq.target + 1) / m.tokensPerBlock);
        if (need > free + seq.blocks.length) {
          m.finish(seq, 'error', now, new EngineError('ERR_ENGINE_KV_OUT_OF_MEMORY', `request ${seq.run.id} to "${m.id}" needs ${need} KV blocks for ${seq.target} tokens but its model can get at most ${free + seq.blocks.length}; raise slabBytes or shorten the prompt`));
          ended = true;
        }
      }
    }
    if (ended) return true;
    for (const m of idle) {
      const seq = [...m.waiting].sort((a, b) => b.priority - a.priority || m.deadline(a) - m.deadline(b))[0];
      if (seq !== undefined) return m.admit(seq, now) || true;
    }
    return false;
  }
}
