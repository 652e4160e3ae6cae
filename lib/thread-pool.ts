/**
 * A pool of CPU worker threads that several ModelRunners can share (`RunnerOptions.pool`): models
 * co-located on one CPU then keep to its cores together instead of each starting a thread per
 * core, and their steps take turns on the pool.
 * @module
 */
import { loadNative } from './native/loader.js';

/** The addon's ThreadPool (cpp/addon/thread_pool.cc). */
export interface NativeThreadPool {
  /** Threads that run a step, the stepping one included: the requested count, clamped to the usable cores. */
  readonly size: number;
}

/** @internal `threads`: 0 = every core this process may use; more than that is clamped to it. */
export type NativeThreadPoolConstructor = new (threads: number) => NativeThreadPool;

/** A pool to pass as `pool` to every {@link ModelRunner.create} that should share it. */
export function createThreadPool(threads = 0): NativeThreadPool {
  return new (loadNative().binding.ThreadPool)(threads);
}
