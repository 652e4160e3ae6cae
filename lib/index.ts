/**
 * fineserve: serve several LLMs of different precisions side by side on shared GPUs or the CPU.
 * @module
 */
export { devices } from './devices.js';
export type { AddonInfo, CpuDevice, CudaDevice, CudaStatus, DeviceReport, SimdLevel } from './devices.js';
export { FineserveError, KvError, NativeLoadError } from './errors.js';
export type { AddonVariant, KvErrorCode, NativeLoadAttempt } from './errors.js';
export { KvPool } from './kv-pool.js';
export type {
  KvAllocResult,
  KvCompaction,
  KvFormat,
  KvGeometry,
  KvGeometryStats,
  KvLayout,
  KvModelOptions,
  KvModelStats,
  KvPolicy,
  KvPoolOptions,
  KvPoolStats,
  KvStep,
} from './kv-pool.js';
