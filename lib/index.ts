/**
 * fineserve: serve several LLMs of different precisions side by side on shared GPUs or the CPU.
 * @module
 */
export { devices } from './devices.js';
export type { AddonInfo, CpuDevice, CudaDevice, CudaStatus, DeviceReport, SimdLevel } from './devices.js';
export { FineserveError, NativeLoadError } from './errors.js';
export type { AddonVariant, NativeLoadAttempt } from './errors.js';
