/**
 * ServerControl: the server's own state beside the engine's: whether it accepts requests
 * (loading, ready, draining), the requests it has in flight and how many of each model's have no
 * token yet (its queue, bounded), the metrics, and the drain that SIGTERM runs.
 * @module
 */
import type { Engine } from '../engine.js';
import type { GenerationResult } from '../request.js';
import { createMetrics, type ServerMetrics } from './metrics.js';

/** Whether the server takes new generation requests. */
export type ServerState = 'loading' | 'ready' | 'draining';

/** Options of {@link ServerControl}. */
export interface ServerControlOptions {
  /** Requests of one model that may wait for their first token before more get 429; default 256. */
  readonly maxQueue?: number;
  /** Retry-After seconds sent with 429 and 503; default 1. */
  readonly retryAfterSeconds?: number;
  /** Start in `loading` (health 503, generation refused) until {@link ServerControl.ready}; default false. */
  readonly loading?: boolean;
}

interface InFlight {
  readonly model: string;
  readonly abort: AbortController;
  readonly result: Promise<GenerationResult>;
  waiting: boolean;
}

/** See the module comment. */
export class ServerControl {
  readonly engine: Engine;
  readonly metrics: ServerMetrics;
  readonly maxQueue: number;
  readonly retryAfterSeconds: number;
  #state: ServerState;
  readonly #inFlight = new Set<InFlight>();
  readonly #waiting = new Map<string, number>();

  constructor(engine: Engine, options: ServerControlOptions = {}) {
    this.engine = engine;
    this.metrics = createMetrics(engine);
    this.maxQueue = options.maxQueue ?? 256;
    this.retryAfterSeconds = options.retryAfterSeconds ?? 1;
    this.#state = options.loading === true ? 'loading' : 'ready';
  }

  get state(): ServerState {
    return this.#state;
  }

  /** Loading is over: accept requests. */
  ready(): void {
    if (this.#state === 'loading') this.#state = 'ready';
  }

  /** Requests of `model` that have no token yet. */
  waiting(model: string): number {
    return this.#waiting.get(model) ?? 0;
  }

  /** Requests in flight, all models. */
  get inFlight(): number {
    return this.#inFlight.size;
  }

  /** Registers a request; the returned handle marks its first token and its end. */
  track(model: string, abort: AbortController, result: Promise<GenerationResult>): { started(): void } {
    const entry: InFlight = { model, abort, result, waiting: true };
    this.#inFlight.add(entry);
    this.#waiting.set(model, this.waiting(model) + 1);
    const started = (): void => {
      if (!entry.waiting) return;
      entry.waiting = false;
      this.#waiting.set(model, this.waiting(model) - 1);
    };
    void result.then((r) => {
      started();
      this.#inFlight.delete(entry);
      this.metrics.requestFinished(model, r);
    });
    return { started };
  }

  /**
   * Stops taking requests (503 from now on), lets those in flight finish for up to `timeoutMs`,
   * then aborts what is left and waits for it to end. Resolves with how many finished and how many
   * were aborted. The engine stays the caller's to close.
   */
  async drain(timeoutMs: number): Promise<{ finished: number; aborted: number }> {
    this.#state = 'draining';
    const pending = [...this.#inFlight];
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
    });
    await Promise.race([Promise.all(pending.map((p) => p.result)), timedOut]);
    clearTimeout(timer);
    const left = [...this.#inFlight];
    for (const p of left) p.abort.abort();
    await Promise.all(left.map((p) => p.result));
    return { finished: pending.length - left.length, aborted: left.length };
  }
}
