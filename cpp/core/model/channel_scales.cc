// scale_layer(): K smoothing for int4 KV caches and the AWQ / SmoothQuant channel scale search.
#include "model/channel_scales.h"

#include <algorithm>
#include <cmath>

#include "ops/rows.h"
#include "quant/fp8.h"
#include "quant/quantize.h"
#include "quant/weight_format.h"
#include "simd/dispatch.h"

namespace fineserve::model {

namespace {

// The search evaluates each candidate on at most this many calibration rows and this many output
// rows per linear (evenly strided): the error estimate stays unbiased and the search costs about
// 21 * 64 * 256 * in multiply-adds per linear, whatever the model's width.
constexpr uint32_t kSearchRows = 64;
constexpr uint64_t kSearchOutputs = 256;
constexpr int kAlphaGrid = 20;  // AWQ's n_grid: alpha in {0, 1/20, .., 19/20}
// FireQ clamps its K smoothing factors so no channel is stretched beyond int4's reach.
constexpr float kMaxKFactor = 16.0f;

std::vector<float> read_f32(const TensorView& t, engine::ThreadPool& pool) {
  std::vector<float> out(t.elements());
  if (t.data == nullptr) return {};
  const uint64_t cols = t.cols();
  pool.parallel_for(t.rows(), [&](size_t begin, size_t end) {
    ops::load_f32(t, begin * cols, (end - begin) * cols, out.data() + begin * cols);
  });
  return out;
}

// ---- K smoothing ---------------------------------------------------------------------------

// Per channel magnitude of a projection's output estimated from its weights: the RMS norm makes
// the input unit-RMS per token, so with roughly isotropic inputs |q_c| scales as the norm of
// row c of W with the norm's weights folded in. Used when there is no calibration data.
std::vector<float> weight_magnitudes(const std::vector<float>& w, uint64_t in, const std::vector<float>& norm) {
  const uint64_t out = w.size() / in;
  std::vector<float> m(out);
  for (uint64_t o = 0; o < out; ++o) {
    double ss = 0;
    for (uint64_t i = 0; i < in; ++i) {
      const double v = static_cast<double>(w[o * in + i]) * norm[i];
      ss += v * v;
    }
    m[o] = static_cast<float>(std::sqrt(ss));
  }
  return m;
}

// Partner of channel `d` within a head under RoPE: the channel it is rotated with.
uint32_t rope_partner(uint32_t d, uint32_t head_dim, RopeStyle style) {
  if (style == RopeStyle::Interleaved) return d ^ 1u;
  const uint32_t half = head_dim / 2;
  return d < half ? d + half : d - half;
}

// Factors per K channel, equal within a RoPE pair: K is divided by them, Q multiplied.
std::vector<float> k_factors(const LlamaConfig& c, const std::vector<float>& q_mag, const std::vector<float>& k_mag) {
  const uint32_t hd = c.head_dim, group = c.num_heads / c.num_kv_heads;
  std::vector<float> s(static_cast<size_t>(c.num_kv_heads) * hd, 1.0f);
  for (uint32_t h = 0; h < c.num_kv_heads; ++h) {
    for (uint32_t d = 0; d < hd; ++d) {
      const uint32_t p = rope_partner(d, hd, c.rope_style);
      const float km = std::max(k_mag[h * hd + d], k_mag[h * hd + p]);
      float qm = 0;
      for (uint32_t g = 0; g < group; ++g) {
        const size_t base = static_cast<size_t>(h * group + g) * hd;
        qm = std::max({qm, q_mag[base + d], q_mag[base + p]});
      }
      if (km > 0 && qm > 0 && std::isfinite(km / qm)) {
        s[h * hd + d] = std::clamp(std::sqrt(km / qm), 1.0f / kMaxKFactor, kMaxKFactor);
      }
    }
  }
  return s;
}

void smooth_k(const LlamaConfig& c, ScaledLayer& L, uint64_t hidden) {
  const uint32_t hd = c.head_dim, group = c.num_heads / c.num_kv_heads;
  for (size_t ch = 0; ch < L.k_factors.size(); ++ch) {
    const float s = L.k_factors[ch];
    if (s == 1.0f) continue;
    for (uint64_t i = 0; i < hidden; ++i) L.wk[ch * hidden + i] /= s;
    if (!L.bk.empty()) L.bk[ch] /= s;
    const size_t h = ch / hd, d = ch % hd;
    for (uint32_t g = 0; g < group; ++g) {
      const size_t qch = (h * group + g) * hd + d;
      for (uint64_t i = 0; i < hidden; ++i) L.wq[qch * hidden + i] *= s;
      if (!L.bq.empty()) L.bq[qch] *= s;
    }
  }
}

// ---- channel scale search ------------------------------------------------------------------

// Activations as the format's kernels see them (quant/weight_format.h): per token int8 (W8A8)
// or e4m3 (FP8, W4A8) with scale amax / qmax; f32 for W4A16.
void quantize_activations(DType t, float* x, size_t rows, size_t cols) {
  if (t == DType::W4A16) return;
  for (size_t r = 0; r < rows; ++r) {
    float* row = x + r * cols;
    float amax = 0;
    for (size_t c = 0; c < cols; ++c) amax = std::max(amax, std::fabs(row[c]));
    if (amax == 0) continue;
    if (t == DType::W8A8) {
      const float sx = amax / 127.0f;
      for (size_t c = 0; c < cols; ++c) row[c] = std::clamp(std::nearbyint(row[c] / sx), -127.0f, 127.0f) * sx;
    } else {
      const float sx = amax / quant::kFp8Max;
      for (size_t c = 0; c < cols; ++c) row[c] = quant::fp8_to_f32(quant::f32_to_fp8(row[c] / sx)) * sx;
    }
  }
}

struct Linear {
  std::vector<float>* w;  // {out, in}
  uint64_t out;
};

// One linear input and the linears that read it, with what the search needs.
class ScaleSearch {
 public:
  ScaleSearch(const QuantizeSpec& spec, const ChannelStats& stats, std::vector<Linear> linears, uint64_t in,
              engine::ThreadPool& pool)
      : spec_(spec), stats_(stats), linears_(std::move(linears)), in_(in), pool_(pool) {
    const uint32_t stride = std::max<uint32_t>(1, (stats.sample_rows + kSearchRows - 1) / kSearchRows);
    for (uint32_t r = 0; r < stats.sample_rows; r += stride) {
      x_.insert(x_.end(), stats.samples.begin() + r * in, stats.samples.begin() + (r + 1) * in);
    }
    rows_ = x_.size() / in;
    w_max_.assign(in, 0.0f);
    for (const Linear& l : linears_) {
      for (uint64_t o = 0; o < l.out; ++o) {
        for (uint64_t c = 0; c < in; ++c) w_max_[c] = std::max(w_max_[c], std::fabs((*l.w)[o * in + c]));
      }
    }
    for (const Linear& l : linears_) {
      const uint64_t step = std::max<uint64_t>(1, (l.out + kSearchOutputs - 1) / kSearchOutputs);
      std::vector<uint64_t> outs;
      for (uint64_t o = 0; o < l.out; o += step) outs.push_back(o);
      eval_rows_.push_back(std::move(outs));
    }
    // The exact outputs the candidates are measured against.
    for (size_t k = 0; k < linears_.size(); ++k) {
      exact_.emplace_back(rows_ * eval_rows_[k].size());
      for (size_t j = 0; j < eval_rows_[k].size(); ++j) {
        const float* w = linears_[k].w->data() + eval_rows_[k][j] * in_;
        for (size_t t = 0; t < rows_; ++t) exact_[k][t * eval_rows_[k].size() + j] = dot(x_.data() + t * in_, w);
      }
    }
  }

  // The per-channel factors s for `alpha`, or none for alpha < 0.
  std::vector<float> factors(float alpha) const {
    if (alpha < 0) return {};
    std::vector<float> s(in_);
    if (spec_.weights == DType::W4A16) {
      for (uint64_t c = 0; c < in_; ++c) s[c] = std::pow(std::max(static_cast<float>(stats_.mean_abs[c]), 1e-4f), alpha);
      const auto [lo, hi] = std::minmax_element(s.begin(), s.end());
      const float norm = std::sqrt(*lo * *hi);
      for (float& v : s) v /= norm;
    } else {
      for (uint64_t c = 0; c < in_; ++c) {
        s[c] = std::pow(std::max(stats_.max_abs[c], 1e-5f), alpha) / std::pow(std::max(w_max_[c], 1e-5f), 1 - alpha);
      }
    }
    return s;
  }

  // Squared output error of the quantized linears with factors s (empty: none) on the sample.
  double error(const std::vector<float>& s) const {
    std::vector<float> x = x_;
    if (!s.empty()) {
      for (size_t i = 0; i < x.size(); ++i) x[i] /= s[i % in_];
    }
    quantize_activations(spec_.weights, x.data(), rows_, in_);
    double total = 0;
    for (size_t k = 0; k < linears_.size(); ++k) {
      const std::vector<uint64_t>& outs = eval_rows_[k];
      std::vector<double> per_row(outs.size());
      pool_.parallel_for(outs.size(), [&](size_t begin, size_t end) {
        std::vector<float> w(in_), deq(in_);
        std::vector<uint8_t> q(quant::row_bytes(spec_.weights, in_, spec_.group));
        for (size_t j = begin; j < end; ++j) {
          const float* src = linears_[k].w->data() + outs[j] * in_;
          for (uint64_t c = 0; c < in_; ++c) w[c] = s.empty() ? src[c] : src[c] * s[c];
          quant::quantize_row(spec_.weights, w.data(), in_, spec_.group, q.data());
          quant::dequantize_row(spec_.weights, q.data(), in_, spec_.group, deq.data());
          double e = 0;
          for (size_t t = 0; t < rows_; ++t) {
            const double d = dot(x.data() + t * in_, deq.data()) - exact_[k][t * outs.size() + j];
            e += d * d;
          }
          per_row[j] = e;
        }
      });
      for (double e : per_row) total += e;
    }
    return total;
  }

  bool empty() const { return rows_ == 0; }

 private:
  // The SIMD kernel's float dot: its rounding (~1e-7 relative) is far below any format's step,
  // and the search compares candidates, all measured the same way.
  double dot(const float* a, const float* b) const { return simd::active().dot_f32(a, b, in_); }

  const QuantizeSpec& spec_;
  const ChannelStats& stats_;
  std::vector<Linear> linears_;
  uint64_t in_;
  engine::ThreadPool& pool_;
  std::vector<float> x_;
  size_t rows_ = 0;
  std::vector<float> w_max_;  // per input channel, over every linear of the input
  std::vector<std::vector<uint64_t>> eval_rows_;
  std::vector<std::vector<double>> exact_;
};

// Picks the factors for one input, multiplies the linears' columns by them and returns 1/s (the
// input_scale), or nothing when no scaling beats none.
std::vector<float> search_and_apply(const QuantizeSpec& spec, const ChannelStats& stats, std::vector<Linear> linears,
                                    uint64_t in, engine::ThreadPool& pool, const std::function<void()>& checkpoint,
                                    float* alpha_out) {
  ScaleSearch search(spec, stats, linears, in, pool);
  if (search.empty()) return {};
  float best_alpha = -1;
  double best = search.error({});
  for (int i = 0; i < kAlphaGrid; ++i) {
    if (checkpoint) checkpoint();
    const float alpha = static_cast<float>(i) / kAlphaGrid;
    const double e = search.error(search.factors(alpha));
    if (e < best) {
      best = e;
      best_alpha = alpha;
    }
  }
  *alpha_out = best_alpha;
  if (best_alpha < 0) return {};
  const std::vector<float> s = search.factors(best_alpha);
  for (const Linear& l : linears) {
    for (uint64_t o = 0; o < l.out; ++o) {
      for (uint64_t c = 0; c < in; ++c) (*l.w)[o * in + c] *= s[c];
    }
  }
  std::vector<float> inv(in);
  for (uint64_t c = 0; c < in; ++c) inv[c] = 1.0f / s[c];
  return inv;
}

}  // namespace

ScaledLayer scale_layer(const LoadedModel& model, uint32_t layer, const QuantizeSpec& spec,
                        const LayerCalibration* cal, engine::ThreadPool& pool, const std::function<void()>& checkpoint) {
  const LlamaConfig& c = model.config;
  const LlamaLayerWeights& lw = model.weights.layers.at(layer);
  const uint64_t hidden = c.hidden_size, ffn = c.intermediate_size;
  const uint64_t q_dim = static_cast<uint64_t>(c.num_heads) * c.head_dim;
  const uint64_t kv_dim = static_cast<uint64_t>(c.num_kv_heads) * c.head_dim;
  ScaledLayer L;
  L.wq = read_f32(lw.wq, pool);
  L.wk = read_f32(lw.wk, pool);
  L.wv = read_f32(lw.wv, pool);
  L.wo = read_f32(lw.wo, pool);
  L.w_gate = read_f32(lw.w_gate, pool);
  L.w_up = read_f32(lw.w_up, pool);
  L.w_down = read_f32(lw.w_down, pool);
  L.bq = read_f32(lw.bq, pool);
  L.bk = read_f32(lw.bk, pool);
  L.k_factors.assign(kv_dim, 1.0f);

  // K smoothing first: it rescales rows of W_q/W_k, which the column search then sees as they
  // will be quantized.
  if (spec.kv == kv::KvFormat::Int4 && spec.smooth_k) {
    const bool measured = cal != nullptr && cal->q_max.size() == q_dim && cal->k_max.size() == kv_dim;
    if (measured) {
      L.k_factors = k_factors(c, cal->q_max, cal->k_max);
    } else {
      const std::vector<float> norm = read_f32(lw.attn_norm, pool);
      L.k_factors = k_factors(c, weight_magnitudes(L.wq, hidden, norm), weight_magnitudes(L.wk, hidden, norm));
    }
    smooth_k(c, L, hidden);
  }

  if (cal != nullptr) {
    L.attn_scale = search_and_apply(spec, cal->attn_in, {{&L.wq, q_dim}, {&L.wk, kv_dim}, {&L.wv, kv_dim}}, hidden, pool,
                                    checkpoint, &L.alpha[0]);
    L.o_scale = search_and_apply(spec, cal->o_in, {{&L.wo, hidden}}, q_dim, pool, checkpoint, &L.alpha[1]);
    L.mlp_scale = search_and_apply(spec, cal->mlp_in, {{&L.w_gate, ffn}, {&L.w_up, ffn}}, hidden, pool, checkpoint,
                                   &L.alpha[2]);
    L.down_scale = search_and_apply(spec, cal->down_in, {{&L.w_down, hidden}}, ffn, pool, checkpoint, &L.alpha[3]);
  }
  return L;
}

}  // namespace fineserve::model
