// Quantizers of the GGUF K-quant super-blocks (layouts in weight_format.h): Q4_K and Q6_K, written
// from the algorithms of llama.cpp's reference quantizers (ggml-quants.c, quantize_row_q4_K_ref and
// quantize_row_q6_K_ref, the ones llama-quantize runs when no importance matrix is given), step for
// step in float, so the blocks are the ones llama-quantize makes from the same floats.
//
// Q4_K: each sub-block of 32 gets an asymmetric 4-bit code x ~ scale * q - min, found by a small
// weighted least-squares search (search_scale_min below); the eight scales and the eight mins are
// then themselves quantized to 6 bits against the super-block's largest (d, dmin in f16), and the
// codes are chosen again against those rounded values.
// Q6_K: each sub-block of 16 gets a symmetric 6-bit code x ~ scale * q (q in -32..31) from a search
// over nearby reciprocal scales weighted by x^2 (search_symmetric_scale); the sixteen scales become
// int8 against the super-block's largest (d in f16), and the codes are chosen again.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "quant/kquant_scales.h"
#include "quant/row_kernels.h"
#include "simd/half.h"

namespace fineserve::quant {
namespace {

constexpr int kSuper = 256;
// Below this a sub-block's largest value counts as zero (ggml's GROUP_MAX_EPS).
constexpr float kGroupMaxEps = 1e-15f;

// Round half to even, as ggml's nearest_int (the float trick it uses rounds that way too).
int nearest(float v) { return static_cast<int>(std::nearbyint(v)); }

void put_f16(uint8_t* p, float v) {
  const uint16_t h = simd::f32_to_f16_scalar(v);
  std::memcpy(p, &h, 2);
}
float f16_round(float v) { return simd::f16_to_f32_scalar(simd::f32_to_f16_scalar(v)); }

// The best (scale, min) for x ~ scale * q - min with q in 0..nmax, min >= 0 (so zero is always
// representable), under the weighted squared error. Starts from the plain min/max mapping, then
// tries nstep + 1 stretched grids (nmax + rmin + rdelta * k steps over the range), solving the 2x2
// least-squares problem for each grid's codes and keeping the best. Returns the scale; the codes
// go to q, the min to *min_out. (make_qkx2_quants, without the absolute-error option.)
float search_scale_min(const float* x, const float* w, int n, int nmax, float rmin, float rdelta, int nstep,
                       uint8_t* q, float* min_out) {
  float lo = x[0], hi = x[0];
  float sum_w = w[0], sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
    sum_w += w[i];
    sum_x += w[i] * x[i];
  }
  if (lo > 0) lo = 0;
  if (hi == lo) {
    std::fill(q, q + n, uint8_t{0});
    *min_out = -lo;
    return 0.0f;
  }
  float inv = nmax / (hi - lo);
  float scale = 1 / inv;
  float best = 0;
  for (int i = 0; i < n; ++i) {
    q[i] = static_cast<uint8_t>(std::clamp(nearest(inv * (x[i] - lo)), 0, nmax));
    const float diff = scale * q[i] + lo - x[i];
    best += w[i] * (diff * diff);
  }
  uint8_t trial[32];
  for (int step = 0; step <= nstep; ++step) {
    inv = (rmin + rdelta * step + nmax) / (hi - lo);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::clamp(nearest(inv * (x[i] - lo)), 0, nmax);
      trial[i] = static_cast<uint8_t>(l);
      sum_l += w[i] * l;
      sum_l2 += w[i] * l * l;
      sum_xl += w[i] * l * x[i];
    }
    const float det = sum_w * sum_l2 - sum_l * sum_l;
    if (det <= 0) continue;
    float this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
    float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
    if (this_min > 0) {  // an offset above zero would leave zero unrepresentable: fit scale alone
      this_min = 0;
      this_scale = sum_xl / sum_l2;
    }
    float err = 0;
    for (int i = 0; i < n; ++i) {
      const float diff = this_scale * trial[i] + this_min - x[i];
      err += w[i] * (diff * diff);
    }
    if (err < best) {
      std::copy(trial, trial + n, q);
      best = err;
      scale = this_scale;
      lo = this_min;
    }
  }
  *min_out = -lo;
  return scale;
}

// The scale for x ~ scale * q with q in -nmax..nmax-1, the value of largest magnitude mapped to
// -nmax; tries reciprocal scales -(nmax + 0.1 k) / max for k = -9..9 and keeps the one with the
// best x^2-weighted least-squares fit. Codes (offset by nmax) go to q. (make_qx_quants with
// rmse_type 1 and no importance weights.)
float search_symmetric_scale(const float* x, int n, int nmax, int8_t* q) {
  float max = 0, amax = 0;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < kGroupMaxEps) {
    std::fill(q, q + n, int8_t{0});
    return 0.0f;
  }
  auto code = [&](float inv, int i) { return std::clamp(nearest(inv * x[i]), -nmax, nmax - 1); };
  float inv = -nmax / max;
  float sum_lx = 0, sum_l2 = 0;
  for (int i = 0; i < n; ++i) {
    const int l = code(inv, i);
    q[i] = static_cast<int8_t>(l + nmax);
    const float w = x[i] * x[i];
    sum_lx += w * x[i] * l;
    sum_l2 += w * l * l;
  }
  float scale = sum_l2 != 0 ? sum_lx / sum_l2 : 0.0f;
  float best = scale * sum_lx;
  for (int k = -9; k <= 9; ++k) {
    if (k == 0) continue;
    inv = -(nmax + 0.1f * k) / max;
    sum_lx = sum_l2 = 0;
    for (int i = 0; i < n; ++i) {
      const int l = code(inv, i);
      const float w = x[i] * x[i];
      sum_lx += w * x[i] * l;
      sum_l2 += w * l * l;
    }
    // Maximising sum_lx^2 / sum_l2 is minimising the fitted squared error.
    if (sum_l2 > 0 && sum_lx * sum_lx > best * sum_l2) {
      for (int i = 0; i < n; ++i) q[i] = static_cast<int8_t>(code(inv, i) + nmax);
      scale = sum_lx / sum_l2;
      best = scale * sum_lx;
    }
  }
  return scale;
}

// Packs the 6-bit scale and min of sub-block j into Q4_K's 12 scale bytes.
void put_q4_k_scale_min(uint8_t* s, int j, uint8_t sc, uint8_t m) {
  if (j < 4) {
    s[j] = sc;
    s[j + 4] = m;
  } else {
    s[j + 4] = static_cast<uint8_t>((sc & 15) | (m & 15) << 4);
    s[j - 4] |= static_cast<uint8_t>((sc >> 4) << 6);
    s[j] |= static_cast<uint8_t>((m >> 4) << 6);
  }
}

void q4_k_block(const float* x, uint8_t* out) {
  uint8_t codes[kSuper];
  float scales[8], mins[8], w[32];
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < 8; ++j) {
    const float* xs = x + 32 * j;
    // Weights: the sub-block's RMS plus each value's magnitude, so large values fit best.
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += xs[l] * xs[l];
    const float rms = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) w[l] = rms + std::fabs(xs[l]);
    scales[j] = search_scale_min(xs, w, 32, 15, -1.0f, 0.1f, 20, codes + 32 * j, &mins[j]);
    max_scale = std::max(max_scale, scales[j]);
    max_min = std::max(max_min, mins[j]);
  }
  uint8_t* sc = out + 4;
  const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
  const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
  for (int j = 0; j < 8; ++j) {
    // ggml stores these through uint8_t before clamping; the values are in 0..63 (+1 at most).
    const uint8_t ls = std::min<uint8_t>(63, static_cast<uint8_t>(nearest(inv_scale * scales[j])));
    const uint8_t lm = std::min<uint8_t>(63, static_cast<uint8_t>(nearest(inv_min * mins[j])));
    put_q4_k_scale_min(sc, j, ls, lm);
  }
  put_f16(out, max_scale / 63.0f);
  put_f16(out + 2, max_min / 63.0f);
  // The codes again, against the scales and mins as the decoder will see them.
  const float d_all = f16_round(max_scale / 63.0f), dmin_all = f16_round(max_min / 63.0f);
  for (int j = 0; j < 8; ++j) {
    int ls, lm;
    q4_k_scale_min(sc, j, &ls, &lm);
    const float d = d_all * ls;
    if (d == 0) continue;  // keeps the search's codes (they decode to -dmin * m either way)
    const float dm = dmin_all * lm;
    for (int l = 0; l < 32; ++l) codes[32 * j + l] = static_cast<uint8_t>(std::clamp(nearest((x[32 * j + l] + dm) / d), 0, 15));
  }
  uint8_t* qs = out + 16;
  for (int j = 0; j < kSuper; j += 64, qs += 32) {
    for (int l = 0; l < 32; ++l) qs[l] = static_cast<uint8_t>(codes[j + l] | codes[j + l + 32] << 4);
  }
}

void q6_k_block(const float* x, uint8_t* out) {
  int8_t codes[kSuper];
  float scales[16];
  float max_scale = 0, max_abs_scale = 0;
  for (int j = 0; j < 16; ++j) {
    scales[j] = search_symmetric_scale(x + 16 * j, 16, 32, codes + 16 * j);
    if (std::fabs(scales[j]) > max_abs_scale) {
      max_abs_scale = std::fabs(scales[j]);
      max_scale = scales[j];
    }
  }
  if (max_abs_scale < kGroupMaxEps) return;  // all zero: the zeroed block (d = 0) is the encoding
  // The largest scale maps to -128, so the int8 sub-block scales use the full range on its side.
  const float inv = -128.0f / max_scale;
  int8_t* sc = reinterpret_cast<int8_t*>(out + 192);
  put_f16(out + 208, 1 / inv);
  const float d_all = f16_round(1 / inv);
  for (int j = 0; j < 16; ++j) sc[j] = static_cast<int8_t>(std::min(127, nearest(inv * scales[j])));
  for (int j = 0; j < 16; ++j) {
    const float d = d_all * sc[j];
    if (d == 0) continue;
    for (int l = 0; l < 16; ++l) codes[16 * j + l] = static_cast<int8_t>(std::clamp(nearest(x[16 * j + l] / d), -32, 31) + 32);
  }
  uint8_t* ql = out;
  uint8_t* qh = out + 128;
  for (int j = 0; j < kSuper; j += 128, ql += 64, qh += 32) {
    const int8_t* c = codes + j;
    for (int l = 0; l < 32; ++l) {
      ql[l] = static_cast<uint8_t>((c[l] & 15) | (c[l + 64] & 15) << 4);
      ql[l + 32] = static_cast<uint8_t>((c[l + 32] & 15) | (c[l + 96] & 15) << 4);
      qh[l] = static_cast<uint8_t>((c[l] >> 4) | (c[l + 32] >> 4) << 2 | (c[l + 64] >> 4) << 4 | (c[l + 96] >> 4) << 6);
    }
  }
}

}  // namespace

namespace encode {

void q4_k(const float* x, uint64_t cols, uint32_t, uint8_t* dst) {
  for (uint64_t b = 0; b < cols / kSuper; ++b) q4_k_block(x + b * kSuper, dst + b * 144);
}

void q6_k(const float* x, uint64_t cols, uint32_t, uint8_t* dst) {
  for (uint64_t b = 0; b < cols / kSuper; ++b) q6_k_block(x + b * kSuper, dst + b * 210);
}

}  // namespace encode
}  // namespace fineserve::quant
