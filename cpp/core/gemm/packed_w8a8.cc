// Repacking, the per-level table and the portable reference of the W8A8 integer GEMM
// (packed_w8a8.h).
#include "gemm/packed_w8a8.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "quant/weight_format.h"

namespace fineserve::gemm {

namespace {

// The byte of a group's block that holds element 4j + i of the block in row lane r.
constexpr size_t lane_byte(size_t j, size_t r, size_t i) { return 64 * j + 4 * r + i; }

float* row_scales(PackedWeights& w) { return reinterpret_cast<float*>(w.bytes.data() + w.groups() * w.group_bytes); }

}  // namespace

std::shared_ptr<const PackedWeights> pack_w8a8(const uint8_t* data, size_t rows, size_t cols) {
  auto p = std::make_shared<PackedWeights>();
  p->dtype = model::DType::W8A8;
  p->rows = rows;
  p->cols = cols;
  p->blocks = (cols + 31) / 32;
  p->block_bytes = kW8A8BlockBytes;
  p->group_bytes = p->blocks * p->block_bytes;
  p->bytes.assign(p->groups() * (p->group_bytes + 4 * kPackRows), 0);
  std::fill(p->bytes.begin(), p->bytes.begin() + p->groups() * p->group_bytes, uint8_t(128));
  const uint64_t stride = quant::row_bytes(model::DType::W8A8, cols);
  float* scales = row_scales(*p);
  for (size_t r = 0; r < rows; ++r) {
    const uint8_t* row = data + r * stride;
    std::memcpy(scales + r, row, 4);
    const uint8_t* q = row + quant::kRowAlign;
    const size_t lane = r % kPackRows;
    uint8_t* group = p->bytes.data() + r / kPackRows * p->group_bytes;
    for (size_t c = 0; c < cols; ++c) {
      const size_t k = c % 32;
      group[c / 32 * p->block_bytes + lane_byte(k / 4, lane, k % 4)] = uint8_t(q[c] ^ 0x80);
    }
  }
  return p;
}

void unpack_w8a8_row(const PackedWeights& w, size_t r, uint8_t* out) {
  std::memset(out, 0, quant::row_bytes(model::DType::W8A8, w.cols));
  std::memcpy(out, w8a8_row_scales(w) + r, 4);
  const size_t lane = r % kPackRows;
  for (size_t c = 0; c < w.cols; ++c) {
    const size_t k = c % 32;
    out[quant::kRowAlign + c] = uint8_t(w.block(r / kPackRows, c / 32)[lane_byte(k / 4, lane, k % 4)] ^ 0x80);
  }
}

void W8A8Acts::resize(size_t t, size_t cols) {
  tokens = t;
  stride = (cols + 31) / 32 * 32;
  q.assign(t * stride, 0);
  scale.resize(t);
  sum.resize(t);
}

// quant::prepare_activations' I8PerToken, step for step.
void w8a8_quantize_reference(const float* x, size_t tokens, size_t cols, const float* input_scale, W8A8Acts& a) {
  a.resize(tokens, cols);
  std::vector<float> row(cols);
  for (size_t t = 0; t < tokens; ++t) {
    float amax = 0.0f;
    for (size_t i = 0; i < cols; ++i) {
      row[i] = input_scale ? x[t * cols + i] * input_scale[i] : x[t * cols + i];
      amax = std::max(amax, std::fabs(row[i]));
    }
    const float sx = amax / 127.0f;
    int32_t s = 0;
    for (size_t i = 0; i < cols; ++i) {
      const int8_t q = sx != 0.0f ? static_cast<int8_t>(std::nearbyint(row[i] / sx)) : 0;
      a.q[t * a.stride + i] = q;
      s += q;
    }
    a.scale[t] = sx;
    a.sum[t] = s;
  }
}

void w8a8_reference(const PackedWeights& w, const W8A8Acts& a, size_t tokens, size_t r0, size_t r1, const float* bias,
                    float* y, size_t y_stride) {
  const float* sw = w8a8_row_scales(w);
  for (size_t t = 0; t < tokens; ++t) {
    const int8_t* x = a.q.data() + t * a.stride;
    for (size_t r = r0; r < r1; ++r) {
      const size_t lane = r % kPackRows;
      int64_t s = -128 * int64_t(a.sum[t]);
      for (size_t b = 0; b < w.blocks; ++b) {
        const uint8_t* blk = w.block(r / kPackRows, b);
        for (size_t k = 0; k < 32; ++k) s += int64_t(blk[lane_byte(k / 4, lane, k % 4)]) * x[32 * b + k];
      }
      const float v = static_cast<float>(static_cast<int32_t>(s)) * (sw[r] * a.scale[t]);
      y[t * y_stride + r] = bias != nullptr ? v + bias[r] : v;
    }
  }
}

const W8A8Kernels& w8a8_reference_kernels() {
  static const W8A8Kernels k = {w8a8_quantize_reference, w8a8_reference, kPackRows};
  return k;
}

#if defined(FINESERVE_HAVE_AVX2)
extern const W8A8Kernels kAvx2W8A8;  // packed_w8a8_avx2.cc
#endif
#if defined(FINESERVE_HAVE_AVX512)
extern const W8A8Kernels kAvx512W8A8;  // packed_w8a8_avx512.cc
#endif

const W8A8Kernels* w8a8_kernels_for(simd::Level level) {
  const W8A8Kernels *avx2 = nullptr, *avx512 = nullptr;
#if defined(FINESERVE_HAVE_AVX2)
  avx2 = &kAvx2W8A8;
#endif
#if defined(FINESERVE_HAVE_AVX512)
  avx512 = &kAvx512W8A8;
#endif
  return resolve_packed<W8A8Kernels>(level, nullptr, avx2, avx512);
}

}  // namespace fineserve::gemm
