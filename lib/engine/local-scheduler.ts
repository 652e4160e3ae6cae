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
import { EngineError } from '../errors.js';
import type { DeviceView, ServedModel } from './served-model.js';

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
        if (!lanes.has(m) && m.hasWork && !m.paused) lanes.set(m, this.#lane(m).finally(() => lanes.delete(m)));
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
      while (!this.#stopping && m.hasWork && !m.paused && this.#models.includes(m)) {
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
      if (m.hasWork && !m.paused) {
        this.#next = (this.#next + k + 1) % n;
        return m;
      }
    }
    return undefined;
  }

  /** What `m` must know of the device's other models before its step, as plain values. */
  #view(m: ServedModel, nowMs: number): DeviceView {
    // Time sharing: this step delays every decoding model by its length; space sharing: only m's own.
    const sharers = this.concurrent ? [m] : this.#models;
    const cycleMs = sharers.reduce((a, o) => a + o.decodeStepMs(), 0);
    let stepLimitMs: number | undefined;
    for (const o of sharers) {
      const v = o.tpotSlackMs(nowMs, cycleMs);
      if (v !== undefined) stepLimitMs = stepLimitMs === undefined ? v : Math.min(stepLimitMs, v);
    }
    let othersMs = 0;
    let tpotMs = min(m.slo.tpotMs, m.decodingTpotMs);
    // Space sharing: the others run beside it, their load is in its measured step time.
    if (!this.concurrent) {
      for (const o of this.#models) {
        if (o === m) continue;
        if (o.hasWork) othersMs += o.stepEwmaMs;
        tpotMs = min(tpotMs, o.decodingTpotMs);
      }
    }
    return { othersMs, tpotMs, coLocatedDecoding: sharers.some((o) => o !== m && o.decoding), stepLimitMs };
  }

  /** One iteration of `m`: schedule, run, postprocess. Returns whether anything changed. */
  async #iterate(m: ServedModel): Promise<boolean> {
    const now = performance.now();
    m.reap(now);
    if (!m.hasWork) return true;
    const plan = m.schedule(now, this.#view(m, now));
    if (plan.chunks.length === 0) return plan.progressed;
    const step = m.run(plan);
    this.#inFlight.set(m, step);
    this.peakConcurrentSteps = Math.max(this.peakConcurrentSteps, this.#inFlight.size);
    const outcome = await step;
    this.#inFlight.delete(m);
    m.postprocess(plan, outcome, performance.now());
    return true;
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
    const holders = idle.flatMap((m) => m.running.filter((s) => s.blockTable.length > 0).map((s) => ({ m, s })));
    if (holders.length >= 2) {
      const v = holders.reduce((a, b) => (b.s.priority < a.s.priority || (b.s.priority === a.s.priority && b.s.computed < a.s.computed) ? b : a));
      v.m.blocks.preempt(v.s);
      return true;
    }
    let ended = false;
    for (const m of idle) {
      for (const seq of [...m.waiting, ...m.running]) {
        // Read per sequence: ending one frees its blocks for the next.
        const free = m.blocks.available();
        const need = m.blocks.blocksFor(seq.target + 1);
        if (need > free + seq.blockTable.length) {
          m.finish(seq, 'error', now, new EngineError('ERR_ENGINE_KV_OUT_OF_MEMORY', `request ${seq.run.id} to "${m.id}" needs ${need} KV blocks for ${seq.target} tokens but its model can get at most ${free + seq.blockTable.length}; raise slabBytes or shorten the prompt`));
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

function min(a: number | undefined, b: number | undefined): number | undefined {
  return a === undefined ? b : b === undefined ? a : Math.min(a, b);
}
