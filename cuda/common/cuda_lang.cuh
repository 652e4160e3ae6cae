// The one include every kernel file starts with: the real CUDA language under nvcc, the SIMT
// emulator (cuda/simt/simt.h) under a host compiler. Kernel code written against this subset runs
// unchanged on a GPU and, for tests without one, on the CPU.
#pragma once

#if defined(__CUDACC__)
#include <cuda_runtime.h>
#define FS_SIMT 0
#else
#include "simt/simt.h"
#define FS_SIMT 1
#endif

// Dynamic shared memory of the running block, as T*.
#if FS_SIMT
#define FS_DYNAMIC_SMEM(T, name) T* name = static_cast<T*>(::simt::dynamic_smem())
#else
#define FS_DYNAMIC_SMEM(T, name)                           \
  extern __shared__ __align__(16) unsigned char fs_smem[]; \
  T* name = reinterpret_cast<T*>(fs_smem)
#endif
