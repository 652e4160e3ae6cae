// A naive float64 Llama-family forward, the yardstick the CPU executor is measured against. It
// shares no code with cpp/core/engine or cpp/core/simd: its own F16/BF16 decoding, its own RoPE
// (including Llama 3 scaling as Hugging Face's _compute_llama3_parameters does it), attention
// over the whole sequence with no cache. Everything is computed in double from position 0.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "model/llama_config.h"
#include "model/llama_weights.h"

namespace fineserve::reference {

using model::DType;
using model::LlamaConfig;
using model::LlamaWeights;
using model::TensorView;

inline double decode_f16(uint16_t h) {
  const int exp = (h >> 10) & 0x1f;
  const int mant = h & 0x3ff;
  const double sign = (h & 0x8000) ? -1.0 : 1.0;
  if (exp == 0) return sign * std::ldexp(mant, -24);
  if (exp == 31) return mant == 0 ? sign * INFINITY : NAN;
  return sign * std::ldexp(1024 + mant, exp - 25);
}

inline double decode_bf16(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Elements [first, first + n) of a tensor (row-major, as the files hold it) as doubles.
inline void read_elements(const TensorView& t, uint64_t first, uint64_t n, double* out) {
  if (first + n > t.elements()) throw std::out_of_range("reference: read past the end of " + t.name);
  static const std::vector<double> f16_table = [] {
    std::vector<double> table(65536);
    for (uint32_t i = 0; i < 65536; ++i) table[i] = decode_f16(static_cast<uint16_t>(i));
    return table;
  }();
  const uint64_t size = t.dtype == DType::F32 ? 4 : 2;
  for (uint64_t i = 0; i < n; ++i) {
    const uint8_t* p = t.data + (first + i) * size;
    switch (t.dtype) {
      case DType::F32: {
        float f;
        std::memcpy(&f, p, 4);
        out[i] = f;
        break;
      }
      case DType::F16: {
        uint16_t h;
        std::memcpy(&h, p, 2);
        out[i] = f16_table[h];
        break;
      }
      case DType::BF16: {
        uint16_t h;
        std::memcpy(&h, p, 2);
        out[i] = decode_bf16(h);
        break;
      }
      default:
        // The float64 reference reads float files only; quantized tensors are compared after dequantisation.
        throw std::invalid_argument("reference: tensor " + t.name + " is not a float tensor");
    }
  }
}

inline std::vector<double> read_all(const TensorView& t) {
  std::vector<double> v(t.elements());
  read_elements(t, 0, v.size(), v.data());
  return v;
}

using Rows = std::vector<std::vector<double>>;  // [position][features]

// y[t] = W x[t] (+ b), W {out, in}. Output rows are split across `threads`; each W row is decoded
// once and used for every position.
inline Rows matmul(const TensorView& w, const TensorView* bias, const Rows& x, unsigned threads) {
  const uint64_t out = w.rows(), in = w.cols();
  Rows y(x.size(), std::vector<double>(out));
  std::vector<double> b = bias != nullptr && bias->data != nullptr ? read_all(*bias) : std::vector<double>();
  auto work = [&](uint64_t begin, uint64_t end) {
    std::vector<double> row(in);
    for (uint64_t o = begin; o < end; ++o) {
      read_elements(w, o * in, in, row.data());
      for (size_t t = 0; t < x.size(); ++t) {
        const double* xt = x[t].data();
        double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        uint64_t i = 0;
        for (; i + 4 <= in; i += 4) {
          a0 += row[i] * xt[i];
          a1 += row[i + 1] * xt[i + 1];
          a2 += row[i + 2] * xt[i + 2];
          a3 += row[i + 3] * xt[i + 3];
        }
        for (; i < in; ++i) a0 += row[i] * xt[i];
        y[t][o] = (a0 + a1) + (a2 + a3) + (b.empty() ? 0.0 : b[o]);
      }
    }
  };
  if (threads <= 1 || out < 64) {
    work(0, out);
  } else {
    std::vector<std::thread> pool;
    for (unsigned k = 0; k < threads; ++k) pool.emplace_back(work, out * k / threads, out * (k + 1) / threads);
    for (std::thread& th : pool) th.join();
  }
  return y;
}

inline Rows rms_norm(const Rows& x, const TensorView& weight, double eps) {
  std::vector<double> w = read_all(weight);
  Rows y = x;
  for (std::vector<double>& r : y) {
    double ss = 0;
    for (double v : r) ss += v * v;
    double inv = 1.0 / std::sqrt(ss / static_cast<double>(r.size()) + eps);
    for (size_t i = 0; i < r.size(); ++i) r[i] = r[i] * inv * w[i];
  }
  return y;
}

// Inverse frequency of each rotary pair, Llama 3 scaling applied as HF's _compute_llama3_parameters.
inline std::vector<double> rope_inv_freq(const LlamaConfig& c) {
  std::vector<double> f(c.head_dim / 2);
  for (uint32_t i = 0; i < c.head_dim / 2; ++i) {
    f[i] = 1.0 / std::pow(static_cast<double>(c.rope_theta), 2.0 * i / c.head_dim);
  }
  if (c.rope_scaling.type == "llama3") {
    const model::RopeScaling& s = c.rope_scaling;
    const double factor = s.factor, low = s.low_freq_factor, high = s.high_freq_factor;
    const double old_ctx = s.original_max_position;
    const double low_wavelen = old_ctx / low, high_wavelen = old_ctx / high;
    for (double& inv : f) {
      const double wavelen = 2 * M_PI / inv;
      if (wavelen > low_wavelen) {
        inv = inv / factor;
      } else if (wavelen >= high_wavelen) {
        const double smooth = (old_ctx / wavelen - low) / (high - low);
        inv = (1 - smooth) * inv / factor + smooth * inv;
      }
    }
  } else if (c.rope_scaling.type != "none") {
    throw std::invalid_argument("reference: rope scaling \"" + c.rope_scaling.type + "\" not implemented");
  }
  return f;
}

inline void rope(double* v, uint32_t heads, uint32_t head_dim, uint32_t position, model::RopeStyle style,
                 const std::vector<double>& inv_freq) {
  const uint32_t half = head_dim / 2;
  for (uint32_t h = 0; h < heads; ++h) {
    double* x = v + static_cast<size_t>(h) * head_dim;
    for (uint32_t i = 0; i < half; ++i) {
      const double angle = position * inv_freq[i];
      const double c = std::cos(angle), s = std::sin(angle);
      const uint32_t a = style == model::RopeStyle::Interleaved ? 2 * i : i;
      const uint32_t b = style == model::RopeStyle::Interleaved ? 2 * i + 1 : i + half;
      const double x0 = x[a], x1 = x[b];
      x[a] = x0 * c - x1 * s;
      x[b] = x0 * s + x1 * c;
    }
  }
}

// Logits (vocab_size doubles) of the last position, or of every position when `every_position`.
inline Rows forward(const LlamaConfig& c, const LlamaWeights& w, const std::vector<int32_t>& tokens,
                    bool every_position = false, unsigned threads = 1) {
  const size_t n = tokens.size(), hidden = c.hidden_size, hd = c.head_dim;
  if (n == 0) throw std::invalid_argument("reference: no tokens");
  if (c.num_heads % c.num_kv_heads != 0) throw std::invalid_argument("reference: heads not a multiple of kv heads");
  const uint32_t group = c.num_heads / c.num_kv_heads;
  const std::vector<double> inv_freq = rope_inv_freq(c);

  Rows x(n, std::vector<double>(hidden));
  for (size_t t = 0; t < n; ++t) {
    if (tokens[t] < 0 || static_cast<uint32_t>(tokens[t]) >= c.vocab_size) throw std::out_of_range("reference: token");
    read_elements(w.token_embedding, static_cast<uint64_t>(tokens[t]) * hidden, hidden, x[t].data());
  }

  for (const model::LlamaLayerWeights& lw : w.layers) {
    Rows xn = rms_norm(x, lw.attn_norm, c.rms_norm_eps);
    Rows q = matmul(lw.wq, &lw.bq, xn, threads);
    Rows k = matmul(lw.wk, &lw.bk, xn, threads);
    Rows v = matmul(lw.wv, &lw.bv, xn, threads);
    for (size_t t = 0; t < n; ++t) {
      rope(q[t].data(), c.num_heads, c.head_dim, static_cast<uint32_t>(t), c.rope_style, inv_freq);
      rope(k[t].data(), c.num_kv_heads, c.head_dim, static_cast<uint32_t>(t), c.rope_style, inv_freq);
    }
    Rows attn(n, std::vector<double>(static_cast<size_t>(c.num_heads) * hd));
    const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
    std::vector<double> p(n);
    for (size_t t = 0; t < n; ++t) {
      for (uint32_t h = 0; h < c.num_heads; ++h) {
        const size_t qo = h * hd, ko = (h / group) * hd;
        double max = -INFINITY;
        for (size_t j = 0; j <= t; ++j) {
          double s = 0;
          for (size_t d = 0; d < hd; ++d) s += q[t][qo + d] * k[j][ko + d];
          p[j] = s * scale;
          max = std::max(max, p[j]);
        }
        double sum = 0;
        for (size_t j = 0; j <= t; ++j) sum += (p[j] = std::exp(p[j] - max));
        for (size_t j = 0; j <= t; ++j) {
          for (size_t d = 0; d < hd; ++d) attn[t][qo + d] += p[j] / sum * v[j][ko + d];
        }
      }
    }
    Rows o = matmul(lw.wo, nullptr, attn, threads);
    for (size_t t = 0; t < n; ++t) {
      for (size_t i = 0; i < hidden; ++i) x[t][i] += o[t][i];
    }

    xn = rms_norm(x, lw.ffn_norm, c.rms_norm_eps);
    Rows gate = matmul(lw.w_gate, nullptr, xn, threads);
    Rows up = matmul(lw.w_up, nullptr, xn, threads);
    for (size_t t = 0; t < n; ++t) {
      for (size_t i = 0; i < gate[t].size(); ++i) {
        const double g = gate[t][i];
        gate[t][i] = g / (1.0 + std::exp(-g)) * up[t][i];
      }
    }
    Rows down = matmul(lw.w_down, nullptr, gate, threads);
    for (size_t t = 0; t < n; ++t) {
      for (size_t i = 0; i < hidden; ++i) x[t][i] += down[t][i];
    }
  }

  Rows last = every_position ? x : Rows{x.back()};
  return matmul(w.output, nullptr, rms_norm(last, w.output_norm, c.rms_norm_eps), threads);
}

}  // namespace fineserve::reference
