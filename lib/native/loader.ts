/**
 * Finds and loads the native addon. Candidates, in order:
 *  1. `FINESERVE_ADDON=/path/to/fineserve.node`, when set (and then nothing else);
 *  2. the local build, `build/Release/fineserve.node` (what `npm run build:native` makes);
 *  3. the CUDA prebuild, `prebuilds/<platform>-<arch>/fineserve.cuda.node`, only when an NVIDIA
 *     driver is present (it would load without one, but could only report that it has no GPU);
 *  4. the CPU prebuild, `prebuilds/<platform>-<arch>/fineserve.node`.
 * When none loads, one {@link NativeLoadError} lists every candidate and why it failed.
 * @module
 */
import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';

import { type AddonVariant, type NativeLoadAttempt, NativeLoadError } from '../errors.js';
import { packageRoot } from '../package-root.js';
import type { NativeBinding } from './addon-types.js';

export type { NativeBinding, NativeBuildInfo, RawDeviceReport } from './addon-types.js';

/** A loaded addon and where it came from. */
export interface LoadedAddon {
  readonly binding: NativeBinding;
  readonly variant: AddonVariant;
  readonly path: string;
  /** Candidates tried before this one, with the reason each was passed over. */
  readonly skipped: readonly NativeLoadAttempt[];
}

/** Inputs of the loader; tests point it at a scratch package root. */
export interface LoaderOptions {
  /** Package root holding build/ and prebuilds/. */
  readonly root: string;
  /** Whether an NVIDIA driver is present; decides whether the CUDA prebuild is tried. */
  readonly gpuPresent: boolean;
  /** Explicit addon path (the FINESERVE_ADDON variable). */
  readonly override?: string | undefined;
  readonly platform?: string;
  readonly arch?: string;
}

interface Candidate {
  readonly variant: AddonVariant;
  readonly path: string;
  /** Set when the candidate is known unusable without trying to load it. */
  readonly skip?: string;
}

// lib/native/, dist/native/ or dist/cjs/native/: the root is found, not counted in `..`s.
const PACKAGE_ROOT = packageRoot(import.meta.url);
// Not named `require`: in the CommonJS build that name is the module wrapper's own.
const requireAddon = createRequire(import.meta.url);

/** True when an NVIDIA kernel driver is loaded on this host. */
export function nvidiaDriverPresent(): boolean {
  return existsSync('/proc/driver/nvidia/version') || existsSync('/dev/nvidiactl');
}

function prebuildFiles(dir: string): string[] {
  try {
    return readdirSync(dir).filter((f) => f.endsWith('.node')).sort();
  } catch {
    return [];
  }
}

/** The candidates the loader will try for these options, in order. */
export function nativeCandidates(opts: LoaderOptions): Candidate[] {
  if (opts.override !== undefined && opts.override !== '') {
    return [{ variant: 'override', path: resolve(opts.override) }];
  }
  const tuple = `${opts.platform ?? process.platform}-${opts.arch ?? process.arch}`;
  const prebuildDir = join(opts.root, 'prebuilds', tuple);
  const files = prebuildFiles(prebuildDir);
  const isCuda = (f: string) => f.split('.').includes('cuda');
  const cudaFile = files.find(isCuda);
  const cpuFile = files.find((f) => !isCuda(f));

  const candidates: Candidate[] = [
    { variant: 'local', path: join(opts.root, 'build', 'Release', 'fineserve.node') },
  ];
  if (cudaFile === undefined) {
    candidates.push({ variant: 'cuda-prebuild', path: prebuildDir, skip: `no CUDA prebuild for ${tuple}` });
  } else if (!opts.gpuPresent) {
    candidates.push({
      variant: 'cuda-prebuild',
      path: join(prebuildDir, cudaFile),
      skip: 'skipped: no NVIDIA driver on this host',
    });
  } else {
    candidates.push({ variant: 'cuda-prebuild', path: join(prebuildDir, cudaFile) });
  }
  candidates.push(
    cpuFile === undefined
      ? { variant: 'cpu-prebuild', path: prebuildDir, skip: `no CPU prebuild for ${tuple}` }
      : { variant: 'cpu-prebuild', path: join(prebuildDir, cpuFile) },
  );
  return candidates;
}

function isBinding(value: unknown): value is NativeBinding {
  const v = value as Partial<NativeBinding> | null;
  return typeof v === 'object' && v !== null && typeof v.devices === 'function' && typeof v.buildInfo === 'object';
}

/** Tries each candidate in order; throws {@link NativeLoadError} when none loads. */
export function loadNativeFrom(opts: LoaderOptions): LoadedAddon {
  const skipped: NativeLoadAttempt[] = [];
  for (const c of nativeCandidates(opts)) {
    if (c.skip !== undefined) {
      skipped.push({ variant: c.variant, path: c.path, reason: c.skip });
      continue;
    }
    if (!existsSync(c.path)) {
      skipped.push({ variant: c.variant, path: c.path, reason: 'not found' });
      continue;
    }
    try {
      const binding: unknown = requireAddon(c.path);
      if (!isBinding(binding)) {
        skipped.push({ variant: c.variant, path: c.path, reason: 'loaded, but it is not a fineserve addon' });
        continue;
      }
      return { binding, variant: c.variant, path: c.path, skipped };
    } catch (err) {
      skipped.push({ variant: c.variant, path: c.path, reason: (err as Error).message.split('\n')[0] ?? String(err) });
    }
  }
  throw new NativeLoadError(skipped);
}

let loaded: LoadedAddon | undefined;

/** The addon of this package, loaded once per process. */
export function loadNative(): LoadedAddon {
  loaded ??= loadNativeFrom({
    root: PACKAGE_ROOT,
    gpuPresent: nvidiaDriverPresent(),
    override: process.env['FINESERVE_ADDON'],
  });
  return loaded;
}
