// A SIMT emulator: the subset of the CUDA language our kernels use, for a host C++ compiler.
//
// Why: CI and most development machines have no GPU, and a kernel that was only ever compiled
// is a kernel that was never run. Compiled against this header (g++, no CUDA toolkit), the very
// same kernel source runs on the CPU: every CUDA thread of a block is a fiber on one OS thread,
// blocks run one after another, and __syncthreads / __syncwarp / warp shuffles / the mma
// wrappers of cuda/common/mma.cuh are real rendezvous points of those fibers. So indexing,
// fragment layouts, barriers and reductions are exercised for real; only speed and the memory
// model's races are not (fibers switch only at the sync points, so a missing barrier before a
// read of another thread's shared store can pass here and fail on a GPU).
//
// What it checks that a GPU would not report: a thread that leaves the kernel while others wait
// at a barrier (undefined behaviour in CUDA) is a SimtError naming the kernel's block.
//
// Limits: one block in flight, so `__shared__` is a function-local static (shared by the block's
// fibers, reused by the next block). Dynamic shared memory comes from simt::dynamic_smem().
#pragma once

#include <math.h>  // fmaxf, expf, ... in the global namespace, as device code spells them

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>

struct dim3 {
  unsigned int x = 1, y = 1, z = 1;
  constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct uint3 {
  unsigned int x, y, z;
};

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
#define __shared__ static thread_local  // per OS thread: two launches may run at once on two threads
#define __restrict__ __restrict
#define __align__(n) alignas(n)

namespace simt {

struct SimtError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The calling fiber's coordinates (set by the scheduler before a fiber runs).
struct ThreadCoords {
  uint3 thread_idx, block_idx;
  dim3 block_dim, grid_dim;
};
extern thread_local ThreadCoords coords;

// Runs `body` as a kernel over grid x block threads; `smem_bytes` of dynamic shared memory per
// block. Throws SimtError on a barrier deadlock, rethrows what a thread threw.
void launch(dim3 grid, dim3 block, size_t smem_bytes, const char* name, const std::function<void()>& body);

void sync_block();
void sync_warp();
void* dynamic_smem();

// A warp-wide exchange of one value per lane: returns the value lane `src` published. Lanes
// outside the warp (src >= 32 or beyond a partial last warp) return the caller's own value, as
// CUDA's shuffles do when the source lane is out of range.
uint64_t exchange(uint64_t mine, int src);
int lane_id();
// The whole warp's values of one 32-byte-or-smaller item: fills all[lane] for every lane.
void gather_warp(const void* mine, size_t bytes, void* all);

}  // namespace simt

#define threadIdx (::simt::coords.thread_idx)
#define blockIdx (::simt::coords.block_idx)
#define blockDim (::simt::coords.block_dim)
#define gridDim (::simt::coords.grid_dim)
#define warpSize 32

inline void __syncthreads() { simt::sync_block(); }
inline void __syncwarp(unsigned = 0xffffffffu) { simt::sync_warp(); }

template <class T>
inline T simt_shfl(T v, int src) {
  static_assert(sizeof(T) <= 8, "shuffles move at most 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof v);
  bits = simt::exchange(bits, src);
  T out;
  std::memcpy(&out, &bits, sizeof out);
  return out;
}
template <class T>
inline T __shfl_sync(unsigned, T v, int src, int width = 32) {
  const int lane = simt::lane_id();
  return simt_shfl(v, (lane & ~(width - 1)) + (src & (width - 1)));
}
template <class T>
inline T __shfl_xor_sync(unsigned, T v, int mask, int width = 32) {
  const int lane = simt::lane_id();
  int src = lane ^ mask;
  if ((src & ~(width - 1)) != (lane & ~(width - 1))) src = lane;
  return simt_shfl(v, src);
}
template <class T>
inline T __shfl_down_sync(unsigned, T v, unsigned delta, int width = 32) {
  const int lane = simt::lane_id();
  int src = lane + static_cast<int>(delta);
  if ((src & ~(width - 1)) != (lane & ~(width - 1))) src = lane;
  return simt_shfl(v, src);
}

// Device math with the host library's (correctly rounded or close) versions.
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __int_as_float(int i) {
  float f;
  std::memcpy(&f, &i, sizeof f);
  return f;
}
inline int __float_as_int(float f) {
  int i;
  std::memcpy(&i, &f, sizeof i);
  return i;
}
inline unsigned __float_as_uint(float f) {
  unsigned i;
  std::memcpy(&i, &f, sizeof i);
  return i;
}
inline float __uint_as_float(unsigned i) {
  float f;
  std::memcpy(&f, &i, sizeof f);
  return f;
}
// One fiber runs at a time, so atomics are plain read-modify-writes.
template <class T>
inline T atomicAdd(T* p, T v) {
  T old = *p;
  *p = old + v;
  return old;
}
template <class T>
inline T atomicMax(T* p, T v) {
  T old = *p;
  if (v > old) *p = v;
  return old;
}
template <class T>
inline T __ldg(const T* p) {
  return *p;
}
// 4 signed bytes dotted with 4 signed bytes, plus c.
inline int __dp4a(int a, int b, int c) {
  for (int i = 0; i < 4; ++i) {
    c += static_cast<int8_t>(static_cast<uint32_t>(a) >> (8 * i)) * static_cast<int8_t>(static_cast<uint32_t>(b) >> (8 * i));
  }
  return c;
}
