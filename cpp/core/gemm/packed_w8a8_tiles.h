// The walk over one block of output rows that every level's W8A8 kernels share (packed_w8a8.h):
// chunks of tokens whose activations stay in L1/L2, then tiles of row units (a unit is the rows
// one vector register holds: 16 with AVX-512, 8 with AVX2) whose weights stay in L2 for the whole
// chunk, then tiles of up to MaxM tokens. One token (decode) takes wider row tiles instead: more
// independent weight streams in flight. Included only by the kernel files, whose Tile is in their
// own anonymous namespace, so each instantiation is compiled with that file's instruction set.
#pragma once

#include <algorithm>
#include <cstddef>

#include "gemm/packed_w8a8.h"

namespace fineserve::gemm::w8a8_tiles {

// Tokens per chunk: at 2,048 columns, 128 KiB of activations.
inline constexpr size_t kTokenChunk = 64;

struct Args {
  const PackedWeights& w;
  const W8A8Acts& a;
  const float* bias;
  float* y;
  size_t y_stride;
};

// Tile<M, U>::run(args, t0, u0) for the largest M' <= M, U' <= U that fit nt tokens, nu units.
template <template <size_t, size_t> class Tile, size_t M, size_t U>
void units(size_t nu, const Args& g, size_t t0, size_t u0) {
  if constexpr (U > 1) {
    if (nu < U) return units<Tile, M, U - 1>(nu, g, t0, u0);
  }
  Tile<M, U>::run(g, t0, u0);
}

template <template <size_t, size_t> class Tile, size_t M, size_t U>
void tokens(size_t nt, size_t nu, const Args& g, size_t t0, size_t u0) {
  if constexpr (M > 1) {
    if (nt < M) return tokens<Tile, M - 1, U>(nt, nu, g, t0, u0);
  }
  units<Tile, M, U>(nu, g, t0, u0);
}

// Rows [r0, r1) of y for every token; r0 a multiple of kPackRows.
template <template <size_t, size_t> class Tile, size_t MaxM, size_t UnitRows, size_t Units, size_t DecodeUnits>
void block(const PackedWeights& w, const W8A8Acts& a, size_t n_tokens, size_t r0, size_t r1, const float* bias,
           float* y, size_t ys) {
  const Args g{w, a, bias, y, ys};
  const size_t u0 = r0 / UnitRows, u1 = (r1 + UnitRows - 1) / UnitRows;
  if (n_tokens == 1) {
    for (size_t u = u0; u < u1; u += DecodeUnits) units<Tile, 1, DecodeUnits>(std::min(DecodeUnits, u1 - u), g, 0, u);
    return;
  }
  for (size_t c0 = 0; c0 < n_tokens; c0 += kTokenChunk) {
    const size_t c1 = std::min(n_tokens, c0 + kTokenChunk);
    for (size_t u = u0; u < u1; u += Units) {
      const size_t nu = std::min(Units, u1 - u);
      for (size_t t = c0; t < c1; t += MaxM) tokens<Tile, MaxM, Units>(std::min(MaxM, c1 - t), nu, g, t, u);
    }
  }
}

}  // namespace fineserve::gemm::w8a8_tiles
