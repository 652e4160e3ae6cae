// Post-training quantization at load (model/quantize_model.h): rounding accuracy against the
// formats' documented steps (quant/weight_format.h, recomputed here from the f32 rows), the
// channel transforms' exactness in double precision, K smoothing's invariance of q.k after RoPE,
// memory, progress, cancellation and errors. On generated "tiny" models and stories260K.
#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engine/thread_pool.h"
#include "model/channel_scales.h"
#include "model/generate.h"
#include "model/loader.h"
#include "model/model_error.h"
#include "model/quantize_model.h"
#include "model_test_files.h"
#include "quant/fp8.h"
#include "quant/quantize.h"
#include "quant/weight_format.h"
#include "reference_llama.h"

using namespace fineserve;
using model::DType;
using model::testing::TempDir;
namespace fs = std::filesystem;

namespace {

const DType kFormats[] = {DType::W8A8, DType::FP8, DType::W4A16, DType::W4A8};

std::string generate(const TempDir& dir, const std::string& shape, const std::string& format = "gguf",
                     DType dtype = DType::F32) {
  model::GenerateOptions o;
  o.shape = shape;
  o.dtype = dtype;
  o.format = format;
  o.seed = 7;
  o.out = (dir / (shape + "-" + model::dtype_name(dtype) + (format == "gguf" ? ".gguf" : ""))).string();
  model::generate_model(o);
  return o.out;
}

std::vector<std::vector<int32_t>> calibration_tokens(uint32_t vocab, uint32_t sequences, uint32_t length) {
  std::mt19937 rng(11);
  std::vector<std::vector<int32_t>> out(sequences);
  for (auto& s : out) {
    for (uint32_t i = 0; i < length; ++i) s.push_back(static_cast<int32_t>(rng() % vocab));
  }
  return out;
}

std::unique_ptr<model::LoadedModel> load(const std::string& path, const model::QuantizeSpec* spec = nullptr) {
  model::LoadOptions o;
  if (spec) o.quantize = *spec;
  return model::load_model(path, o);
}

std::vector<double> as_doubles(const model::TensorView& t) { return reference::read_all(t); }

// Half the spacing of the format's grid around w (in w's units), from the f32 row alone, per the
// layouts of quant/weight_format.h. `row` is the row the element belongs to.
struct StepBound {
  DType t;
  uint32_t group;
  std::vector<float> row;

  double half_step(uint64_t c) const {
    const uint64_t n = row.size();
    auto amax_of = [&](uint64_t b, uint64_t e) {
      double a = 0;
      for (uint64_t i = b; i < e; ++i) a = std::max(a, std::fabs(double(row[i])));
      return a;
    };
    switch (t) {
      case DType::W8A8: return amax_of(0, n) / 127 / 2 * (1 + 1e-6);
      case DType::FP8: {
        // e4m3 spacing at |w| / scale: 2^(e - 3) for normals, 2^-9 below 2^-6; scale = amax / 448.
        const double scale = amax_of(0, n) / 448, v = std::fabs(row[c]) / scale;
        const double spacing = v < 1.0 / 64 ? std::ldexp(1, -9) : std::ldexp(1, int(std::floor(std::log2(v))) - 3);
        return spacing * scale / 2 * (1 + 1e-6);
      }
      case DType::W4A16: {
        const uint64_t b = c / group * group, e = std::min(n, b + group);
        double lo = row[b], hi = row[b];
        for (uint64_t i = b; i < e; ++i) lo = std::min(lo, double(row[i])), hi = std::max(hi, double(row[i]));
        const double step = (hi - lo) / 15;
        // scale and min are stored as f16 (relative rounding 2^-11): q <= 15 steps of scale error
        // plus the min's own rounding.
        return step / 2 + 15 * step * std::ldexp(1, -11) + std::fabs(lo) * std::ldexp(1, -11) + 1e-12;
      }
      case DType::W4A8: {
        // Symmetric step amax_g / 7 under an e4m3 group scale: rounded up by at most 2^-3
        // (bumped rather than clipped), and never finer than e4m3's smallest subnormal 2^-9 times
        // the power-of-two row scale 2^ceil(log2(max_g(amax_g / 7) / 448)).
        double top = 0;
        for (uint64_t b = 0; b < n; b += group) top = std::max(top, amax_of(b, std::min(n, b + group)) / 7);
        const double row_scale = std::ldexp(1, int(std::ceil(std::log2(top / 448))));
        const uint64_t b = c / group * group;
        const double step = amax_of(b, std::min(n, b + group)) / 7 * (1 + 0.125);
        return std::max(step, std::ldexp(1, -9) * row_scale) / 2 * (1 + 1e-6);
      }
      default: return 0;
    }
  }
};

// Every element of the quantized view, decoded, within half a step of `want` (f32 rows {out,in}).
void check_rounding(const model::TensorView& q, const std::vector<float>& want, DType t, uint32_t group) {
  REQUIRE(q.dtype == t);
  const uint64_t rows = q.rows(), cols = q.cols();
  const uint64_t rb = quant::row_bytes(t, cols, group);
  REQUIRE(q.bytes == rows * rb);
  std::vector<float> got(cols);
  double worst = 0;  // error / bound
  for (uint64_t r = 0; r < rows; ++r) {
    quant::dequantize_row(t, q.data + r * rb, cols, group, got.data());
    StepBound sb{t, group, std::vector<float>(want.begin() + r * cols, want.begin() + (r + 1) * cols)};
    for (uint64_t c = 0; c < cols; ++c) {
      // Plus the decode's own f32 rounding of scale * q (a few ulps of the value).
      const double err = std::fabs(double(got[c]) - sb.row[c]);
      const double bound = sb.half_step(c) + std::fabs(sb.row[c]) * std::ldexp(1, -22);
      worst = std::max(worst, bound > 0 ? err / bound : (err > 0 ? INFINITY : 0));
    }
  }
  INFO(q.name << " " << std::string(model::dtype_name(t)) << ": worst error / half step = " << worst);
  CHECK(worst <= 1.0);
}

std::vector<float> to_f32(const model::TensorView& t) {
  std::vector<double> d = as_doubles(t);
  return std::vector<float>(d.begin(), d.end());
}

const model::TensorView* linear_of(const model::LlamaLayerWeights& lw, int k) {
  const model::TensorView* all[] = {&lw.wq, &lw.wk, &lw.wv, &lw.wo, &lw.w_gate, &lw.w_up, &lw.w_down};
  return all[k];
}
const std::vector<float>& scaled_of(const model::ScaledLayer& L, int k) {
  const std::vector<float>* all[] = {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down};
  return *all[k];
}

}  // namespace

TEST_CASE("quantize_model: RTN weights are within half a step of the originals (tiny, tiny-qwen2)") {
  TempDir dir;
  for (const char* shape : {"tiny", "tiny-qwen2"}) {
    const std::string path = generate(dir, shape, "gguf", DType::F16);
    auto plain = load(path);
    for (DType t : kFormats) {
      model::QuantizeSpec spec;
      spec.weights = t;
      spec.group = 32;  // hidden 64: two groups per row, so group boundaries are exercised
      auto q = load(path, &spec);
      const uint32_t group = t == DType::W4A16 || t == DType::W4A8 ? 32 : 0;
      for (size_t l = 0; l < q->weights.layers.size(); ++l) {
        for (int k = 0; k < 7; ++k) {
          INFO(std::string(shape));
          CAPTURE(l);
          const model::TensorView& v = *linear_of(q->weights.layers[l], k);
          CHECK(v.input_scale == nullptr);
          check_rounding(v, to_f32(*linear_of(plain->weights.layers[l], k)), t, group);
        }
      }
      // Embedding, norms and output stay as loaded.
      CHECK(q->weights.token_embedding.dtype == plain->weights.token_embedding.dtype);
      CHECK(q->weights.output.dtype == plain->weights.output.dtype);
      CHECK(q->weights.layers[0].attn_norm.dtype == DType::F32);
      REQUIRE(q->quantized.has_value());
      CHECK(q->quantized->weights == t);
    }
  }
}

TEST_CASE("quantize_model: calibrated weights are within half a step of the scaled originals") {
  TempDir dir;
  const std::string path = generate(dir, "tiny-qwen2", "hf");
  auto plain = load(path);
  engine::ThreadPool pool(2);
  const auto tokens = calibration_tokens(plain->config.vocab_size, 3, 24);
  model::Calibration cal = model::calibrate(*plain, tokens, pool);
  for (DType t : kFormats) {
    model::QuantizeSpec spec;
    spec.weights = t;
    spec.group = 32;
    spec.kv = kv::KvFormat::Int4;
    spec.calibration = tokens;
    auto q = load(path, &spec);
    const uint32_t group = t == DType::W4A16 || t == DType::W4A8 ? 32 : 0;
    for (uint32_t l = 0; l < plain->config.num_layers; ++l) {
      // scale_layer is deterministic: the same statistics give the same scaled f32 weights.
      model::ScaledLayer L = model::scale_layer(*plain, l, spec, &cal.layers[l], pool);
      for (int k = 0; k < 7; ++k) check_rounding(*linear_of(q->weights.layers[l], k), scaled_of(L, k), t, group);
      const float* scales[] = {L.attn_scale.empty() ? nullptr : L.attn_scale.data(),
                               L.o_scale.empty() ? nullptr : L.o_scale.data()};
      CHECK((q->weights.layers[l].wq.input_scale == nullptr) == (scales[0] == nullptr));
      CHECK(q->weights.layers[l].wq.input_scale == q->weights.layers[l].wv.input_scale);
      CHECK((q->weights.layers[l].wo.input_scale == nullptr) == (scales[1] == nullptr));
    }
  }
}

TEST_CASE("quantize_model: the channel transforms alone leave every linear's output unchanged") {
  TempDir dir;
  for (const char* shape : {"tiny", "tiny-qwen2"}) {
    const std::string path = generate(dir, shape, "hf");
    auto m = load(path);
    engine::ThreadPool pool(2);
    model::Calibration cal = model::calibrate(*m, calibration_tokens(m->config.vocab_size, 2, 32), pool);
    int scaled_inputs = 0;
    for (DType t : kFormats) {
      model::QuantizeSpec spec;
      spec.weights = t;
      spec.group = 32;
      spec.smooth_k = false;
      for (uint32_t l = 0; l < m->config.num_layers; ++l) {
        const model::LayerCalibration& lc = cal.layers[l];
        model::ScaledLayer L = model::scale_layer(*m, l, spec, &lc, pool);
        const model::LlamaLayerWeights& lw = m->weights.layers[l];
        // Each linear on its calibration samples, in double: W x against W' (x * input_scale).
        struct Case {
          int k;
          const model::ChannelStats* x;
          const std::vector<float>* scale;
        } cases[] = {{0, &lc.attn_in, &L.attn_scale}, {1, &lc.attn_in, &L.attn_scale}, {2, &lc.attn_in, &L.attn_scale},
                     {3, &lc.o_in, &L.o_scale},       {4, &lc.mlp_in, &L.mlp_scale},   {5, &lc.mlp_in, &L.mlp_scale},
                     {6, &lc.down_in, &L.down_scale}};
        for (const Case& cs : cases) {
          const std::vector<double> w = as_doubles(*linear_of(lw, cs.k));
          const std::vector<float>& w2 = scaled_of(L, cs.k);
          const uint64_t in = linear_of(lw, cs.k)->cols(), out = linear_of(lw, cs.k)->rows();
          REQUIRE(cs.x->sample_rows > 0);
          double diff = 0, norm = 0;
          for (uint32_t r = 0; r < std::min<uint32_t>(cs.x->sample_rows, 8); ++r) {
            const float* x = cs.x->samples.data() + r * in;
            for (uint64_t o = 0; o < out; ++o) {
              double a = 0, b = 0;
              for (uint64_t c = 0; c < in; ++c) {
                a += w[o * in + c] * x[c];
                b += double(w2[o * in + c]) * (double(x[c]) * (cs.scale->empty() ? 1.0 : double((*cs.scale)[c])));
              }
              diff = std::max(diff, std::fabs(a - b));
              norm = std::max(norm, std::fabs(a));
            }
          }
          if (!cs.scale->empty()) ++scaled_inputs;
          INFO(std::string(shape) << " " << std::string(model::dtype_name(t)) << " layer " << l << " linear " << cs.k);
          // f32 storage of W*s and of 1/s: a few float roundings per product.
          CHECK(diff <= 1e-5 * norm);
        }
      }
    }
    // The search must have chosen scaling somewhere, or this test checked nothing.
    CHECK(scaled_inputs > 0);
  }
}

TEST_CASE("quantize_model: K smoothing leaves q.k unchanged after RoPE and shrinks K's outliers") {
  TempDir dir;
  // tiny: GGUF llama, interleaved pairs; tiny-qwen2: HF, half-split pairs and q/k biases.
  for (auto [shape, format] : {std::pair{"tiny", "gguf"}, std::pair{"tiny-qwen2", "hf"}}) {
    const std::string path = generate(dir, shape, format);
    auto m = load(path);
    const model::LlamaConfig& c = m->config;
    engine::ThreadPool pool(2);
    model::Calibration cal = model::calibrate(*m, calibration_tokens(c.vocab_size, 2, 32), pool);
    model::QuantizeSpec spec;
    spec.weights = DType::W8A8;
    spec.kv = kv::KvFormat::Int4;
    for (bool calibrated : {true, false}) {
      for (uint32_t l = 0; l < c.num_layers; ++l) {
        const model::LlamaLayerWeights& lw = m->weights.layers[l];
        model::ScaledLayer L = model::scale_layer(*m, l, spec, calibrated ? &cal.layers[l] : nullptr, pool);
        CHECK(std::any_of(L.k_factors.begin(), L.k_factors.end(), [](float s) { return s != 1.0f; }));
        for (float s : L.k_factors) CHECK((s >= 1.0f / 16 && s <= 16.0f));
        const uint64_t hidden = c.hidden_size, hd = c.head_dim, group = c.num_heads / c.num_kv_heads;
        const std::vector<double> wq = as_doubles(lw.wq), wk = as_doubles(lw.wk);
        const std::vector<double> bq = lw.bq.data ? as_doubles(lw.bq) : std::vector<double>(wq.size() / hidden, 0.0);
        const std::vector<double> bk = lw.bk.data ? as_doubles(lw.bk) : std::vector<double>(wk.size() / hidden, 0.0);
        auto project = [&](auto&& w, auto&& b, const std::vector<double>& x) {
          std::vector<double> y(b.size());
          for (size_t o = 0; o < y.size(); ++o) {
            double a = b.empty() ? 0 : double(b[o]);
            for (uint64_t i = 0; i < hidden; ++i) a += double(w[o * hidden + i]) * x[i];
            y[o] = a;
          }
          return y;
        };
        std::vector<float> bq2 = L.bq.empty() ? std::vector<float>(bq.size(), 0.0f) : L.bq;
        std::vector<float> bk2 = L.bk.empty() ? std::vector<float>(bk.size(), 0.0f) : L.bk;
        const std::vector<double> inv_freq = reference::rope_inv_freq(c);
        std::mt19937 rng(l);
        std::normal_distribution<double> normal;
        double diff = 0, norm = 0;
        for (uint32_t trial = 0; trial < 3; ++trial) {
          std::vector<double> xq(hidden), xk(hidden);
          for (double& v : xq) v = normal(rng);
          for (double& v : xk) v = normal(rng);
          for (auto [pq, pk] : {std::pair{0u, 0u}, std::pair{7u, 3u}, std::pair{300u, 11u}}) {
            std::vector<double> q = project(wq, bq, xq), k = project(wk, bk, xk);
            // The column scaling of the attention input (chosen with calibration) rides along:
            // W' (x * input_scale) is W x up to rounding, checked by the test above.
            std::vector<double> xq2 = xq, xk2 = xk;
            for (size_t i = 0; i < L.attn_scale.size(); ++i) xq2[i] *= L.attn_scale[i], xk2[i] *= L.attn_scale[i];
            std::vector<double> q2 = project(L.wq, bq2, xq2), k2 = project(L.wk, bk2, xk2);
            for (auto* v : {&q, &q2}) reference::rope(v->data(), c.num_heads, c.head_dim, pq, c.rope_style, inv_freq);
            for (auto* v : {&k, &k2}) reference::rope(v->data(), c.num_kv_heads, c.head_dim, pk, c.rope_style, inv_freq);
            for (uint32_t h = 0; h < c.num_heads; ++h) {
              double a = 0, b = 0;
              const uint64_t kh = h / group;
              for (uint64_t d = 0; d < hd; ++d) {
                a += q[h * hd + d] * k[kh * hd + d];
                b += q2[h * hd + d] * k2[kh * hd + d];
              }
              diff = std::max(diff, std::fabs(a - b));
              norm = std::max(norm, std::fabs(a));
            }
          }
        }
        INFO(std::string(shape) << " layer " << l << (calibrated ? " calibrated" : " from weights") << ": " << diff << " / " << norm);
        CHECK(diff <= 1e-5 * norm);
        if (calibrated) {
          // K's largest channel relative to its median shrinks (the point of smoothing for int4).
          auto spread = [&](const std::vector<float>& kmax) {
            std::vector<float> v = kmax;
            std::sort(v.begin(), v.end());
            return v.back() / v[v.size() / 2];
          };
          std::vector<float> k_after(cal.layers[l].k_max.size());
          for (size_t ch = 0; ch < k_after.size(); ++ch) k_after[ch] = cal.layers[l].k_max[ch] / L.k_factors[ch];
          CHECK(spread(k_after) <= spread(cal.layers[l].k_max));
        }
      }
    }
  }
}

TEST_CASE("quantize_model: weight_bytes drops by the formats' sizes") {
  TempDir dir;
  const std::string path = generate(dir, "tiny");
  auto plain = load(path);
  const model::LlamaConfig& c = plain->config;
  uint64_t linear_elements = 0, linear_rows_bytes_f32 = 0;
  for (int k = 0; k < 7; ++k) linear_elements += linear_of(plain->weights.layers[0], k)->elements();
  linear_elements *= c.num_layers;
  linear_rows_bytes_f32 = linear_elements * 4;
  const uint64_t rest = plain->weight_bytes - linear_rows_bytes_f32;
  for (DType t : kFormats) {
    model::QuantizeSpec spec;
    spec.weights = t;
    spec.group = 32;
    auto q = load(path, &spec);
    // Row sizes from the layouts in weight_format.h: 16 header bytes + cols (W8A8, FP8); for the
    // 4-bit ones a group header padded to 16 bytes and 16 bytes per 32 elements.
    uint64_t want = rest;
    for (int k = 0; k < 7; ++k) {
      const model::TensorView& v = *linear_of(plain->weights.layers[0], k);
      const uint64_t cols = v.cols(), G = (cols + 31) / 32, S = (cols + 31) / 32;
      uint64_t row = 0;
      if (t == DType::W8A8 || t == DType::FP8) row = (16 + cols + 15) / 16 * 16;
      if (t == DType::W4A16) row = (4 * G + 15) / 16 * 16 + 16 * S;
      if (t == DType::W4A8) row = (4 + G + 15) / 16 * 16 + 16 * S;
      want += row * v.rows() * c.num_layers;
    }
    INFO(std::string(model::dtype_name(t)) << ": " << plain->weight_bytes << " -> " << q->weight_bytes);
    CHECK(q->weight_bytes == want);
  }
}

TEST_CASE("quantize_model: progress spans loading and quantization, and cancels in either") {
  TempDir dir;
  const std::string path = generate(dir, "tiny-qwen2");
  model::LoadOptions o;
  o.quantize = model::QuantizeSpec{};
  o.quantize->weights = DType::W4A16;
  o.quantize->group = 32;
  o.quantize->calibration = calibration_tokens(512, 2, 16);
  std::vector<double> seen;
  o.on_progress = [&](double f) {
    seen.push_back(f);
    return true;
  };
  auto m = model::load_model(path, o);
  REQUIRE(seen.size() > 4);
  for (size_t i = 1; i < seen.size(); ++i) CHECK(seen[i] >= seen[i - 1]);
  CHECK(seen.back() == 1.0);
  CHECK(seen.front() >= 0.0);
  CHECK(m->calibration_sequences == 2);

  // Past halfway the scan is long over (it is a small share of the work): cancelling there stops
  // the quantization phase.
  for (bool with_calibration : {true, false}) {
    if (!with_calibration) o.quantize->calibration.clear();
    o.check_finite = false;
    size_t calls_after = 0;
    o.on_progress = [&](double f) {
      if (f > 0.5) ++calls_after;
      return f <= 0.5;
    };
    model::testing::expect_error([&] { model::load_model(path, o); }, model::ModelErrc::Cancelled, {"quantization"});
    CHECK(calls_after == 1);
  }
}

TEST_CASE("quantize_model: bad specs and unquantizable sources are errors naming the field") {
  TempDir dir;
  const std::string path = generate(dir, "tiny");
  using model::ModelErrc;
  using model::testing::expect_error;
  auto with = [&](auto&& edit) {
    model::QuantizeSpec s;
    s.weights = DType::W4A16;
    edit(s);
    return [&path, s] { load(path, &s); };
  };
  expect_error(with([](model::QuantizeSpec& s) { s.weights = DType::Q8_0; }), ModelErrc::Unsupported,
               {"quantize.weights", "Q8_0"});
  expect_error(with([](model::QuantizeSpec& s) { s.weights = DType::Q4_0; }), ModelErrc::Unsupported,
               {"quantize.weights", "Q4_0"});
  expect_error(with([](model::QuantizeSpec& s) { s.group = 100; }), ModelErrc::Unsupported, {"quantize.group", "100"});
  expect_error(with([](model::QuantizeSpec& s) { s.group = 0; }), ModelErrc::Unsupported, {"quantize.group", "0"});
  expect_error(with([](model::QuantizeSpec& s) { s.calibration = {{1, 2}, {3, 512}}; }), ModelErrc::Unsupported,
               {"quantize.calibration[1][1]", "512"});
  expect_error(with([](model::QuantizeSpec& s) { s.calibration = {{}}; }), ModelErrc::Unsupported,
               {"quantize.calibration[0]", "empty"});
  // A source whose linear weights are already quantized.
  auto m = load(path);
  m->weights.layers[1].w_up.dtype = DType::Q8_0;
  model::QuantizeSpec s;
  expect_error([&] { model::check_quantizable(*m, s); }, ModelErrc::Unsupported, {m->weights.layers[1].w_up.name, "Q8_0"});
}

TEST_CASE("quantize_model: stories260K quantizes in both formats within half a step") {
  const fs::path gguf = model::testing::require_fixture("stories260K.gguf");
  const fs::path hf = model::testing::require_fixture("hf");
  engine::ThreadPool pool(1);
  for (const fs::path& p : {gguf, hf}) {
    auto plain = load(p.string());
    const auto tokens = calibration_tokens(plain->config.vocab_size, 2, 32);
    model::Calibration cal = model::calibrate(*plain, tokens, pool);
    for (DType t : {DType::W4A16, DType::W8A8}) {
      model::QuantizeSpec spec;
      spec.weights = t;
      spec.group = 64;  // ffn 172: a partial last group
      spec.kv = kv::KvFormat::Int4;
      spec.calibration = tokens;
      auto q = load(p.string(), &spec);
      CHECK(q->weight_bytes < plain->weight_bytes);
      const uint32_t group = t == DType::W4A16 ? 64 : 0;
      for (uint32_t l = 0; l < plain->config.num_layers; ++l) {
        model::ScaledLayer L = model::scale_layer(*plain, l, spec, &cal.layers[l], pool);
        for (int k = 0; k < 7; ++k) check_rounding(*linear_of(q->weights.layers[l], k), scaled_of(L, k), t, group);
      }
    }
  }
}

namespace {

// The value of x rounded to nearest even with `mantissa` fraction bits and exponents down to
// `min_exp` (subnormals below), computed in double with nearbyint: the definition, not the
// bit tricks of simd/half.h. Inputs here are far inside both types' ranges (no overflow).
double round_to_format(double x, int mantissa, int min_exp) {
  if (x == 0) return x;
  const int e = std::max(int(std::floor(std::log2(std::fabs(x)))), min_exp);
  const double ulp = std::ldexp(1.0, e - mantissa);
  return std::nearbyint(x / ulp) * ulp;
}

}  // namespace

TEST_CASE("quantize_model: fp16/bf16/fp32 conversions match round-to-nearest-even, norms stay F32") {
  TempDir dir;
  struct Case {
    DType source, target;
  };
  for (Case c : {Case{DType::F32, DType::F16}, Case{DType::F32, DType::BF16}, Case{DType::F16, DType::BF16},
                 Case{DType::F16, DType::F32}, Case{DType::BF16, DType::F16}}) {
    for (const char* shape : {"tiny", "tiny-qwen2"}) {
      const std::string path = generate(dir, shape, "gguf", c.source);
      auto plain = load(path);
      model::QuantizeSpec spec;
      spec.weights = c.target;
      auto conv = load(path, &spec);
      INFO(shape << " " << model::dtype_name(c.source) << " -> " << model::dtype_name(c.target));
      REQUIRE(conv->quantized.has_value());
      const int mantissa = c.target == DType::F16 ? 10 : c.target == DType::BF16 ? 7 : 23;
      const int min_exp = c.target == DType::F16 ? -14 : -126;
      int64_t delta = 0;  // bytes the conversion adds (or saves) over the converted matrices
      auto check = [&](const model::TensorView& want, const model::TensorView& got) {
        INFO(want.name);
        delta += int64_t(want.elements()) * (int64_t(model::dtype_bytes(c.target)) - int64_t(model::dtype_bytes(c.source)));
        REQUIRE(got.dtype == c.target);
        REQUIRE(got.shape == want.shape);
        REQUIRE(got.bytes == want.elements() * model::dtype_bytes(c.target));
        const std::vector<double> a = as_doubles(want), b = as_doubles(got);
        uint64_t wrong = 0;
        for (size_t i = 0; i < a.size(); ++i) wrong += b[i] != round_to_format(a[i], mantissa, min_exp);
        CHECK(wrong == 0);
      };
      check(plain->weights.token_embedding, conv->weights.token_embedding);
      for (uint32_t l = 0; l < plain->config.num_layers; ++l) {
        for (int k = 0; k < 7; ++k) check(*linear_of(plain->weights.layers[l], k), *linear_of(conv->weights.layers[l], k));
        const model::LlamaLayerWeights& lw = conv->weights.layers[l];
        CHECK(lw.attn_norm.dtype == plain->weights.layers[l].attn_norm.dtype);
        CHECK(lw.ffn_norm.dtype == plain->weights.layers[l].ffn_norm.dtype);
        if (lw.bq.data != nullptr) CHECK(as_doubles(lw.bq) == as_doubles(plain->weights.layers[l].bq));
      }
      if (conv->config.tied_embeddings) {
        CHECK(conv->weights.output.data == conv->weights.token_embedding.data);
      } else {
        check(plain->weights.output, conv->weights.output);
      }
      CHECK(conv->weights.output_norm.dtype == plain->weights.output_norm.dtype);
      CHECK(int64_t(conv->weight_bytes) == int64_t(plain->weight_bytes) + delta);
    }
  }
}

TEST_CASE("quantize_model: a conversion refuses calibration and quantized sources, naming them") {
  TempDir dir;
  const std::string path = generate(dir, "tiny");
  model::QuantizeSpec spec;
  spec.weights = DType::F16;
  spec.calibration = calibration_tokens(512, 1, 8);
  model::testing::expect_error([&] { load(path, &spec); }, model::ModelErrc::Unsupported,
                               {"quantize.calibration", "F16"});
  spec.calibration.clear();
  auto m = load(path);
  m->weights.layers[0].wq.dtype = DType::Q4_0;
  model::testing::expect_error([&] { model::check_quantizable(*m, spec); }, model::ModelErrc::Unsupported,
                               {m->weights.layers[0].wq.name, "Q4_0", "'auto'"});
}
