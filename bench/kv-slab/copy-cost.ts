/**
 * What compaction's copies would cost: the bench pool is accounting only, so the bytes compaction
 * moves are converted to time at a copy bandwidth. The device figure is stated (an H100's
 * effective device-to-device copy rate); the host figure is stated and also measured here with
 * block-sized memmoves (Buffer.copy), the copy the CPU backend's compaction does.
 * @module
 */
import { MiB } from './config.js';

export interface HostCopy {
  readonly blockBytes: number;
  readonly bytesPerRepeat: number;
  readonly repeats: number;
  /** Median over repeats. */
  readonly bytesPerSecond: number;
}

/** Copies `totalMiB` in `blockBytes` pieces between two buffers, `repeats` times; median rate. */
export function measureHostCopy(blockBytes = 2 * MiB, totalMiB = 256, repeats = 7): HostCopy {
  const total = totalMiB * MiB;
  const src = Buffer.alloc(total, 1);
  const dst = Buffer.alloc(total, 0);
  const rates: number[] = [];
  for (let k = 0; k < repeats + 1; k++) {
    const t0 = process.hrtime.bigint();
    // Scatter the blocks like compaction does (not one sequential stream).
    for (let b = 0, blocks = Math.floor(total / blockBytes); b < blocks; b++) {
      const from = ((b * 7919) % blocks) * blockBytes;
      src.copy(dst, b * blockBytes, from, from + blockBytes);
    }
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    if (k > 0) rates.push(total / s); // the first pass faults the pages in
  }
  rates.sort((a, b) => a - b);
  return { blockBytes, bytesPerRepeat: total, repeats, bytesPerSecond: rates[Math.floor(rates.length / 2)] ?? 0 };
}

/** Microseconds to copy `bytes` at `bytesPerSecond`. */
export const copyUs = (bytes: number, bytesPerSecond: number): number => (bytes / bytesPerSecond) * 1e6;
