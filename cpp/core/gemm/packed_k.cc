// Repacking, the per-level table and the portable reference of the packed K-quant GEMM (packed_k.h).
#include "gemm/packed_k.h"

#include <cmath>
#include <cstring>

#include "quant/kquant_scales.h"
#include "simd/half.h"

namespace fineserve::gemm {

using model::DType;
namespace kq = quant::kquant;

namespace {

constexpr size_t kQ4KFile = 144, kQ6KFile = 210;

// The byte of lane r's 4 bytes in the 64-byte vector at `vec`.
constexpr size_t lane(size_t vec, size_t r) { return vec + 4 * r; }
// Q4_K: the vector of chunk c, step i; Q6_K: vector v (0 ql_a, 1 ql_b, 2 qh) of half h, step i.
constexpr size_t q4k_vec(size_t c, size_t i) { return kQ4KCodes + 512 * c + 64 * i; }
constexpr size_t q6k_vec(size_t h, size_t i, size_t v) { return kQ6KCodes + 1536 * h + 192 * i + 64 * v; }
// The byte of sub-block j's value in a pair table at `table` (pairs [j / 2][16][2]).
constexpr size_t pair(size_t table, size_t j, size_t r) { return table + 32 * (j / 2) + 2 * r + j % 2; }

void pack_q4_k_block(const uint8_t* src, size_t r, uint8_t* dst) {
  std::memcpy(dst + 2 * r, src, 2);
  std::memcpy(dst + 32 + 2 * r, src + 2, 2);
  for (int j = 0; j < 8; ++j) {
    int sc, mn;
    quant::q4_k_scale_min(src + 4, j, &sc, &mn);
    dst[pair(kQ4KScales, j, r)] = static_cast<uint8_t>(sc);
    dst[pair(kQ4KMins, j, r)] = static_cast<uint8_t>(mn);
  }
  for (size_t c = 0; c < 4; ++c)
    for (size_t i = 0; i < 8; ++i) std::memcpy(dst + lane(q4k_vec(c, i), r), src + 16 + 32 * c + 4 * i, 4);
}

void unpack_q4_k_block(const uint8_t* src, size_t r, uint8_t* dst) {
  std::memcpy(dst, src + 2 * r, 2);
  std::memcpy(dst + 2, src + 32 + 2 * r, 2);
  uint8_t sc[8], mn[8];
  for (size_t j = 0; j < 8; ++j) {
    sc[j] = src[pair(kQ4KScales, j, r)];
    mn[j] = src[pair(kQ4KMins, j, r)];
  }
  // The inverse of q4_k_scale_min: sub-blocks 4..7 keep their low 4 bits in bytes 8..11 and their
  // top 2 bits above sub-blocks 0..3's 6 (weight_format.h).
  uint8_t* s = dst + 4;
  for (size_t j = 0; j < 4; ++j) {
    s[j] = static_cast<uint8_t>(sc[j] | (sc[j + 4] >> 4) << 6);
    s[j + 4] = static_cast<uint8_t>(mn[j] | (mn[j + 4] >> 4) << 6);
    s[j + 8] = static_cast<uint8_t>((sc[j + 4] & 15) | (mn[j + 4] & 15) << 4);
  }
  for (size_t c = 0; c < 4; ++c)
    for (size_t i = 0; i < 8; ++i) std::memcpy(dst + 16 + 32 * c + 4 * i, src + lane(q4k_vec(c, i), r), 4);
}

// `to_packed` copies file -> packed, else packed -> file: Q6_K's repack only moves bytes.
void move_q6_k_block(uint8_t* file, size_t r, uint8_t* packed, bool to_packed) {
  auto move = [&](size_t f, size_t p, size_t n) {
    if (to_packed) {
      std::memcpy(packed + p, file + f, n);
    } else {
      std::memcpy(file + f, packed + p, n);
    }
  };
  move(208, 2 * r, 2);
  for (size_t j = 0; j < 16; ++j) move(192 + j, pair(kQ6KScales, j, r), 1);
  for (size_t h = 0; h < 2; ++h) {
    for (size_t i = 0; i < 8; ++i) {
      move(64 * h + 4 * i, lane(q6k_vec(h, i, 0), r), 4);
      move(64 * h + 32 + 4 * i, lane(q6k_vec(h, i, 1), r), 4);
      move(128 + 32 * h + 4 * i, lane(q6k_vec(h, i, 2), r), 4);
    }
  }
}

constexpr size_t file_block(DType t) { return t == DType::Q4_K ? kQ4KFile : kQ6KFile; }

}  // namespace

bool packable_k(DType t) { return t == DType::Q4_K || t == DType::Q6_K; }

std::shared_ptr<const PackedWeights> pack_k(DType t, const uint8_t* data, size_t rows, size_t cols) {
  auto p = std::make_shared<PackedWeights>();
  p->dtype = t;
  p->rows = rows;
  p->cols = cols;
  p->blocks = cols / kq::kSuper;
  p->block_bytes = t == DType::Q4_K ? kQ4KPackedBlock : kQ6KPackedBlock;
  p->group_bytes = p->blocks * p->block_bytes;
  p->bytes.assign(p->groups() * p->group_bytes, 0);
  const size_t fb = file_block(t);
  for (size_t r = 0; r < rows; ++r) {
    for (size_t b = 0; b < p->blocks; ++b) {
      const uint8_t* src = data + (r * p->blocks + b) * fb;
      uint8_t* dst = p->bytes.data() + (r / kPackRows) * p->group_bytes + b * p->block_bytes;
      if (t == DType::Q4_K) {
        pack_q4_k_block(src, r % kPackRows, dst);
      } else {
        move_q6_k_block(const_cast<uint8_t*>(src), r % kPackRows, dst, true);
      }
    }
  }
  return p;
}

void unpack_k_row(const PackedWeights& w, size_t r, uint8_t* out) {
  const size_t fb = file_block(w.dtype);
  for (size_t b = 0; b < w.blocks; ++b) {
    const uint8_t* src = w.block(r / kPackRows, b);
    if (w.dtype == DType::Q4_K) {
      unpack_q4_k_block(src, r % kPackRows, out + b * fb);
    } else {
      move_q6_k_block(out + b * fb, r % kPackRows, const_cast<uint8_t*>(src), false);
    }
  }
}

void sum_sub_blocks(PackedKActs& a) {
  const size_t n = a.q8.tokens * a.q8.blocks;
  a.bsums32.resize(8 * n);
  for (size_t i = 0; i < 8 * n; ++i) a.bsums32[i] = static_cast<int16_t>(a.q8.bsums[2 * i] + a.q8.bsums[2 * i + 1]);
}

void quantize_k_reference(const float* x, size_t tokens, size_t cols, PackedKActs& a) {
  kq::quantize_q8_k(x, tokens, cols, a.q8);
  sum_sub_blocks(a);
}

namespace {

float f16_at(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return simd::f16_to_f32_scalar(h);
}

// One super-block of lane r against one token's Q8_K block: kquant_dot.h's sum update.
float q4_k_step(const uint8_t* blk, size_t r, const int8_t* x, const int16_t* bs32, float dx, float sum) {
  int32_t s = 0, m = 0;
  for (size_t j = 0; j < 8; ++j) {
    int32_t dot = 0;
    for (size_t i = 0; i < 8; ++i) {
      for (size_t e = 0; e < 4; ++e) {
        const uint8_t u = blk[lane(q4k_vec(j / 2, i), r) + e];
        dot += (j % 2 == 0 ? u & 15 : u >> 4) * x[32 * j + 4 * i + e];
      }
    }
    s += blk[pair(kQ4KScales, j, r)] * dot;
    m += blk[pair(kQ4KMins, j, r)] * bs32[j];
  }
  sum = std::fma(f16_at(blk + 2 * r) * dx, static_cast<float>(s), sum);
  return std::fma(-(f16_at(blk + 32 + 2 * r) * dx), static_cast<float>(m), sum);
}

float q6_k_step(const uint8_t* blk, size_t r, const int8_t* x, const int16_t* bs, float dx, float sum) {
  int32_t s = 0, m = 0;
  for (size_t h = 0; h < 2; ++h) {
    for (size_t i = 0; i < 8; ++i) {
      const uint8_t* qa = blk + lane(q6k_vec(h, i, 0), r);
      const uint8_t* qb = blk + lane(q6k_vec(h, i, 1), r);
      const uint8_t* qh = blk + lane(q6k_vec(h, i, 2), r);
      for (size_t q = 0; q < 4; ++q) {
        const size_t e0 = 128 * h + 32 * q + 4 * i;
        int32_t dot = 0;
        for (size_t e = 0; e < 4; ++e) {
          const uint8_t lo = q % 2 == 0 ? qa[e] : qb[e];
          const int code = (q < 2 ? lo & 15 : lo >> 4) | (qh[e] >> (2 * q) & 3) << 4;
          dot += code * x[e0 + e];
        }
        s += static_cast<int8_t>(blk[pair(kQ6KScales, e0 / 16, r)]) * dot;
      }
    }
  }
  for (size_t j = 0; j < 16; ++j) m += static_cast<int8_t>(blk[pair(kQ6KScales, j, r)]) * bs[j];
  return std::fma(f16_at(blk + 2 * r) * dx, static_cast<float>(s - 32 * m), sum);
}

}  // namespace

void packed_k_reference(const PackedWeights& w, const PackedKActs& a, size_t tokens, size_t r0, size_t r1,
                        const float* bias, float* y, size_t y_stride) {
  const kq::Q8K& q8 = a.q8;
  for (size_t t = 0; t < tokens; ++t) {
    for (size_t r = r0; r < r1; ++r) {
      float sum = 0;
      for (size_t b = 0; b < w.blocks; ++b) {
        const size_t i = t * q8.blocks + b;
        const uint8_t* blk = w.block(r / kPackRows, b);
        const int8_t* x = q8.q.data() + i * kq::kSuper;
        sum = w.dtype == DType::Q4_K ? q4_k_step(blk, r % kPackRows, x, a.bsums32.data() + 8 * i, q8.d[i], sum)
                                     : q6_k_step(blk, r % kPackRows, x, q8.bsums.data() + 16 * i, q8.d[i], sum);
      }
      y[t * y_stride + r] = bias != nullptr ? sum + bias[r] : sum;
    }
  }
}

#if defined(FINESERVE_HAVE_AVX2)
extern const PackedKKernels kAvx2PackedK;  // packed_k_avx2.cc
#endif
#if defined(FINESERVE_HAVE_AVX512)
extern const PackedKKernels kAvx512PackedK;  // packed_k_avx512.cc
#endif

const PackedKKernels* packed_k_kernels_for(simd::Level level) {
  static const PackedKKernels reference = {quantize_k_reference, packed_k_reference, packed_k_reference};
  const PackedKKernels *avx2 = nullptr, *avx512 = nullptr;
#if defined(FINESERVE_HAVE_AVX2)
  avx2 = &kAvx2PackedK;
#endif
#if defined(FINESERVE_HAVE_AVX512)
  avx512 = &kAvx512PackedK;
#endif
  return resolve_packed<PackedKKernels>(level, &reference, avx2, avx512);
}

PackedKFn packed_k_kernel(const PackedKKernels& k, DType t) {
  return t == DType::Q4_K ? k.q4_k : t == DType::Q6_K ? k.q6_k : nullptr;
}

}  // namespace fineserve::gemm
