// Repacking, the per-level table and the portable reference of the packed integer GEMM (packed.h).
#include "gemm/packed.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "gemm/packed_k.h"
#include "gemm/packed_w8a8.h"
#include "simd/half.h"

namespace fineserve::gemm {

using model::DType;

namespace {

constexpr size_t file_block_bytes(DType t) { return t == DType::Q8_0 ? 34 : 18; }
constexpr size_t quant_bytes(DType t) { return t == DType::Q8_0 ? 8 * 64 : 4 * 64; }

// The byte of the packed block that holds bytes 4j..4j+3 of row lane r's quants (Q4_0: of the
// file's 16 quant bytes; Q8_0: of its 32 elements).
constexpr size_t lane_offset(size_t j, size_t r) { return kPackScaleBytes + 64 * j + 4 * r; }

}  // namespace

bool packable(DType t) { return t == DType::Q8_0 || t == DType::Q4_0; }

std::shared_ptr<const PackedWeights> pack(DType t, const uint8_t* data, size_t rows, size_t cols) {
  auto p = std::make_shared<PackedWeights>();
  p->dtype = t;
  p->rows = rows;
  p->cols = cols;
  p->blocks = cols / 32;
  p->block_bytes = kPackScaleBytes + quant_bytes(t);
  p->group_bytes = p->blocks * p->block_bytes;
  p->bytes.assign(p->groups() * p->group_bytes, 0);
  const size_t fb = file_block_bytes(t), row_bytes = p->blocks * fb, words = quant_bytes(t) / 64;
  for (size_t r = 0; r < rows; ++r) {
    const size_t g = r / kPackRows, lane = r % kPackRows;
    for (size_t b = 0; b < p->blocks; ++b) {
      const uint8_t* src = data + r * row_bytes + b * fb;
      uint8_t* dst = p->bytes.data() + g * p->group_bytes + b * p->block_bytes;
      std::memcpy(dst + 2 * lane, src, 2);
      for (size_t j = 0; j < words; ++j) {
        for (size_t i = 0; i < 4; ++i) {
          const uint8_t v = src[2 + 4 * j + i];
          dst[lane_offset(j, lane) + i] = t == DType::Q8_0 ? uint8_t(v ^ 0x80) : v;
        }
      }
    }
  }
  return p;
}

void unpack_row(const PackedWeights& w, size_t r, uint8_t* out) {
  const size_t fb = file_block_bytes(w.dtype), words = quant_bytes(w.dtype) / 64, lane = r % kPackRows;
  for (size_t b = 0; b < w.blocks; ++b) {
    const uint8_t* src = w.block(r / kPackRows, b);
    uint8_t* dst = out + b * fb;
    std::memcpy(dst, src + 2 * lane, 2);
    for (size_t j = 0; j < words; ++j) {
      for (size_t i = 0; i < 4; ++i) {
        const uint8_t v = src[lane_offset(j, lane) + i];
        dst[2 + 4 * j + i] = w.dtype == DType::Q8_0 ? uint8_t(v ^ 0x80) : v;
      }
    }
  }
}

const PackedWeights& packed_for(const model::TensorView& w) {
  std::shared_ptr<const PackedWeights> p = std::atomic_load(&w.packed);
  if (p) return *p;
  // One lock for every matrix: packing happens once per matrix, on the first forward pass.
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  p = std::atomic_load(&w.packed);
  if (!p) {
    p = pack_any(w.dtype, w.data, w.rows(), w.cols());
    std::atomic_store(&w.packed, p);
  }
  return *p;
}

std::shared_ptr<const PackedWeights> pack_any(DType t, const uint8_t* data, size_t rows, size_t cols) {
  if (t == DType::W8A8) return pack_w8a8(data, rows, cols);
  return packable_k(t) ? pack_k(t, data, rows, cols) : pack(t, data, rows, cols);
}

void PackedActs::resize(size_t t, size_t b) {
  tokens = t;
  blocks = b;
  q.resize(t * b * 32);
  d.resize(t * b);
  sum.resize(t * b);
}

void quantize_reference(const float* x, size_t tokens, size_t cols, PackedActs& a) {
  a.resize(tokens, cols / 32);
  for (size_t t = 0; t < tokens; ++t) {
    for (size_t b = 0; b < a.blocks; ++b) {
      const float* xb = x + t * cols + 32 * b;
      float amax = 0.0f;
      for (size_t j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(xb[j]));
      const size_t at = t * a.blocks + b;
      a.d[at] = simd::f16_to_f32_scalar(simd::f32_to_f16_scalar(amax / 127.0f));
      const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
      int32_t s = 0;
      for (size_t j = 0; j < 32; ++j) {
        const int8_t q = static_cast<int8_t>(std::nearbyint(xb[j] * id));
        a.q[at * 32 + j] = q;
        s += q;
      }
      a.sum[at] = s;
    }
  }
}

void packed_reference(const PackedWeights& w, const PackedActs& a, size_t tokens, size_t r0, size_t r1,
                      const float* bias, float* y, size_t y_stride) {
  const bool q4 = w.dtype == DType::Q4_0;
  const int32_t c = q4 ? 8 : 128;
  for (size_t t = 0; t < tokens; ++t) {
    for (size_t r = r0; r < r1; ++r) {
      const size_t lane = r % kPackRows;
      float acc = 0.0f;
      for (size_t b = 0; b < w.blocks; ++b) {
        const uint8_t* blk = w.block(r / kPackRows, b);
        const int8_t* x = a.q.data() + (t * a.blocks + b) * 32;
        int32_t s = -c * a.sum[t * a.blocks + b];
        for (size_t j = 0; j < (q4 ? 4u : 8u); ++j) {
          for (size_t i = 0; i < 4; ++i) {
            const uint8_t u = blk[lane_offset(j, lane) + i];
            if (q4) {
              s += (u & 15) * x[4 * j + i] + (u >> 4) * x[16 + 4 * j + i];
            } else {
              s += u * x[4 * j + i];
            }
          }
        }
        uint16_t h;
        std::memcpy(&h, blk + 2 * lane, 2);
        const float scale = simd::f16_to_f32_scalar(h) * a.d[t * a.blocks + b];
        acc = std::fma(static_cast<float>(s), scale, acc);
      }
      y[t * y_stride + r] = bias != nullptr ? acc + bias[r] : acc;
    }
  }
}

const PackedKernels& packed_reference_kernels() {
  static const PackedKernels k = {quantize_reference, packed_reference, packed_reference};
  return k;
}

#if defined(FINESERVE_HAVE_AVX2)
extern const PackedKernels kAvx2Packed;  // packed_avx2.cc
#endif
#if defined(FINESERVE_HAVE_AVX512)
extern const PackedKernels kAvx512Packed;  // packed_avx512.cc
#endif

const PackedKernels* packed_kernels_for(simd::Level level) {
  const PackedKernels *avx2 = nullptr, *avx512 = nullptr;
#if defined(FINESERVE_HAVE_AVX2)
  avx2 = &kAvx2Packed;
#endif
#if defined(FINESERVE_HAVE_AVX512)
  avx512 = &kAvx512Packed;
#endif
  return resolve_packed<PackedKernels>(level, nullptr, avx2, avx512);
}

PackedFn packed_kernel(const PackedKernels& k, DType t) {
  return t == DType::Q8_0 ? k.q8_0 : t == DType::Q4_0 ? k.q4_0 : nullptr;
}

bool pack_enabled() {
  const char* v = std::getenv("FINESERVE_GEMM_PACK");
  return v == nullptr || std::strcmp(v, "0") != 0;
}

}  // namespace fineserve::gemm
