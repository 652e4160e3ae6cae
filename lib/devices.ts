/**
 * What fineserve can run on: the CPU (always) and each CUDA device the addon finds.
 * @module
 */
import type { AddonVariant } from './errors.js';
import { loadNative, type RawDeviceReport } from './native/loader.js';

/** A CPU vector instruction set the kernels are built for, lowest first. */
export type SimdLevel = 'baseline' | 'avx2' | 'avx512';

/** The host CPU as fineserve uses it. */
export interface CpuDevice {
  readonly kind: 'cpu';
  readonly id: 'cpu';
  /** Brand string, e.g. `AMD EPYC 7B13`. */
  readonly model: string;
  /** CPUs this process may run on (its affinity mask); thread pools never exceed it. */
  readonly logicalCores: number;
  /** Physical cores among them; 0 when the OS does not say. */
  readonly physicalCores: number;
  readonly memoryBytes: number;
  /** The kernel set in use. */
  readonly simd: SimdLevel;
  /** Every kernel set this CPU can run that the addon contains, lowest first. */
  readonly simdSupported: readonly SimdLevel[];
  /** Why `simd` is not the best supported level (the `FINESERVE_SIMD` variable), if it is not. */
  readonly simdNote?: string;
}

/** One CUDA device. */
export interface CudaDevice {
  readonly kind: 'cuda';
  readonly id: `cuda:${number}`;
  readonly index: number;
  readonly name: string;
  readonly memoryBytes: number;
  readonly smCount: number;
  /** Compute capability, e.g. `9.0` for H100/H200. */
  readonly computeCapability: `${number}.${number}`;
  readonly pciBusId: string;
}

/** Whether CUDA can be used, and why not when it cannot. */
export interface CudaStatus {
  /** The loaded addon contains the CUDA backend. */
  readonly compiled: boolean;
  /** At least one device is usable. */
  readonly available: boolean;
  /** Why there are no devices, when there are none. */
  readonly reason?: string;
  /** CUDA runtime version the addon was built with, e.g. `13.0`; null without CUDA. */
  readonly runtimeVersion: string | null;
  /** Highest CUDA version the installed driver supports; null without a driver. */
  readonly driverVersion: string | null;
}

/** The addon binary in use. */
export interface AddonInfo {
  readonly variant: AddonVariant;
  readonly path: string;
  readonly simdCompiled: readonly SimdLevel[];
  readonly cuda: boolean;
}

/** Result of {@link devices}. */
export interface DeviceReport {
  readonly cpu: CpuDevice;
  readonly cuda: readonly CudaDevice[];
  readonly cudaStatus: CudaStatus;
  readonly addon: AddonInfo;
}

const SIMD_LEVELS: readonly SimdLevel[] = ['baseline', 'avx2', 'avx512'];

function simdLevel(name: string): SimdLevel {
  const level = SIMD_LEVELS.find((l) => l === name);
  if (level === undefined) throw new TypeError(`fineserve addon reported an unknown SIMD level "${name}"`);
  return level;
}

/** CUDA encodes versions as 1000 * major + 10 * minor. */
function cudaVersion(v: number): string | null {
  return v > 0 ? `${Math.floor(v / 1000)}.${Math.floor((v % 1000) / 10)}` : null;
}

function toReport(raw: RawDeviceReport, addon: AddonInfo): DeviceReport {
  const cpu: CpuDevice = {
    kind: 'cpu',
    id: 'cpu',
    model: raw.cpu.model,
    logicalCores: raw.cpu.logicalCores,
    physicalCores: raw.cpu.physicalCores,
    memoryBytes: raw.cpu.memoryBytes,
    simd: simdLevel(raw.cpu.simd),
    simdSupported: raw.cpu.simdSupported.map(simdLevel),
    ...(raw.cpu.simdNote === undefined ? {} : { simdNote: raw.cpu.simdNote }),
  };
  const cuda = raw.cuda.devices.map(
    (d): CudaDevice => ({
      kind: 'cuda',
      id: `cuda:${d.index}`,
      index: d.index,
      name: d.name,
      memoryBytes: d.memoryBytes,
      smCount: d.smCount,
      computeCapability: `${d.computeCapabilityMajor}.${d.computeCapabilityMinor}`,
      pciBusId: d.pciBusId,
    }),
  );
  const cudaStatus: CudaStatus = {
    compiled: raw.cuda.compiled,
    available: raw.cuda.available,
    ...(raw.cuda.reason === undefined ? {} : { reason: raw.cuda.reason }),
    runtimeVersion: cudaVersion(raw.cuda.runtimeVersion),
    driverVersion: cudaVersion(raw.cuda.driverVersion),
  };
  return { cpu, cuda, cudaStatus, addon };
}

/**
 * Lists the devices fineserve can serve on. The query runs off the JS thread (the first CUDA call
 * can take a few hundred milliseconds). Rejects with `NativeLoadError` when no addon can be loaded.
 */
export async function devices(): Promise<DeviceReport> {
  const native = loadNative();
  const raw = await native.binding.devices();
  return toReport(raw, {
    variant: native.variant,
    path: native.path,
    simdCompiled: native.binding.buildInfo.simdCompiled.map(simdLevel),
    cuda: native.binding.buildInfo.cuda,
  });
}
