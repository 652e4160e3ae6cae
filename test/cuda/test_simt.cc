// The SIMT emulator itself (cuda/simt): the kernels' tests are only as good as its barriers,
// shuffles and shared memory, so each is checked here against values computed by plain loops.
#include <doctest/doctest.h>

#include <numeric>
#include <vector>

#include "simt/simt.h"

TEST_CASE("simt: a shared-memory tree reduction needs every __syncthreads") {
  std::vector<int> out(3, -1);
  simt::launch(dim3(3), dim3(64), 0, "reduce", [&] {
    __shared__ int buf[64];
    buf[threadIdx.x] = static_cast<int>(blockIdx.x * 1000 + threadIdx.x);
    __syncthreads();
    for (unsigned s = 32; s > 0; s >>= 1) {
      if (threadIdx.x < s) buf[threadIdx.x] += buf[threadIdx.x + s];
      __syncthreads();
    }
    if (threadIdx.x == 0) out[blockIdx.x] = buf[0];
  });
  for (int b = 0; b < 3; ++b) CHECK(out[b] == b * 1000 * 64 + 63 * 64 / 2);
}

TEST_CASE("simt: shuffles see the other lanes' values, partial warps included") {
  const unsigned threads = 48;  // one full warp and one of 16 lanes
  std::vector<float> sums(threads), down(threads), bcast(threads);
  simt::launch(dim3(1), dim3(threads), 0, "shuffle", [&] {
    const unsigned t = threadIdx.x;
    float v = static_cast<float>(t);
    float s = v;
    for (int m = 16; m > 0; m >>= 1) s += __shfl_xor_sync(0xffffffffu, s, m);
    sums[t] = s;
    down[t] = __shfl_down_sync(0xffffffffu, v, 1);
    bcast[t] = __shfl_sync(0xffffffffu, v, 3);
  });
  for (unsigned t = 0; t < threads; ++t) {
    const unsigned warp = t / 32, lanes = warp == 0 ? 32 : 16;
    // xor partners beyond a partial warp answer with the caller's own value.
    if (warp == 0) CHECK(sums[t] == doctest::Approx(31 * 32 / 2));
    const unsigned lane = t % 32;
    CHECK(down[t] == static_cast<float>(lane + 1 < lanes ? t + 1 : t));
    CHECK(bcast[t] == static_cast<float>(warp * 32 + 3));
  }
}

TEST_CASE("simt: a 2D block and grid give CUDA's coordinates") {
  std::vector<int> seen(2 * 3 * 4 * 2, 0);
  simt::launch(dim3(2, 3), dim3(4, 2), 0, "coords", [&] {
    const unsigned bx = blockIdx.x, by = blockIdx.y, tx = threadIdx.x, ty = threadIdx.y;
    CHECK(blockDim.x == 4);
    CHECK(gridDim.y == 3);
    seen[((by * 2 + bx) * 2 + ty) * 4 + tx] += 1;
  });
  CHECK(std::accumulate(seen.begin(), seen.end(), 0) == 48);
  for (int s : seen) CHECK(s == 1);
}

TEST_CASE("simt: a thread that returns before a barrier is reported, not hung") {
  CHECK_THROWS_WITH_AS(simt::launch(dim3(1), dim3(64), 0, "early_exit",
                                    [&] {
                                      if (threadIdx.x == 5) return;
                                      __syncthreads();
                                    }),
                       doctest::Contains("early_exit, block (0,0,0): deadlock"), simt::SimtError);
}

TEST_CASE("simt: dynamic shared memory is poisoned and what a thread throws reaches the caller") {
  std::vector<unsigned char> first(1);
  simt::launch(dim3(1), dim3(32), 128, "poison", [&] {
    auto* smem = static_cast<unsigned char*>(simt::dynamic_smem());
    if (threadIdx.x == 0) first[0] = smem[17];
  });
  CHECK(first[0] == 0xFF);
  CHECK_THROWS_WITH(simt::launch(dim3(2), dim3(32), 0, "throws",
                                 [&] {
                                   if (blockIdx.x == 1 && threadIdx.x == 7) throw std::runtime_error("lane 7 failed");
                                 }),
                    "lane 7 failed");
}
