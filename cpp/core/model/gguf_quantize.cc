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

// ggml's GGML_QNT_VERSION: the block layouts of Q4_0/Q8_0 have been these since version 2.
constexpr uint32_t kQuantizationVersion = 2;
// Source bytes handled per step: bounds the scratch buffers and spaces the progress reports.
constexpr uint64_t kStepBytes = 4ull << 20;

// llama.cpp's LLAMA_FTYPE_MOSTLY_Q8_0 and LLAMA_FTYPE_MOSTLY_Q4_0.
uint32_t llama_ftype(DType target) { return target == DType::Q8_0 ? 7 : 2; }

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

DType gguf_quantized_type(const gguf::TensorInfo& t, DType target, bool tied) {
  if (!is_quantizable(t) || t.bytes == 0) return t.dtype;
  // llama-quantize gives the output projection Q6_K in a Q4_0 file (Q8_0 in a Q8_0 one).
  DType type = (t.name == "output.weight" || (tied && t.name == "token_embd.weight")) ? DType::Q8_0 : target;
  // Rows that are not whole blocks stay in their own type: rounding F32 to F16 would make
  // llama.cpp round the activations to F16 too (its F16 dot type), which we would not match.
  if (t.ne[0] % quant::block_elements(type) != 0) type = t.dtype;
  return type;
}

QuantizeGgufResult write_quantized_gguf(const std::string& src_gguf, const std::string& dst, DType target,
                                        const std::function<bool(double)>& on_progress) {
  if (target != DType::Q8_0 && target != DType::Q4_0) {
    throw std::invalid_argument(dst + ": GGUF files are written as Q8_0 or Q4_0, not " + dtype_name(target));
  }
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
      out.add_u32(key, llama_ftype(target));
      has_file_type = true;
    } else if (key == "general.quantization_version") {
      out.add_u32(key, kQuantizationVersion);
      has_version = true;
    } else {
      out.add_value(key, value);
    }
  }
  if (!has_version) out.add_u32("general.quantization_version", kQuantizationVersion);
  if (!has_file_type) out.add_u32("general.file_type", llama_ftype(target));

  QuantizeGgufResult result;
  result.path = dst;
  const bool tied = in.find_tensor("output.weight") == nullptr;
  std::vector<DType> types;
  uint64_t total = 0;
  for (const gguf::TensorInfo& t : in.tensors) {
    types.push_back(gguf_quantized_type(t, target, tied));
    out.add_tensor(t.name, types.back(), t.shape());
    total += t.bytes;
    if (types.back() == target) {
      result.quantized.push_back(t.name);
    } else {
      result.kept.push_back({t.name, types.back()});
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
