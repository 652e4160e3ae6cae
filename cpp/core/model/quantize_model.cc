// quantize_model(): calibration, the channel transforms of each layer, then rounding every row of
// the 7 linear weights into buffers the model owns. The token embedding, the norms and the output
// projection (lm_head) stay as loaded: AWQ and llm-compressor leave them unquantized by default,
// since the logits are the most sensitive product and the embedding is a lookup, not a matmul.
#include "model/quantize_model.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "model/layer_tensors.h"
#include "model/loader_internal.h"
#include "model/model_error.h"
#include "ops/rows.h"
#include "quant/quantize.h"
#include "quant/weight_format.h"
#include "quant/weight_traits.h"
#include "simd/half.h"

namespace fineserve::model {

namespace {

// Work estimates in units of "scanning one byte at load" (the loader's other phase), from rough
// costs on an AVX2 core: a multiply-add of the f32 forward pass or of the search ~ 0.5 bytes
// scanned, quantizing one element (read, convert, round, search its scale) ~ 30.
constexpr double kFlopCost = 0.5;
constexpr double kElementCost = 30.0;
constexpr double kConvertCost = 2.0;  // widening and narrowing one element to a plain type
constexpr double kSearchCandidates = 21;  // 20 alphas and "no scaling"
constexpr double kSearchRows = 64, kSearchOutputs = 256;

struct Shape {
  uint64_t hidden, ffn, q_dim, kv_dim;
  explicit Shape(const LlamaConfig& c)
      : hidden(c.hidden_size),
        ffn(c.intermediate_size),
        q_dim(static_cast<uint64_t>(c.num_heads) * c.head_dim),
        kv_dim(static_cast<uint64_t>(c.num_kv_heads) * c.head_dim) {}
  uint64_t linear_params() const { return hidden * (q_dim + 2 * kv_dim) + q_dim * hidden + 3 * hidden * ffn; }
};

double search_cost(const Shape& s) {
  auto outs = [](uint64_t out) { return std::min<double>(static_cast<double>(out), kSearchOutputs); };
  const double per_row = 2 * kSearchRows * kFlopCost + kElementCost;
  const double rows = (outs(s.q_dim) + 2 * outs(s.kv_dim) + 2 * outs(s.ffn)) * static_cast<double>(s.hidden) +
                      outs(s.hidden) * static_cast<double>(s.q_dim) + outs(s.hidden) * static_cast<double>(s.ffn);
  return kSearchCandidates * rows * per_row;
}

double calibration_cost(const LlamaConfig& c, const QuantizeSpec& spec) {
  uint64_t tokens = 0;
  for (const auto& seq : spec.calibration) tokens += seq.size();
  return static_cast<double>(tokens) * 2.0 * static_cast<double>(Shape(c).linear_params() * c.num_layers) * kFlopCost;
}

std::string quoted(const std::string& s) { return "\"" + s + "\""; }

// Reports the fraction of the estimated work done and turns a "stop" into ModelError(Cancelled).
class Progress {
 public:
  Progress(const std::function<bool(double)>& fn, double total, std::string source)
      : fn_(fn), total_(total), source_(std::move(source)) {}
  void at(double done) {
    done_ = done;
    if (fn_ && !fn_(total_ > 0 ? std::min(1.0, done_ / total_) : 1.0)) {
      throw ModelError(ModelErrc::Cancelled, source_ + ": quantization cancelled by the progress callback");
    }
  }
  void add(double work) { at(done_ + work); }
  double done() const { return done_; }

 private:
  const std::function<bool(double)>& fn_;
  double total_;
  double done_ = 0;
  std::string source_;
};

const float* own_floats(LoadedModel& model, const std::vector<float>& v) {
  AlignedBytes buf = alloc_aligned(v.size() * sizeof(float));
  std::memcpy(buf.get(), v.data(), v.size() * sizeof(float));
  const float* p = reinterpret_cast<const float*>(buf.get());
  model.owned.push_back(std::move(buf));
  return p;
}

// Rounds the f32 rows of `w` into a new owned buffer and points `view` there.
void quantize_into(LoadedModel& model, TensorView& view, const std::vector<float>& w, const QuantizeSpec& spec,
                   const float* input_scale, engine::ThreadPool& pool,
                   const std::function<void(const TensorView&)>& on_replaced) {
  const uint64_t rows = view.rows(), cols = view.cols();
  const uint32_t group = quant::traits(spec.weights).grouped ? spec.group : 0;
  const uint64_t rb = quant::row_bytes(spec.weights, cols, group);
  AlignedBytes buf = alloc_aligned(rows * rb);
  uint8_t* dst = buf.get();
  pool.parallel_for(rows, [&](size_t begin, size_t end) {
    for (size_t r = begin; r < end; ++r) quant::quantize_row(spec.weights, w.data() + r * cols, cols, group, dst + r * rb);
  });
  const TensorView old = view;
  view.dtype = spec.weights;
  view.data = dst;
  view.bytes = rows * rb;
  view.group = group;
  view.input_scale = input_scale;
  model.owned.push_back(std::move(buf));
  if (on_replaced) on_replaced(old);
}

// A bias that K smoothing rescaled, as an owned F32 vector.
void replace_bias(LoadedModel& model, TensorView& view, const std::vector<float>& b,
                  const std::function<void(const TensorView&)>& on_replaced) {
  const TensorView old = view;
  view.dtype = DType::F32;
  view.data = reinterpret_cast<const uint8_t*>(own_floats(model, b));
  view.bytes = b.size() * sizeof(float);
  if (on_replaced) on_replaced(old);
}

bool is_plain(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

// f32 -> F32/F16/BF16, rounding to nearest even (what torch's .half() / .bfloat16() do).
void narrow(DType t, const float* src, uint64_t n, uint8_t* dst) {
  if (t == DType::F32) {
    std::memcpy(dst, src, n * sizeof(float));
    return;
  }
  uint16_t* out = reinterpret_cast<uint16_t*>(dst);
  if (t == DType::F16) {
    for (uint64_t i = 0; i < n; ++i) out[i] = simd::f32_to_f16_scalar(src[i]);
  } else {
    for (uint64_t i = 0; i < n; ++i) out[i] = simd::f32_to_bf16_scalar(src[i]);
  }
}

// Re-stores one matrix as `target` in a buffer the model owns, row by row through f32 (exact
// for every widening; one rounding for a narrowing).
void convert_into(LoadedModel& model, TensorView& view, DType target, engine::ThreadPool& pool,
                  const std::function<void(const TensorView&)>& on_replaced) {
  const uint64_t rows = view.rows(), cols = view.cols(), rb = cols * dtype_bytes(target);
  AlignedBytes buf = alloc_aligned(rows * rb);
  uint8_t* dst = buf.get();
  const TensorView src = view;
  pool.parallel_for(rows, [&](size_t begin, size_t end) {
    std::vector<float> row(cols);
    for (size_t r = begin; r < end; ++r) {
      ops::load_row(src, r, row.data());
      narrow(target, row.data(), cols, dst + r * rb);
    }
  });
  view.dtype = target;
  view.data = dst;
  view.bytes = rows * rb;
  model.owned.push_back(std::move(buf));
  if (on_replaced) on_replaced(src);
}

// The plain targets (fp32/fp16/bf16 precisions): every matrix (the token embedding, the linears,
// an untied output) in `target`; the norms and biases stay F32, as llama.cpp's converters and
// transformers' mixed-precision loading keep them.
void convert_model(LoadedModel& model, DType target, engine::ThreadPool& pool, Progress& progress,
                   const std::function<void(const TensorView&)>& on_replaced) {
  LlamaWeights& w = model.weights;
  const bool tied = w.output.data == w.token_embedding.data;
  auto convert = [&](TensorView& t) {
    if (t.dtype != target) convert_into(model, t, target, pool, on_replaced);
    progress.add(static_cast<double>(t.elements()) * kConvertCost);
  };
  convert(w.token_embedding);
  for (LlamaLayerWeights& lw : w.layers) {
    for_each_layer_tensor(lw, [&](const LayerTensor& slot, TensorView& view) {
      if (slot.linear()) convert(view);
    });
  }
  if (tied) {
    w.output = w.token_embedding;
  } else {
    convert(w.output);
  }
}

// The 8- and 4-bit formats: calibration, then per layer the channel transforms and rounding of
// the 7 linears (and the biases K smoothing rescaled).
void quantize_layers(LoadedModel& model, const QuantizeSpec& spec, engine::ThreadPool& pool, Progress& progress,
                     const std::function<void(const TensorView&)>& on_replaced) {
  const LlamaConfig& c = model.config;
  const Shape shape(c);
  const bool calibrated = !spec.calibration.empty();
  Calibration cal;
  if (calibrated) {
    const double cost = calibration_cost(c, spec);
    cal = calibrate(model, spec.calibration, pool, [&](double f) {
      progress.at(f * cost);
      return true;
    });
  }

  const double search = calibrated ? search_cost(shape) : 0.0;
  for (uint32_t l = 0; l < c.num_layers; ++l) {
    const double layer_start = progress.done();
    ScaledLayer L = scale_layer(model, l, spec, calibrated ? &cal.layers[l] : nullptr, pool,
                                [&] { progress.at(progress.done()); });
    progress.at(layer_start + search);

    LlamaLayerWeights& lw = model.weights.layers[l];
    auto scale = [&](const std::vector<float>& s) { return s.empty() ? nullptr : own_floats(model, s); };
    const float* attn_scale = scale(L.attn_scale);
    const float* o_scale = scale(L.o_scale);
    const float* mlp_scale = scale(L.mlp_scale);
    const float* down_scale = scale(L.down_scale);
    const struct {
      TensorView* view;
      const std::vector<float>* w;
      const float* input_scale;
    } linears[] = {{&lw.wq, &L.wq, attn_scale},      {&lw.wk, &L.wk, attn_scale},   {&lw.wv, &L.wv, attn_scale},
                   {&lw.wo, &L.wo, o_scale},         {&lw.w_gate, &L.w_gate, mlp_scale},
                   {&lw.w_up, &L.w_up, mlp_scale},   {&lw.w_down, &L.w_down, down_scale}};
    for (const auto& lin : linears) {
      quantize_into(model, *lin.view, *lin.w, spec, lin.input_scale, pool, on_replaced);
      progress.add(static_cast<double>(lin.view->elements()) * kElementCost);
    }
    const bool k_smoothed = std::any_of(L.k_factors.begin(), L.k_factors.end(), [](float s) { return s != 1.0f; });
    if (k_smoothed && lw.bq.data != nullptr) replace_bias(model, lw.bq, L.bq, on_replaced);
    if (k_smoothed && lw.bk.data != nullptr) replace_bias(model, lw.bk, L.bk, on_replaced);
  }
}

}  // namespace

void check_quantize_spec(const QuantizeSpec& spec) {
  const DType t = spec.weights;
  if (t != DType::W8A8 && t != DType::FP8 && t != DType::W4A16 && t != DType::W4A8 && !is_plain(t)) {
    throw ModelError(ModelErrc::Unsupported, std::string("quantize.weights: ") + dtype_name(t) +
                                                 " is not a format quantization at load makes (W8A8, FP8, W4A16, "
                                                 "W4A8, or a conversion to F32, F16 or BF16)");
  }
  if (is_plain(t) && !spec.calibration.empty()) {
    throw ModelError(ModelErrc::Unsupported, std::string("quantize.calibration: converting to ") + dtype_name(t) +
                                                 " rounds each weight to nearest; calibration is only used by the "
                                                 "8- and 4-bit formats");
  }
  if (quant::traits(t).grouped && (spec.group == 0 || spec.group % 32 != 0)) {
    throw ModelError(ModelErrc::Unsupported, "quantize.group: " + std::to_string(spec.group) +
                                                 " is not a positive multiple of 32 (the " + dtype_name(t) +
                                                 " sub-block)");
  }
}

void check_quantizable(const LoadedModel& model, const QuantizeSpec& spec) {
  check_quantize_spec(spec);
  for (const LlamaLayerWeights& lw : model.weights.layers) {
    for_each_layer_tensor(lw, [&](const LayerTensor& slot, const TensorView& view) {
      if (!slot.linear()) return;
      const TensorView* t = &view;
      if (is_quantized(t->dtype)) {
        throw ModelError(ModelErrc::Unsupported,
                         model.source + ": tensor " + quoted(t->name) + " is " + dtype_name(t->dtype) +
                             "; quantize.weights " + dtype_name(spec.weights) +
                             " is made from F32/F16/BF16 weights only (load the file as it is instead: precision "
                             "'auto')");
      }
      if (is_plain(spec.weights)) return;
      const std::string why = quant::row_layout_error(spec.weights, t->cols(), spec.group);
      if (!why.empty()) {
        throw ModelError(ModelErrc::Unsupported, model.source + ": tensor " + quoted(t->name) + ": " + why);
      }
    });
  }
  if (!is_plain(spec.weights)) check_calibration(model.config, spec.calibration);
}

double quantize_cost(const LlamaConfig& config, const QuantizeSpec& spec) {
  const Shape s(config);
  if (is_plain(spec.weights)) {
    const double matrices = static_cast<double>(s.linear_params() * config.num_layers) +
                            2.0 * static_cast<double>(config.vocab_size) * static_cast<double>(s.hidden);
    return matrices * kConvertCost;
  }
  double per_layer = static_cast<double>(s.linear_params()) * kElementCost;
  if (!spec.calibration.empty()) per_layer += search_cost(s);
  return calibration_cost(config, spec) + per_layer * config.num_layers;
}

void quantize_model(LoadedModel& model, const QuantizeSpec& spec, engine::ThreadPool& pool,
                    const std::function<bool(double)>& on_progress,
                    const std::function<void(const TensorView& replaced)>& on_replaced) {
  check_quantizable(model, spec);
  const LlamaConfig& c = model.config;
  Progress progress(on_progress, quantize_cost(c, spec), model.source);
  progress.at(0);
  if (is_plain(spec.weights)) {
    convert_model(model, spec.weights, pool, progress, on_replaced);
  } else {
    quantize_layers(model, spec, pool, progress, on_replaced);
  }
  model.weight_bytes = 0;
  for (const TensorView* t : detail::distinct_tensors(model.weights)) model.weight_bytes += t->bytes;
  for (const LlamaLayerWeights& lw : model.weights.layers) {
    // One input_scale vector serves all the linears of an input: count it once.
    LayerInput counted = LayerInput::None;
    for_each_layer_tensor(lw, [&](const LayerTensor& slot, const TensorView& t) {
      if (slot.input == counted || !slot.linear()) return;
      counted = slot.input;
      if (t.input_scale != nullptr) model.weight_bytes += t.cols() * sizeof(float);
    });
  }
  QuantizeSpec applied = spec;
  applied.calibration.clear();
  model.quantized = applied;
  model.calibration_sequences = static_cast<uint32_t>(spec.calibration.size());
  progress.at(quantize_cost(c, spec));
}

}  // namespace fineserve::model
