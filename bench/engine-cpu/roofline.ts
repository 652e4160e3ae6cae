/**
 * The roofline of this CPU, one thread, measured in the same run as the engines: roofline.cc
 * (a STREAM-like copy and an AVX2 FMA loop) built with g++ into .cache/bench/ and run once.
 * @module
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { ROOT } from './config.js';

export interface Roofline {
  /** Bytes read + written per second by a copy of 256 MiB arrays, GB/s. */
  readonly copyGBps: number;
  /** Peak of independent 8-lane FMAs, GFLOP/s (2 flops per lane). */
  readonly fmaGflops: number;
}

export function measureRoofline(smoke: boolean): Roofline {
  const source = fileURLToPath(new URL('./roofline.cc', import.meta.url));
  const dir = `${ROOT}.cache/bench`;
  mkdirSync(dir, { recursive: true });
  const binary = `${dir}/roofline`;
  const build = spawnSync('g++', ['-O2', '-std=c++17', '-mavx2', '-mfma', '-o', binary, source], { encoding: 'utf8' });
  if (build.status !== 0) throw new Error(`roofline: g++ failed to build ${source}: ${build.error?.message ?? build.stderr}`);
  const run = spawnSync(binary, smoke ? ['--smoke'] : [], { encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`roofline: ${binary} exited ${run.status}: ${run.stderr}`);
  const r = JSON.parse(run.stdout) as Roofline;
  if (!(r.copyGBps > 0) || !(r.fmaGflops > 0)) throw new Error(`roofline: no figure in ${run.stdout}`);
  return r;
}
