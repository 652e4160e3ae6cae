// The walk over one block of output rows that every level's packed kernels share (packed.h):
// chunks of tokens whose activations stay in L1/L2, then tiles of row units (a unit is the rows
// one vector register holds: 16 with AVX-512, 8 with AVX2) whose weights stay in L1 for the whole
// chunk, then tiles of up to MaxM tokens. Decode (one token) takes its own row-tile width: the
// kernels' choice is one 16-row group, read as a single sequential stream.
// Included only by the kernel files, whose Tile is in their own anonymous namespace, so each
// instantiation is compiled with that file's instruction set.
#pragma once

#include <algorithm>
#include <cstddef>

#include "gemm/packed.h"

namespace fineserve::gemm::tiles {

// Tokens per chunk: about 1 KiB of activations each per 1,024 columns.
inline constexpr size_t kTokenChunk = 32;

// Tile<Q4, M, U>::run(w, a, t0, u0, bias, y, y_stride) computes M tokens x U units. Acts is the
// kernels' activation type (PackedActs, or PackedKActs for the K-quants, where Q4 picks Q6_K).
template <template <bool, size_t, size_t> class Tile, bool Q4, size_t M, class Acts>
void units_switch(size_t nu, const PackedWeights& w, const Acts& a, size_t t0, size_t u0, const float* bias,
                  float* y, size_t ys) {
  switch (nu) {
    case 1: return Tile<Q4, M, 1>::run(w, a, t0, u0, bias, y, ys);
    case 2: return Tile<Q4, M, 2>::run(w, a, t0, u0, bias, y, ys);
    case 3:
      if constexpr (M == 1) return Tile<Q4, 1, 3>::run(w, a, t0, u0, bias, y, ys);
      [[fallthrough]];
    default:  // only decode tiles are wider than 2 units
      if constexpr (M == 1) return Tile<Q4, 1, 4>::run(w, a, t0, u0, bias, y, ys);
      return Tile<Q4, M, 2>::run(w, a, t0, u0, bias, y, ys);
  }
}

template <template <bool, size_t, size_t> class Tile, bool Q4, size_t MaxM, class Acts>
void tokens_switch(size_t nt, size_t nu, const PackedWeights& w, const Acts& a, size_t t0, size_t u0,
                   const float* bias, float* y, size_t ys) {
  switch (nt) {
    case 1: return units_switch<Tile, Q4, 1>(nu, w, a, t0, u0, bias, y, ys);
    case 2:
      if constexpr (MaxM >= 2) return units_switch<Tile, Q4, 2>(nu, w, a, t0, u0, bias, y, ys);
      break;
    case 3:
      if constexpr (MaxM >= 3) return units_switch<Tile, Q4, 3>(nu, w, a, t0, u0, bias, y, ys);
      break;
    default:
      break;
  }
  return units_switch<Tile, Q4, MaxM>(nu, w, a, t0, u0, bias, y, ys);
}

// Rows [r0, r1) of y for every token; r0 a multiple of kPackRows.
template <template <bool, size_t, size_t> class Tile, bool Q4, size_t MaxM, size_t UnitRows, size_t Units,
          size_t DecodeUnits, class Acts>
void block(const PackedWeights& w, const Acts& a, size_t tokens, size_t r0, size_t r1, const float* bias,
           float* y, size_t ys) {
  const size_t u0 = r0 / UnitRows, u1 = (r1 + UnitRows - 1) / UnitRows;
  const size_t step = tokens == 1 ? DecodeUnits : Units;
  for (size_t c0 = 0; c0 < tokens; c0 += kTokenChunk) {
    const size_t c1 = std::min(tokens, c0 + kTokenChunk);
    for (size_t u = u0; u < u1; u += step) {
      const size_t nu = std::min(step, u1 - u);
      for (size_t t = c0; t < c1; t += MaxM) tokens_switch<Tile, Q4, MaxM>(std::min(MaxM, c1 - t), nu, w, a, t, u, bias, y, ys);
    }
  }
}

}  // namespace fineserve::gemm::tiles
