/**
 * Tokenizing and chat-template rendering on a worker thread, each job under a deadline. A
 * tokenizer.json is a program (its Split and Replace regexes), and so is a chat template (Jinja
 * loops): a hostile or careless one can run for minutes. JavaScript cannot interrupt a regex that
 * backtracks catastrophically, so the work runs where it can be stopped: on deadline (or when the
 * worker runs out of its heap) the worker is terminated, that job alone fails with a typed error,
 * and a fresh worker takes the jobs queued behind it. The event loop never waits on it.
 * @module
 */
import { Worker } from 'node:worker_threads';

import { codeOf, ModelError, type ModelErrorCode } from '../errors.js';
import type { ChatMessage } from './chat-template.js';
import type { TokenizerSpec } from './spec.js';

/** @internal What the worker is asked to do. */
export type IsolatedRequest =
  | { readonly kind: 'encode'; readonly text: string; readonly addSpecialTokens: boolean }
  | { readonly kind: 'render'; readonly messages: readonly ChatMessage[]; readonly template: string | undefined; readonly addGenerationPrompt: boolean };

/** @internal A request with its id, as posted. */
export type IsolatedJob = IsolatedRequest & { readonly id: number };

/** @internal The worker's answer to one job. */
export type IsolatedReply =
  | { readonly id: number; readonly ok: true; readonly value: number[] | string }
  | { readonly id: number; readonly ok: false; readonly code: string | undefined; readonly message: string };

/** Options of one isolated job. */
export interface IsolatedOptions {
  /** The job's deadline, counted from when the worker starts it. */
  readonly timeoutMs: number;
  /** Aborting drops a queued job, and stops a running one (its worker is replaced). */
  readonly signal?: AbortSignal | undefined;
}

/**
 * Heap of the worker: a tokenizer of 150k tokens with its merges needs ~200 MB; a template that
 * builds a gigabyte (`range(1e9)`, a string doubled 30 times) fails instead of the process.
 */
const WORKER_HEAP_MB = 1024;
/** A worker idle this long is ended (a thread per loaded model is not free); the next job starts one. */
const IDLE_MS = 30_000;

interface Pending {
  readonly job: IsolatedJob;
  readonly options: IsolatedOptions;
  resolve(value: number[] | string): void;
  reject(err: Error): void;
  timer?: NodeJS.Timeout;
  onAbort?: () => void;
}

function newWorker(workerData: unknown): Worker {
  // No node flags: the work is plain JavaScript, and the parent's may not suit a worker
  // (`node --input-type=module -e ...` makes every worker fail to start).
  const options = { workerData, execArgv: [], resourceLimits: { maxOldGenerationSizeMb: WORKER_HEAP_MB } };
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL('./isolated-worker.js', import.meta.url), options);
  // Run from the sources under tsx (the repo's tests and scripts): the worker loads tsx itself.
  const entry = new URL('./isolated-worker.ts', import.meta.url).href;
  const boot = `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((m) => m.tsImport(${JSON.stringify(entry)}, ${JSON.stringify(entry)}))`;
  return new Worker(boot, { ...options, eval: true });
}

/** @internal One tokenizer's worker thread and its queue of jobs, run one at a time. */
export class TokenizerThread {
  readonly #spec: TokenizerSpec;
  readonly #queue: Pending[] = [];
  #worker: Worker | undefined;
  #ready = false;
  #current: Pending | undefined;
  #nextId = 0;
  #idle: NodeJS.Timeout | undefined;

  constructor(spec: TokenizerSpec) {
    this.#spec = spec;
  }

  /** Runs `request` on the worker; rejects with a budget `ModelError` when it outlives `timeoutMs`. */
  run(request: IsolatedRequest, options: IsolatedOptions): Promise<number[] | string> {
    return new Promise((resolve, reject) => {
      const signal = options.signal;
      if (signal?.aborted) return reject(signal.reason as Error);
      const pending: Pending = { job: { ...request, id: this.#nextId++ }, options, resolve, reject };
      if (signal !== undefined) {
        pending.onAbort = () => this.#abort(pending);
        signal.addEventListener('abort', pending.onAbort, { once: true });
      }
      this.#queue.push(pending);
      this.#pump();
    });
  }

  #settle(p: Pending, outcome: { value: number[] | string } | { error: Error }): void {
    clearTimeout(p.timer);
    if (p.onAbort !== undefined) p.options.signal?.removeEventListener('abort', p.onAbort);
    if ('error' in outcome) p.reject(outcome.error);
    else p.resolve(outcome.value);
  }

  #abort(p: Pending): void {
    const at = this.#queue.indexOf(p);
    if (at >= 0) this.#queue.splice(at, 1);
    else if (this.#current === p) this.#replaceWorker();
    else return;
    this.#settle(p, { error: p.options.signal!.reason as Error });
    this.#pump();
  }

  /** Ends the running job's worker (the only way to stop a regex); the queue goes on in a new one. */
  #replaceWorker(): void {
    const worker = this.#worker;
    this.#worker = undefined;
    this.#ready = false;
    this.#current = undefined;
    if (worker !== undefined) {
      worker.removeAllListeners();
      // An 'error' after terminate() (e.g. out of memory) has nothing left to tell.
      worker.on('error', () => undefined);
      void worker.terminate();
    }
  }

  #budgetError(p: Pending, why: string, cause?: unknown): ModelError {
    const code: ModelErrorCode = p.job.kind === 'render' ? 'ERR_MODEL_TEMPLATE_BUDGET' : 'ERR_MODEL_TOKENIZER_BUDGET';
    const what =
      p.job.kind === 'render'
        ? `rendering the chat template${p.job.template === undefined ? '' : ' (the request\'s chatTemplate)'}`
        : `tokenizing a text of ${p.job.text.length} characters`;
    return new ModelError(code, `${this.#spec.source}: ${what} ${why}; only this request is refused`, cause === undefined ? undefined : { cause });
  }

  #start(): Worker {
    const worker = newWorker({ spec: this.#spec });
    worker.on('message', (m: IsolatedReply | { ready: true }) => {
      if ('ready' in m) {
        this.#ready = true;
        this.#pump();
        return;
      }
      const p = this.#current;
      if (p === undefined || p.job.id !== m.id) return;
      this.#current = undefined;
      if (m.ok) this.#settle(p, { value: m.value });
      else this.#settle(p, { error: new ModelError((m.code ?? 'ERR_MODEL_TOKENIZER') as ModelErrorCode, m.message) });
      this.#pump();
    });
    const died = (err: unknown): void => {
      const p = this.#current;
      this.#replaceWorker();
      if (p !== undefined) {
        const memory = codeOf(err) === 'ERR_WORKER_OUT_OF_MEMORY';
        this.#settle(p, { error: this.#budgetError(p, memory ? `ran out of its ${WORKER_HEAP_MB} MB heap` : `failed: ${(err as Error).message}`, err) });
      } else {
        // The tokenizer could not even be built on the thread: nothing queued can run.
        for (const q of this.#queue.splice(0)) this.#settle(q, { error: new ModelError('ERR_MODEL_TOKENIZER', `${this.#spec.source}: the tokenizer thread failed: ${(err as Error).message}`, { cause: err }) });
        return;
      }
      this.#pump();
    };
    worker.on('error', died);
    worker.on('exit', (code) => {
      if (this.#worker === worker) died(new Error(`the tokenizer thread exited with code ${code}`));
    });
    return worker;
  }

  #pump(): void {
    clearTimeout(this.#idle);
    if (this.#current !== undefined) return;
    if (this.#queue.length === 0) {
      // An idle worker never keeps the process alive: an idle engine may exit.
      this.#worker?.unref();
      if (this.#worker !== undefined) this.#idle = setTimeout(() => this.#replaceWorker(), IDLE_MS).unref();
      return;
    }
    this.#worker ??= this.#start();
    // Work is waiting on it: the process stays up until it is answered.
    this.#worker.ref();
    // The deadline counts from the job's start, not the worker's: building the tokenizer is not the job's cost.
    if (!this.#ready) return;
    const p = this.#queue.shift()!;
    this.#current = p;
    p.timer = setTimeout(() => {
      this.#replaceWorker();
      this.#settle(p, { error: this.#budgetError(p, `ran past its budget of ${Math.round(p.options.timeoutMs)} ms`) });
      this.#pump();
    }, p.options.timeoutMs);
    try {
      this.#worker.postMessage(p.job);
    } catch (err) {
      // A message that cannot be cloned (a function among a message's fields) never reached the thread.
      this.#current = undefined;
      this.#settle(p, { error: new ModelError('ERR_MODEL_TOKENIZER', `${this.#spec.source}: the request cannot be sent to the tokenizer thread: ${(err as Error).message}`, { cause: err }) });
      this.#pump();
    }
  }
}
