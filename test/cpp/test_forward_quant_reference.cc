// The CPU executor on models quantized at load, against the float64 reference forward
// (reference_llama.h) on generated models of real shapes (llama-3.2-1b and qwen2.5-0.5b layers,
// 2 layers, a 512-token vocabulary):
//  - against the reference run over the DEQUANTIZED weights (input scales folded into the columns):
//    what is left is the activation quantization of the format, so a wrong kernel (a swapped
//    nibble, a wrong scale) fails it; the test shows that by swapping nibbles in the reference;
//  - against the unquantized model, with a looser bound from the weight step;
//  - with int8 / int4 KV caches (and K smoothing for int4).
#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engine/cpu_executor.h"
#include "kv/kv_slab.h"
#include "model/generate.h"
#include "model/loader.h"
#include "quant/quantize.h"
#include "quant/weight_format.h"
#include "executor_harness.h"
#include "reference_llama.h"

using namespace fineserve;
using model::DType;
using kv::KvFormat;
namespace fs = std::filesystem;
using Rows = reference::Rows;

namespace {

struct TempFolder {
  fs::path path = fs::temp_directory_path() / ("fineserve-fwdquant-" + std::to_string(getpid()));
  TempFolder() { fs::create_directories(path); }
  ~TempFolder() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

std::vector<int32_t> tokens(uint32_t n, uint32_t vocab, uint32_t salt) {
  std::mt19937 rng(salt);
  std::vector<int32_t> t(n);
  for (int32_t& v : t) v = static_cast<int32_t>(3 + rng() % (vocab - 3));
  return t;
}

// The model's weights with every linear decoded to f32 by quant::dequantize_row (the formats'
// reference decoding) and its input_scale folded into the columns, for reference::forward.
// `swap_nibbles` decodes as a kernel that confused the low and high nibble of each sub-block would.
struct Dequantized {
  model::LlamaWeights weights;
  std::vector<std::vector<float>> buffers;

  Dequantized(const model::LoadedModel& m, bool swap_nibbles = false) : weights(m.weights) {
    for (model::LlamaLayerWeights& lw : weights.layers) {
      for (model::TensorView* t : {&lw.wq, &lw.wk, &lw.wv, &lw.wo, &lw.w_gate, &lw.w_up, &lw.w_down}) {
        const uint64_t rows = t->rows(), cols = t->cols(), rb = quant::row_bytes(t->dtype, cols, t->group);
        std::vector<float>& out = buffers.emplace_back(rows * cols);
        for (uint64_t r = 0; r < rows; ++r) {
          float* row = out.data() + r * cols;
          quant::dequantize_row(t->dtype, t->data + r * rb, cols, t->group, row);
          if (swap_nibbles) {
            for (uint64_t b = 0; b + 32 <= cols; b += 32) std::swap_ranges(row + b, row + b + 16, row + b + 16);
          }
          if (t->input_scale != nullptr) {
            for (uint64_t c = 0; c < cols; ++c) row[c] *= t->input_scale[c];
          }
        }
        t->dtype = DType::F32;
        t->data = reinterpret_cast<const uint8_t*>(out.data());
        t->bytes = rows * cols * 4;
        t->group = 0;
        t->input_scale = nullptr;
      }
    }
  }
};

// ||a - b||_inf / ||b||_inf
double rel_error(const std::vector<float>& a, const std::vector<double>& b) {
  double diff = 0, scale = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    diff = std::max(diff, std::fabs(static_cast<double>(a[i]) - b[i]));
    scale = std::max(scale, std::fabs(b[i]));
  }
  return diff / scale;
}

// Bounds on the logits' relative error (max-norm), from the formats' steps, propagated simply:
// a per-element relative rounding e in every input of the 8 linears of 2 layers gives ~e per
// linear (independent errors add in quadrature within a dot product), sqrt(8) ~ 3 over the path;
// we allow about 2x that where e is relative to the element itself, and state the rest below.
//   W4A16: activations are f32, so float rounding only (1e-4, the unquantized f32 test's bound).
//   W8A8: int8 per token, step 1/127 of the row's MAX; SwiGLU and attention outputs have
//         max/rms ~ 8, so relative to a typical element e ~ 8/127/sqrt(12): bound 8/127.
//   FP8, W4A8: E4M3 per token, relative to the element itself, at most 2^-4: bound 2 * 2^-4.
// A kernel that reads a nibble wrong makes O(1) errors (the test measures > 1 with every
// sub-block's nibbles swapped), far past every bound here.
double activation_bound(DType t) {
  switch (t) {
    case DType::W8A8: return 8.0 / 127;
    case DType::FP8:
    case DType::W4A8: return 2.0 / 16;
    default: return 1e-4;
  }
}
// Against the unquantized model the weights' rounding adds (same propagation):
//   int8 per row: step 1/127 of the row's max, ~4 rms of a Gaussian row: 4/127.
//   E4M3 per row: 2^-4 relative: 2 * 2^-4.
//   int4 (W4A16 asymmetric range/15, W4A8 symmetric amax/7): a 128-group of Gaussian weights
//   spans ~5 rms, so the step is ~1/3 rms and the rounding noise ~0.1 rms per weight, ~0.3 over
//   the path: 0.6.
double weight_bound(DType t) {
  switch (t) {
    case DType::W8A8: return activation_bound(t) + 4.0 / 127;
    case DType::FP8: return activation_bound(t) + 2.0 / 16;
    default: return activation_bound(t) + 0.6;
  }
}
// A quantized KV cache rounds K and V per token x head: steps of 1/127 (int8) and 1/7 (int4) of
// the row's max, once per layer: 2/127 and 2/7.
double kv_bound(KvFormat f) { return f == KvFormat::Int8 ? 2.0 / 127 : f == KvFormat::Int4 ? 2.0 / 7 : 0.0; }

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

struct Case {
  DType weights;
  KvFormat kv;
  bool calibrate;
};

void check_shape(const std::string& shape, const std::string& format, const std::vector<Case>& cases) {
  TempFolder dir;
  model::GenerateOptions g;
  g.shape = shape;
  g.layers = 2;
  g.vocab = 512;
  g.dtype = DType::F16;
  g.format = format;
  g.seed = 99;
  g.out = (dir.path / (shape + (format == "gguf" ? ".gguf" : ""))).string();
  model::generate_model(g);
  auto plain = model::load_model(g.out);
  const std::vector<int32_t> prompt = tokens(12, 512, 1);
  const Rows want_plain = reference::forward(plain->config, plain->weights, prompt, false, 2);
  bool nibbles_checked = false;
  for (const Case& cs : cases) {
    auto t0 = std::chrono::steady_clock::now();
    model::LoadOptions o;
    o.quantize = model::QuantizeSpec{};
    o.quantize->weights = cs.weights;
    o.quantize->kv = cs.kv;
    if (cs.calibrate) o.quantize->calibration = {tokens(24, 512, 2), tokens(24, 512, 3)};
    auto q = model::load_model(g.out, o);
    const double t_load = seconds_since(t0);
    const Rows want = reference::forward(q->config, Dequantized(*q).weights, prompt, false, 2);
    const std::vector<float> got = test::run_executor(*q, cs.kv, prompt, test::Mode::Prefill).back();
    const double err = rel_error(got, want.back()), err_plain = rel_error(got, want_plain.back());
    const double bound = activation_bound(cs.weights) + kv_bound(cs.kv);
    const double bound_plain = weight_bound(cs.weights) + kv_bound(cs.kv);
    const std::string what = shape + " " + model::dtype_name(cs.weights) + (cs.calibrate ? " calibrated" : " RTN") +
                             ", kv " + kv::format_name(cs.kv);
    MESSAGE(what << ": vs dequantized reference " << err << " (bound " << bound << "), vs unquantized " << err_plain
                 << " (bound " << bound_plain << ") [quantize " << t_load << " s]");
    CHECK(err < bound);
    CHECK(err_plain < bound_plain);
    if (!nibbles_checked && (cs.weights == DType::W4A16 || cs.weights == DType::W4A8) && cs.kv == KvFormat::F32) {
      // The bounds discriminate: a kernel that swapped the nibbles of every sub-block would fail
      // even the loose one.
      nibbles_checked = true;
      const Rows wrong = reference::forward(q->config, Dequantized(*q, true).weights, prompt, false, 2);
      const double err_wrong = rel_error(got, wrong.back());
      MESSAGE(what << ": vs a nibble-swapped reference " << err_wrong);
      CHECK(err_wrong > bound_plain);
    }
  }
}

}  // namespace

TEST_CASE("quant reference: executor on quantized qwen2.5-0.5b layers (QKV bias, GQA 14/2, half-split RoPE)") {
  check_shape("qwen2.5-0.5b", "hf",
              {{DType::W4A16, KvFormat::F32, true},
               {DType::W8A8, KvFormat::F32, true},
               {DType::FP8, KvFormat::F32, false},
               {DType::W4A8, KvFormat::F32, false},
               {DType::W8A8, KvFormat::Int8, false},
               {DType::W4A8, KvFormat::Int4, true}});
}

TEST_CASE("quant reference: executor on quantized llama-3.2-1b layers (GQA 32/8, interleaved RoPE, llama3 scaling)") {
  check_shape("llama-3.2-1b", "gguf",
              {{DType::W4A16, KvFormat::F32, false},
               {DType::W8A8, KvFormat::F32, false},
               {DType::W4A16, KvFormat::Int4, true}});
}
