#include "model/gguf_quantize.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string_view>

#include "model/gguf_writer.h"
#include "model/file_bytes.h"
#include "model/model_error.h"
#include "quant/quantize.h"
#include "quant/weight_format.h"

namespace fineserve::model {
namespace {

// ggml's GGML_QNT_VERSION: the block layouts of Q4_0/Q8_0/Q4_K/Q6_K have been these since version 2.
constexpr uint32_t kQuantizationVersion = 2;
// Source bytes handled per step: bounds the scratch buffers and spaces the progress reports.
constexpr uint64_t kStepBytes = 4ull << 20;

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// llama-quantize's rule: 2-D (or 3-D expert) weights, but not norms, the MoE router or the small
// embeddings of other architectures that it keeps at full precision.
bool is_quantizable(const gguf::TensorInfo& t) {
  if (t.ne.size() < 2 || !ends_with(t.name, "weight")) return false;
  for (const char* keep : {"_norm.weight", "ffn_gate_inp.weight", "position_embd.weight", "token_types.weight",
                           "attn_rel_b.weight", "ssm_conv1d.weight"}) {
    if (t.name.find(keep) != std::string::npos) return false;
  }
  return true;
}

std::string quoted(const std::string& name) { return "\"" + name + "\""; }

bool contains(const std::string& s, std::string_view part) { return s.find(part) != std::string::npos; }

// llama.cpp's use_more_bits: the first and last eighth of the layers and every third in between.
bool use_more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

// The tensors llama-quantize's Q4_K_M/Q5_K_M rules treat as attn_v (its category_is_attn_v).
bool is_attn_v(const std::string& name) {
  return contains(name, "attn_v.weight") || contains(name, "attn_qkv.weight") || contains(name, "attn_kv_b.weight");
}

// llama-quantize's fallback for a row that is not whole blocks of `type`, where this build can
// write the fallback (see the header): the source type when nothing fits.
DType fallback_type(const gguf::TensorInfo& t, DType type) {
  const uint64_t cols = t.ne[0];
  if (cols % quant::block_elements(type) == 0) return type;
  // Q6_K -> Q8_0 as llama-quantize; Q4_K -> its Q5_0, which we cannot write: Q8_0.
  if ((type == DType::Q4_K || type == DType::Q6_K) && cols % quant::block_elements(DType::Q8_0) == 0) {
    return DType::Q8_0;
  }
  return t.dtype;
}

class Progress {
 public:
  Progress(const std::function<bool(double)>& fn, uint64_t total, std::string what)
      : fn_(fn), total_(std::max<uint64_t>(total, 1)), what_(std::move(what)) {}

  void advance(uint64_t bytes) {
    done_ += bytes;
    if (fn_ && !fn_(std::min(1.0, static_cast<double>(done_) / static_cast<double>(total_)))) {
      throw ModelError(ModelErrc::Cancelled, what_ + " was cancelled");
    }
  }

 private:
  const std::function<bool(double)>& fn_;
  uint64_t total_;
  uint64_t done_ = 0;
  std::string what_;
};

// A tensor kept in its own type: its bytes as they are.
void copy_tensor(const uint8_t* data, uint64_t bytes, GgufWriter& out, Progress& progress) {
  for (uint64_t at = 0; at < bytes;) {
    uint64_t n = std::min(kStepBytes, bytes - at);
    out.write(data + at, n);
    at += n;
    progress.advance(n);
  }
}

// A tensor changing type, a block of rows at a time: decode to f32, then quantize (or round to F16).
void convert_tensor(const std::string& src, const gguf::TensorInfo& t, const uint8_t* data, DType type,
                    GgufWriter& out, Progress& progress) {
  const uint64_t cols = t.ne[0];
  const uint64_t src_row = quant::row_bytes(t.dtype, cols);
  const uint64_t rows = t.bytes / src_row;
  const uint64_t dst_row = quant::row_bytes(type, cols);
  const uint64_t step_rows = std::max<uint64_t>(1, kStepBytes / std::max(src_row, 4 * cols));
  std::vector<float> values(std::min(rows, step_rows) * cols);
  std::vector<uint8_t> encoded(is_quantized(type) ? std::min(rows, step_rows) * dst_row : 0);
  for (uint64_t r0 = 0; r0 < rows; r0 += step_rows) {
    const uint64_t n = std::min(step_rows, rows - r0);
    for (uint64_t r = 0; r < n; ++r) {
      float* row = values.data() + r * cols;
      quant::dequantize_row(t.dtype, data + (r0 + r) * src_row, cols, 0, row);
      // quantize_row leaves non-finite input undefined; llama-quantize rejects such rows too.
      for (uint64_t c = 0; c < cols; ++c) {
        if (!std::isfinite(row[c])) {
          throw ModelError(ModelErrc::BadWeights, src + ": tensor " + quoted(t.name) + ": row " + std::to_string(r0 + r) +
                                                      " column " + std::to_string(c) + " is " + std::to_string(row[c]) +
                                                      "; it cannot be quantized");
        }
      }
    }
    if (is_quantized(type)) {
      for (uint64_t r = 0; r < n; ++r) {
        quant::quantize_row(type, values.data() + r * cols, cols, 0, encoded.data() + r * dst_row);
      }
      out.write(encoded.data(), n * dst_row);
    } else {
      out.write_f32(values.data(), n * cols);
    }
    progress.advance(n * src_row);
  }
}

}  // namespace

std::optional<GgufQuantType> gguf_quant_type_from_name(std::string_view name) {
  const std::vector<std::string>& names = gguf_quant_type_names();
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i] == name) return static_cast<GgufQuantType>(i);
  }
  return std::nullopt;
}

const std::vector<std::string>& gguf_quant_type_names() {
  static const std::vector<std::string> names = {"q8_0", "q4_0", "q4_k", "q6_k", "q4_k_m"};
  return names;
}

DType gguf_quant_main_type(GgufQuantType type) {
  switch (type) {
    case GgufQuantType::Q8_0: return DType::Q8_0;
    case GgufQuantType::Q4_0: return DType::Q4_0;
    case GgufQuantType::Q6_K: return DType::Q6_K;
    case GgufQuantType::Q4_K:
    case GgufQuantType::Q4_K_M: return DType::Q4_K;
  }
  throw std::invalid_argument("gguf_quant_main_type: unknown type");
}

uint32_t llama_ftype(GgufQuantType type) {
  switch (type) {
    case GgufQuantType::Q8_0: return 7;     // LLAMA_FTYPE_MOSTLY_Q8_0
    case GgufQuantType::Q4_0: return 2;     // LLAMA_FTYPE_MOSTLY_Q4_0
    case GgufQuantType::Q4_K: return 14;    // LLAMA_FTYPE_MOSTLY_Q4_K_S
    case GgufQuantType::Q6_K: return 18;    // LLAMA_FTYPE_MOSTLY_Q6_K
    case GgufQuantType::Q4_K_M: return 15;  // LLAMA_FTYPE_MOSTLY_Q4_K_M
  }
  throw std::invalid_argument("llama_ftype: unknown type");
}

std::vector<DType> gguf_quantized_types(const gguf::File& in, GgufQuantType type) {
  const DType main = gguf_quant_main_type(type);
  const bool tied = in.find_tensor("output.weight") == nullptr;
  // Q4_K_M's layer counters, as llama-quantize keeps them: tensors seen so far, and how many.
  int n_attn_v = 0, n_ffn_down = 0, i_attn_v = 0, i_ffn_down = 0;
  for (const gguf::TensorInfo& t : in.tensors) {
    if (!is_quantizable(t)) continue;
    n_attn_v += is_attn_v(t.name);
    n_ffn_down += contains(t.name, "ffn_down");
  }
  std::vector<DType> types;
  for (const gguf::TensorInfo& t : in.tensors) {
    if (!is_quantizable(t) || t.bytes == 0) {
      types.push_back(t.dtype);
      continue;
    }
    DType chosen = main;
    if (t.name == "output.weight" || (tied && t.name == "token_embd.weight")) {
      // Q6_K, or Q8_0 where rows are not whole blocks of the main type (and in Q8_0 files).
      // Q4_0 files keep Q8_0 here (see the header).
      const bool blocks = t.ne[0] % quant::block_elements(main) == 0;
      chosen = main == DType::Q8_0 || main == DType::Q4_0 || !blocks ? DType::Q8_0 : DType::Q6_K;
    } else if (type == GgufQuantType::Q4_K_M && is_attn_v(t.name)) {
      if (use_more_bits(i_attn_v, n_attn_v)) chosen = DType::Q6_K;
      ++i_attn_v;
    } else if (type == GgufQuantType::Q4_K_M && contains(t.name, "ffn_down")) {
      if (use_more_bits(i_ffn_down, n_ffn_down)) chosen = DType::Q6_K;
      ++i_ffn_down;
    }
    types.push_back(fallback_type(t, chosen));
  }
  return types;
}

QuantizeGgufResult write_quantized_gguf(const std::string& src_gguf, const std::string& dst, DType target,
                                        const std::function<bool(double)>& on_progress) {
  switch (target) {
    case DType::Q8_0: return write_quantized_gguf(src_gguf, dst, GgufQuantType::Q8_0, on_progress);
    case DType::Q4_0: return write_quantized_gguf(src_gguf, dst, GgufQuantType::Q4_0, on_progress);
    case DType::Q4_K: return write_quantized_gguf(src_gguf, dst, GgufQuantType::Q4_K, on_progress);
    case DType::Q6_K: return write_quantized_gguf(src_gguf, dst, GgufQuantType::Q6_K, on_progress);
    default:
      throw std::invalid_argument(dst + ": GGUF files are written as Q8_0, Q4_0, Q4_K, Q6_K or Q4_K_M, not " +
                                  dtype_name(target));
  }
}

QuantizeGgufResult write_quantized_gguf(const std::string& src_gguf, const std::string& dst, GgufQuantType type,
                                        const std::function<bool(double)>& on_progress) {
  const DType main = gguf_quant_main_type(type);
  FileBytes file(src_gguf);
  const gguf::File in = gguf::parse(file.data(), file.size(), src_gguf);
  if (in.alignment > std::numeric_limits<uint32_t>::max()) {
    throw ModelError(ModelErrc::Unsupported,
                     src_gguf + ": general.alignment " + std::to_string(in.alignment) + " is too large to write");
  }
  GgufWriter out(dst, static_cast<uint32_t>(in.alignment), GgufWriter::AlignmentKey::WhenNotDefault);

  bool has_file_type = false, has_version = false;
  for (const auto& [key, value] : in.metadata) {
    if (key == "general.file_type") {
      out.add_u32(key, llama_ftype(type));
      has_file_type = true;
    } else if (key == "general.quantization_version") {
      out.add_u32(key, kQuantizationVersion);
      has_version = true;
    } else {
      out.add_value(key, value);
    }
  }
  if (!has_version) out.add_u32("general.quantization_version", kQuantizationVersion);
  if (!has_file_type) out.add_u32("general.file_type", llama_ftype(type));

  QuantizeGgufResult result;
  result.path = dst;
  const std::vector<DType> types = gguf_quantized_types(in, type);
  uint64_t total = 0;
  for (size_t i = 0; i < in.tensors.size(); ++i) {
    const gguf::TensorInfo& t = in.tensors[i];
    out.add_tensor(t.name, types[i], t.shape());
    total += t.bytes;
    if (types[i] == main) {
      result.quantized.push_back(t.name);
    } else {
      result.kept.push_back({t.name, types[i]});
    }
  }

  out.begin_data();
  Progress progress(on_progress, total, "quantizing " + src_gguf + " to " + dst);
  for (size_t i = 0; i < in.tensors.size(); ++i) {
    const gguf::TensorInfo& t = in.tensors[i];
    const uint8_t* data = in.view(t).data;
    if (types[i] == t.dtype) {
      copy_tensor(data, t.bytes, out, progress);
    } else {
      convert_tensor(src_gguf, t, data, types[i], out, progress);
    }
  }
  out.finish();
  result.bytes = out.file_bytes();
  return result;
}

}  // namespace fineserve::model
