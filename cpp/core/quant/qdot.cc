// Activation preparation (once per linear() call) and the portable kernels every wider level is
// tested against. The integer sums are exact; only the float accumulation order differs by level.
#include "quant/qdot.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "quant/fp8.h"
#include "quant/row_bytes.h"
#include "quant/row_kernels.h"
#include "quant/weight_format.h"
#include "quant/weight_traits.h"
#include "simd/half.h"

namespace fineserve::quant {

using model::DType;

namespace {

float abs_max(const float* x, size_t n) {
  float amax = 0.0f;
  for (size_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
  return amax;
}

// llama.cpp's x86 quantize_row_q8_0 (not the _ref one): id = 127 / amax and round-half-even,
// with d rounded to f16 as the block stores it.
void q8_0_token(const float* x, size_t cols, int8_t* q, float* d) {
  for (size_t b = 0; b < cols / 32; ++b) {
    const float amax = abs_max(x + 32 * b, 32);
    d[b] = simd::f16_to_f32_scalar(simd::f32_to_f16_scalar(amax / 127.0f));
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    for (size_t j = 0; j < 32; ++j) q[32 * b + j] = static_cast<int8_t>(std::nearbyint(x[32 * b + j] * id));
  }
}

}  // namespace

namespace dot_baseline {

void q8_0(const uint8_t* row, const Activations& a, size_t t0, size_t nt, float* out) {
  for (size_t k = 0; k < nt; ++k) {
    const int8_t* x = a.q.data() + (t0 + k) * a.stride;
    const float* dx = a.block_scale.data() + (t0 + k) * (a.stride / 32);
    float sum = 0.0f;
    for (size_t b = 0; b < a.cols / 32; ++b) {
      const uint8_t* blk = row + 34 * b;
      int32_t s = 0;
      for (int j = 0; j < 32; ++j) s += static_cast<int8_t>(blk[2 + j]) * x[32 * b + j];
      sum += static_cast<float>(s) * (f16_at(blk) * dx[b]);
    }
    out[k] = sum;
  }
}

void q4_0(const uint8_t* row, const Activations& a, size_t t0, size_t nt, float* out) {
  for (size_t k = 0; k < nt; ++k) {
    const int8_t* x = a.q.data() + (t0 + k) * a.stride;
    const float* dx = a.block_scale.data() + (t0 + k) * (a.stride / 32);
    float sum = 0.0f;
    for (size_t b = 0; b < a.cols / 32; ++b) {
      const uint8_t* blk = row + 18 * b;
      int32_t s = 0;
      for (int j = 0; j < 16; ++j) {
        s += ((blk[2 + j] & 15) - 8) * x[32 * b + j] + ((blk[2 + j] >> 4) - 8) * x[32 * b + j + 16];
      }
      sum += static_cast<float>(s) * (f16_at(blk) * dx[b]);
    }
    out[k] = sum;
  }
}

void w8a8(const uint8_t* row, const Activations& a, size_t t0, size_t nt, float* out) {
  const int8_t* w = reinterpret_cast<const int8_t*>(row + kRowAlign);
  for (size_t k = 0; k < nt; ++k) {
    const int8_t* x = a.q.data() + (t0 + k) * a.stride;
    int64_t s = 0;
    for (size_t i = 0; i < a.cols; ++i) s += w[i] * x[i];
    out[k] = static_cast<float>(s) * (f32_at(row) * a.token_scale[t0 + k]);
  }
}

void fp8(const uint8_t* row, const Activations& a, size_t t0, size_t nt, float* out) {
  for (size_t k = 0; k < nt; ++k) {
    const float* x = a.f.data() + (t0 + k) * a.stride;
    float s = 0.0f;
    for (size_t i = 0; i < a.cols; ++i) s += fp8_to_f32(row[kRowAlign + i]) * x[i];
    out[k] = s * (f32_at(row) * a.token_scale[t0 + k]);
  }
}

// W4A16 and W4A8 both decode a nibble n of group g as n * scale_g + offset_g (W4A8: scale = the
// group's E4M3 scale, offset = -8 * scale, exact), so one loop serves both.
template <DType T>
static void int4_groups(const uint8_t* row, const Activations& a, size_t t0, size_t nt, float* out) {
  const uint8_t* data = row + row_data_offset(T, a.cols, a.group);
  for (size_t k = 0; k < nt; ++k) {
    const float* x = a.f.data() + (t0 + k) * a.stride;
    float s = 0.0f;
    for (size_t g = 0, start = 0; start < a.cols; ++g, start += a.group) {
      const float scale = T == DType::W4A16 ? f16_at(row + 4 * g) : fp8_to_f32(row[4 + g]);
      const float offset = T == DType::W4A16 ? f16_at(row + 4 * g + 2) : -8.0f * scale;
      for (size_t i = start; i < std::min<size_t>(a.cols, start + a.group); ++i) {
        s += (static_cast<float>(nibble(data, i)) * scale + offset) * x[i];
      }
    }
    out[k] = T == DType::W4A16 ? s : s * (f32_at(row) * a.token_scale[t0 + k]);
  }
}

void w4a16(const uint8_t* row, const Activations& a, size_t t0, size_t nt, float* out) {
  int4_groups<DType::W4A16>(row, a, t0, nt, out);
}

void w4a8(const uint8_t* row, const Activations& a, size_t t0, size_t nt, float* out) {
  int4_groups<DType::W4A8>(row, a, t0, nt, out);
}

}  // namespace dot_baseline

bool has_row_dot(DType t) { return traits(t).act != ActPrep::None; }

void prepare_activations(DType t, uint32_t group, const float* x, size_t tokens, size_t cols,
                         const float* input_scale, Activations& a) {
  const ActPrep kind = traits(t).act;
  if (kind == ActPrep::None) {
    throw std::invalid_argument(std::string("prepare_activations: no quantized dot for ") + model::dtype_name(t));
  }
  a.dtype = t;
  a.tokens = tokens;
  a.cols = cols;
  a.group = group;
  a.stride = (cols + 31) / 32 * 32;
  const size_t blocks = a.stride / 32;
  std::vector<float> row(a.stride, 0.0f);
  const bool blocks8 = kind == ActPrep::Q8Blocks || kind == ActPrep::Q8BlocksQ4;
  const bool ints = blocks8 || kind == ActPrep::I8PerToken;
  a.q.assign(ints ? tokens * a.stride : 0, 0);
  a.f.assign(ints ? 0 : tokens * a.stride, 0.0f);
  a.block_scale.assign(blocks8 ? tokens * blocks : 0, 0.0f);
  a.q4_offset.assign(kind == ActPrep::Q8BlocksQ4 ? tokens * blocks * 16 : 0, 0);
  a.token_scale.assign(tokens, 0.0f);
  for (size_t tok = 0; tok < tokens; ++tok) {
    const float* xt = x + tok * cols;
    for (size_t i = 0; i < cols; ++i) row[i] = input_scale ? xt[i] * input_scale[i] : xt[i];
    int8_t* q = ints ? a.q.data() + tok * a.stride : nullptr;
    float* f = ints ? nullptr : a.f.data() + tok * a.stride;
    switch (kind) {
      case ActPrep::Q8Blocks:
      case ActPrep::Q8BlocksQ4:
        q8_0_token(row.data(), cols, q, a.block_scale.data() + tok * blocks);
        if (kind == ActPrep::Q8BlocksQ4) {
          int16_t* off = a.q4_offset.data() + tok * blocks * 16;
          for (size_t i = 0; i < blocks * 16; ++i) off[i] = static_cast<int16_t>(8 * (q[2 * i] + q[2 * i + 1]));
        }
        break;
      case ActPrep::I8PerToken: {
        const float sx = abs_max(row.data(), cols) / 127.0f;
        a.token_scale[tok] = sx;
        for (size_t i = 0; i < cols; ++i) q[i] = sx != 0.0f ? static_cast<int8_t>(std::nearbyint(row[i] / sx)) : 0;
        break;
      }
      case ActPrep::E4M3PerToken: {
        const float sx = abs_max(row.data(), cols) / kFp8Max;
        a.token_scale[tok] = sx;
        for (size_t i = 0; i < cols; ++i) f[i] = sx != 0.0f ? fp8_to_f32(f32_to_fp8(row[i] / sx)) : 0.0f;
        break;
      }
      default:  // ActPrep::F32
        std::copy(row.begin(), row.end(), f);
        break;
    }
  }
}

}  // namespace fineserve::quant
