/**
 * A pool of CPU worker threads that several ModelRunners can share (`RunnerOptions.pool`): models
 * co-located on one CPU then keep to its cores together instead of each starting a thread per
 * core, and their steps take turns on the pool.
 * @module
 */
import { loadNative } from './native/loader.js';
import type { NativeThreadPool } from './native/addon-types.js';

export type { NativeThreadPool } from './native/addon-types.js';

/** A pool to pass as `pool` to every {@link ModelRunner.create} that should share it. */
export function createThreadPool(threads = 0): NativeThreadPool {
  return new (loadNative().binding.ThreadPool)(threads);
}
