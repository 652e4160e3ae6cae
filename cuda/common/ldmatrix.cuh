// ldmatrix (PTX ldmatrix.sync.aligned.m8n8.xN.shared.b16, sm_75+; the build targets sm_80+): a
// warp loads N 8x8 matrices of 16-bit elements from shared memory straight into mma fragment
// order, one instruction where plain loads need one per register.
//
// Layout (PTX ISA, "Warp-level matrix load instruction: ldmatrix"): lanes 8i .. 8i + 7 give the
// addresses of rows 0..7 of matrix i (each row 16 contiguous bytes, 16-byte aligned; the other
// lanes' addresses are ignored for N < 4), and lane l receives in register i the 32-bit word
// l % 4 of row l / 4 of matrix i, i.e. elements 2 (l % 4) and 2 (l % 4) + 1 of that row. That is
// exactly the A (per 8x8 quarter) and B fragment order of mma.m16n8k16 (and, word for word, of
// the int8 m16n8k32: see common/mma.cuh), so k-contiguous tiles need no .trans.
//
// Under the SIMT emulator the warp's row addresses are exchanged (simt::gather_warp) and each lane
// reads its words from them as the ISA specifies, so a kernel that hands a wrong lane a wrong
// address gets wrong fragments here as on a GPU.
#pragma once

#include <cstdint>
#include <cstring>

#include "common/cuda_lang.cuh"

namespace fineserve::gpu {

template <int N>
__device__ __forceinline__ void ldmatrix_m8n8(uint32_t (&r)[N], const void* row) {
  static_assert(N == 1 || N == 2 || N == 4, "ldmatrix loads 1, 2 or 4 matrices");
#if FS_SIMT
  const void* rows[32];
  simt::gather_warp(&row, sizeof row, rows);
  const int lane = simt::lane_id();
  for (int i = 0; i < N; ++i) {
    const void* src = rows[8 * i + lane / 4];
    if (reinterpret_cast<uintptr_t>(src) % 16 != 0) {
      throw simt::SimtError("ldmatrix: a row address must be 16-byte aligned");
    }
    std::memcpy(&r[i], static_cast<const unsigned char*>(src) + 4 * (lane % 4), 4);
  }
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const uint32_t a = static_cast<uint32_t>(__cvta_generic_to_shared(row));
  if constexpr (N == 1) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];\n" : "=r"(r[0]) : "r"(a));
  } else if constexpr (N == 2) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n" : "=r"(r[0]), "=r"(r[1]) : "r"(a));
  } else {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
  }
#elif defined(__CUDA_ARCH__)
  __trap();
#endif
}

}  // namespace fineserve::gpu
