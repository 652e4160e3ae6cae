// The portable attention kernels (every level without its own falls back here by resolve_kernel's
// rule) and the per-level table lookup. Plain multiply and add: the baseline build has no FMA.
#include "ops/attention_kernels.h"

#include <cmath>
#include <cstring>
#include <limits>

#include "kv/kv_codec.h"
#include "ops/attention_exp2.h"

namespace fineserve::ops {

#if defined(FINESERVE_HAVE_AVX2)
extern const AttnKernels kAvx2Attn;  // attention_avx2.cc
#endif

namespace {

constexpr uint32_t kLanes = 8;

float exp2_scalar(float x) {
  using namespace exp2_poly;
  const bool zero = !(x >= kMin);  // NaN too: never reached by finite scores
  x = x > kMax ? kMax : (x < kMin ? kMin : x);
  const float n = std::nearbyint(x), f = x - n;
  float p = kC[7];
  for (int k = 6; k >= 0; --k) p = p * f + kC[k];
  const uint32_t bits = static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return zero ? 0.0f : p * scale;
}

void fp8_row(const uint8_t* codes, size_t n, const float* ref, float* dst) {
  if (ref == nullptr) {
    kv::decode_row(codes, nullptr, kv::KvFormat::Fp8E4M3, static_cast<uint32_t>(n), dst);
  } else {
    kv::decode_k_fp8(codes, ref, static_cast<uint32_t>(n), dst);
  }
}

void int4_k_row(const uint8_t* codes, const float* step, const float* minimum, size_t n, float* dst) {
  kv::decode_k_int4(codes, step, minimum, static_cast<uint32_t>(n), dst);
}

// kv::decode_row's int4 case takes the scale as its stored f16; this one as the float it stands for.
void int4_v_row(const uint8_t* codes, float scale, size_t n, float* dst) {
  for (size_t i = 0; i < n / 2; ++i) {
    const auto b = static_cast<int8_t>(codes[i]);
    dst[2 * i] = scale * static_cast<float>(static_cast<int8_t>(b << 4) >> 4);  // arithmetic shifts sign-extend
    dst[2 * i + 1] = scale * static_cast<float>(b >> 4);
  }
}

void transpose(const float* rows, size_t n, size_t d, float* kt, size_t kp) {
  for (size_t c = 0; c < d; ++c) {
    for (size_t i = 0; i < kp; ++i) kt[c * kp + i] = i < n ? rows[i * d + c] : 0.0f;
  }
}

void scores(const float* q, size_t rows, size_t d, const float* kt, size_t kp, float* s) {
  for (size_t r = 0; r < rows; ++r) {
    float* sr = s + r * kp;
    for (size_t i = 0; i < kp; ++i) sr[i] = 0;
    for (size_t c = 0; c < d; ++c) {
      const float qc = q[r * d + c];
      const float* kc = kt + c * kp;
      for (size_t i = 0; i < kp; ++i) sr[i] = sr[i] + qc * kc[i];
    }
  }
}

float softmax(float* s, size_t kp, size_t n, float* m, float* l) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  float mx = kNegInf;
  for (size_t i = 0; i < n; ++i) mx = s[i] > mx ? s[i] : mx;
  const float m_new = *m > mx ? *m : mx;
  const float alpha = *m == kNegInf ? 0.0f : *m == m_new ? 1.0f : exp2_scalar(*m - m_new);  // exp2(0) == 1
  // Lane sums in the AVX2 kernel's order: one partial per lane position, then a pairwise tree.
  float part[kLanes] = {};
  for (size_t i = 0; i < kp; ++i) {
    s[i] = i < n ? exp2_scalar(s[i] - m_new) : 0.0f;
    part[i % kLanes] += s[i];
  }
  const float sum = ((part[0] + part[4]) + (part[2] + part[6])) + ((part[1] + part[5]) + (part[3] + part[7]));
  *l = *l * alpha + sum;
  *m = m_new;
  return alpha;
}

void accumulate(const float* p, size_t kp, const float* alpha, const uint32_t* n, size_t rows, const float* v,
                size_t d, float* acc) {
  for (size_t r = 0; r < rows; ++r) {
    float* a = acc + r * d;
    if (alpha[r] != 1.0f) {
      for (size_t c = 0; c < d; ++c) a[c] *= alpha[r];
    }
    for (uint32_t i = 0; i < n[r]; ++i) {
      const float w = p[r * kp + i];
      const float* vi = v + i * d;
      for (size_t c = 0; c < d; ++c) a[c] = a[c] + w * vi[c];
    }
  }
}

const AttnKernels kBaselineAttn{kLanes, fp8_row, int4_k_row, int4_v_row, transpose, scores, softmax, accumulate};

}  // namespace

const AttnKernels& attn_kernels(simd::Level level) {
  const AttnKernels* by_level[simd::kLevelCount] = {&kBaselineAttn};
#if defined(FINESERVE_HAVE_AVX2)
  by_level[static_cast<int>(simd::Level::Avx2)] = &kAvx2Attn;
#endif
  if (simd::kernels_for(level) == nullptr) return kBaselineAttn;  // not compiled in, or not this host's
  return *simd::resolve_kernel(by_level, level);
}

}  // namespace fineserve::ops
