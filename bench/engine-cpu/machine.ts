/**
 * How busy the machine is with other processes: the CPU time the whole machine spent busy, less
 * this process's own, over a window (Linux /proc; elsewhere unknown). On a small shared machine a
 * single foreign busy process changes the results, node-llama-cpp's most: its thread pool
 * spin-waits at every graph node's barrier, so a descheduled worker stalls the others.
 * @module
 */
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { relative } from 'node:path';

import { loadNative } from '../../lib/native/loader.js';

interface Sample {
  readonly busy: number;
  readonly total: number;
  readonly own: number;
}

function sample(): Sample | undefined {
  try {
    const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    const idle = (cpu[3] ?? 0) + (cpu[4] ?? 0);
    const total = cpu.slice(0, 8).reduce((a, b) => a + b, 0);
    // /proc/self/stat: fields after the command name; utime and stime are the 14th and 15th.
    const self = readFileSync('/proc/self/stat', 'utf8');
    const fields = self.slice(self.lastIndexOf(')') + 2).split(' ');
    const own = Number(fields[11]) + Number(fields[12]);
    return { busy: total - idle, total, own };
  } catch {
    return undefined;
  }
}

/** Measures foreign CPU use between start() and stop(), in cores (0 = quiet, 1 = one core busy). */
export class ForeignLoad {
  #start: Sample | undefined = sample();

  restart(): void {
    this.#start = sample();
  }

  /** Cores' worth of CPU used by other processes since the last (re)start; undefined off Linux. */
  cores(): number | undefined {
    const end = sample();
    const start = this.#start;
    if (start === undefined || end === undefined || end.total === start.total) return undefined;
    const cpus = availableParallelism();
    // /proc/stat sums over all CPUs; convert jiffies of busy time to cores.
    const fraction = (end.busy - start.busy - (end.own - start.own)) / (end.total - start.total);
    return Math.max(0, fraction * cpus);
  }
}

/** Foreign load over `seconds` of sleeping. */
export async function foreignLoadNow(seconds = 2): Promise<number | undefined> {
  const l = new ForeignLoad();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  return l.cores();
}

/**
 * Waits, up to `maxSeconds`, until other processes use less than `threshold` cores over a
 * 2-second window. Returns the last reading and whether it got quiet.
 */
export async function waitQuiet(maxSeconds: number, threshold: number, log: (line: string) => void): Promise<{ cores: number | undefined; quiet: boolean }> {
  const deadline = performance.now() + maxSeconds * 1000;
  let cores = await foreignLoadNow();
  let told = false;
  while (cores !== undefined && cores >= threshold && performance.now() < deadline) {
    if (!told) log(`  waiting up to ${maxSeconds} s for the machine to get quiet (other processes use ${cores.toFixed(2)} cores)...`);
    told = true;
    cores = await foreignLoadNow();
  }
  const quiet = cores === undefined || cores < threshold;
  if (told) log(quiet ? '  quiet now' : `  still busy after ${maxSeconds} s (${cores!.toFixed(2)} cores): measuring anyway`);
  return { cores, quiet };
}

/**
 * Which addon binary was measured: results from two builds are only comparable when this says
 * which one each came from (a rebuild between runs otherwise goes unnoticed).
 */
export function addonIdentity(root: string): { path: string; variant: string; sha256: string; builtAt: string } {
  const addon = loadNative();
  const bytes = readFileSync(addon.path);
  return {
    path: relative(root, addon.path),
    variant: addon.variant,
    sha256: createHash('sha256').update(bytes).digest('hex').slice(0, 16),
    builtAt: statSync(addon.path).mtime.toISOString(),
  };
}
