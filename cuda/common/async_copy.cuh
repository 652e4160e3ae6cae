// cp.async (sm_80+): 16-byte copies from global to shared memory that bypass the registers, so a
// kernel can have the next k tiles in flight while it multiplies the current one.
//
// Under the SIMT emulator the copy happens at once and commit / wait are no-ops. That is exact for
// a correct kernel: fibers switch only at barriers, and a kernel must reach wait_group and then a
// __syncthreads before any thread reads what another thread copied, so no fiber can observe the
// copy "too early" except by reading a stage another thread is still filling, which is a bug on a
// GPU too (and one the emulator, like any missing barrier, may not see).
#pragma once

#include <cstdint>
#include <cstring>

#include "common/cuda_lang.cuh"

namespace fineserve::gpu {

// Copies `src_bytes` (0 or 16) bytes from global `src` to shared `dst` and zero-fills the rest of
// the 16, so a tile's out-of-range rows come in as zeros without a branch around the copy. Both
// addresses 16-byte aligned; with src_bytes 0 nothing is read, but `src` must still be a valid
// address to form (pass any in-range pointer). .cg: caches in L2 only, as each tile is read once
// per CTA.
__device__ __forceinline__ void cp_async16(void* dst, const void* src, uint32_t src_bytes) {
#if FS_SIMT
  if (reinterpret_cast<uintptr_t>(dst) % 16 != 0 || reinterpret_cast<uintptr_t>(src) % 16 != 0) {
    throw simt::SimtError("cp.async: a 16-byte copy needs 16-byte aligned addresses");
  }
  std::memset(dst, 0, 16);
  if (src_bytes > 0) std::memcpy(dst, src, src_bytes > 16 ? 16 : src_bytes);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const uint32_t d = static_cast<uint32_t>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(__cvta_generic_to_global(src)),
               "r"(src_bytes)
               : "memory");
#elif defined(__CUDA_ARCH__)
  __trap();  // the build targets sm_80+; linear() never launches a cp.async kernel below that
#endif
}

// Closes the group of this thread's copies issued since the last commit.
__device__ __forceinline__ void cp_async_commit() {
#if !FS_SIMT && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}

// Waits until at most N of this thread's committed groups are still in flight. Only this thread's
// copies: a __syncthreads must follow before reading other threads' data.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
#if !FS_SIMT && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#endif
}

}  // namespace fineserve::gpu
