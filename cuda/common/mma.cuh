// Warp-level tensor-core products (PTX mma.sync, sm_80+), one wrapper per shape and type, with the
// fragments as plain registers. Under nvcc they are inline PTX; under the SIMT emulator each
// wrapper collects the warp's A and B fragments (simt::gather_warp) and computes this lane's part
// of D from the PTX ISA fragment layout, so a kernel that puts a value in the wrong register or
// lane computes a wrong product in the tests, as it would on a GPU.
//
// Fragment layouts (PTX ISA 9.7.14.5, groupID g = lane >> 2, threadID_in_group t = lane % 4):
//   m16n8k16 .f16/.bf16: A a0..a7 in 4 x b32 (2 elements each): row g for a0,a1,a4,a5, g + 8 for
//     a2,a3,a6,a7; col 2t + (i & 1), + 8 for a4..a7. B b0..b3 in 2 x b32: k row 2t + (i & 1), + 8
//     for b2,b3; col g.
//   m16n8k32 .s8: A a0..a15 in 4 x b32 (4 elements each): row g for a0..a3 and a8..a11, g + 8
//     otherwise; col 4t + (i & 3), + 16 for a8..a15. B b0..b7 in 2 x b32: k row 4t + (i & 3),
//     + 16 for b4..b7; col g.
//   C/D (f32 or s32) c0..c3: row g for c0,c1, g + 8 for c2,c3; col 2t + (i & 1).
// So for both shapes, with a tile stored k-contiguous as 32-bit words, register j of A is word
// (t + 4 * (j >> 1)) of row g + 8 * (j & 1), and register j of B is word (t + 4 * j) of row g:
// the kernels load fragments of either type with the same addressing.
#pragma once

#include <cstdint>
#include <type_traits>

#include "common/cuda_lang.cuh"
#include "common/numeric.cuh"

namespace fineserve::gpu {

#if FS_SIMT
namespace mma_emulation {

struct Fragments {
  uint32_t a[4], b[2];
};

// This lane's D of m16n8k16 (16-bit inputs) or m16n8k32 (int8 inputs) from every lane's A and B.
template <class Acc, class Elem>
inline void product(const uint32_t (&a)[4], const uint32_t (&b)[2], const Acc (&c)[4], Acc (&d)[4], Elem elem) {
  Fragments mine{{a[0], a[1], a[2], a[3]}, {b[0], b[1]}};
  Fragments all[32];
  simt::gather_warp(&mine, sizeof mine, all);
  const int lane = simt::lane_id(), g = lane >> 2, t = lane & 3;
  constexpr bool kInt8 = std::is_integral<Acc>::value;
  constexpr int kK = kInt8 ? 32 : 16, kPerWord = kInt8 ? 4 : 2, kHalf = kK / 2;
  for (int i = 0; i < 4; ++i) {
    const int row = g + (i >= 2 ? 8 : 0), col = 2 * t + (i & 1);
    Acc sum = c[i];
    for (int k = 0; k < kK; ++k) {
      // Who holds A[row][k] and B[k][col], and in which register and position.
      const int kin = k % kHalf, word = kin / kPerWord, pos = kin % kPerWord;
      const Fragments& fa = all[(row % 8) * 4 + word];
      const Fragments& fb = all[col * 4 + word];
      const int areg = (row >= 8 ? 1 : 0) + (k >= kHalf ? 2 : 0), breg = k >= kHalf ? 1 : 0;
      sum += elem(fa.a[areg], pos) * elem(fb.b[breg], pos);
    }
    d[i] = sum;
  }
}

}  // namespace mma_emulation
#endif

// d = a * b + c, m16n8k16, f16 inputs, f32 accumulation (d may be c).
__device__ __forceinline__ void mma_m16n8k16_f16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                                                 const float (&c)[4]) {
#if FS_SIMT
  mma_emulation::product(a, b, c, d,
                         [](uint32_t w, int pos) { return f16_to_f32(static_cast<uint16_t>(w >> (16 * pos))); });
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]),
        "f"(c[3]));
#elif defined(__CUDA_ARCH__)
  __trap();  // the build targets sm_80+; linear() never launches a tensor-core kernel below that
#endif
}

// The same with bf16 inputs.
__device__ __forceinline__ void mma_m16n8k16_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                                                  const float (&c)[4]) {
#if FS_SIMT
  mma_emulation::product(a, b, c, d,
                         [](uint32_t w, int pos) { return bf16_to_f32(static_cast<uint16_t>(w >> (16 * pos))); });
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]),
        "f"(c[3]));
#elif defined(__CUDA_ARCH__)
  __trap();
#endif
}

// d = a * b + c, m16n8k32, s8 inputs, s32 accumulation (exact, so the emulation is bit-exact).
__device__ __forceinline__ void mma_m16n8k32_s8(int32_t (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                                                const int32_t (&c)[4]) {
#if FS_SIMT
  mma_emulation::product(a, b, c, d, [](uint32_t w, int pos) {
    return static_cast<int32_t>(static_cast<int8_t>(w >> (8 * pos)));
  });
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};\n"
      : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "r"(c[0]), "r"(c[1]), "r"(c[2]),
        "r"(c[3]));
#elif defined(__CUDA_ARCH__)
  __trap();
#endif
}

}  // namespace fineserve::gpu
