// Loading a Llama-family model from a GGUF file or a Hugging Face folder (config.json plus one
// model.safetensors or shards listed in model.safetensors.index.json). Files are read into memory
// the model owns (file_bytes.h: never mapped, so a file truncated under a served model cannot
// fault it) and F32/F16/BF16 tensors are used in place there.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kv/kv_format.h"
#include "model/llama_config.h"
#include "model/llama_weights.h"

namespace fineserve::model {

// Post-training quantization at load (PTQ): the 7 linear weights of every layer of a 16/32-bit
// model are quantized to `weights`; the token embedding, the norms and the output projection stay
// as loaded, as AWQ and llm-compressor leave them by default. With calibration sequences,
// activation statistics pick per-channel scales (AWQ for W4A16, SmoothQuant/FireQ smoothing for
// W8A8/W4A8/FP8, see quantize_model.h); without, it is round-to-nearest.
//
// The plain types F32, F16 and BF16 are conversions instead (precisions fp32/fp16/bf16): every
// matrix, the token embedding and output projection included, re-stored in that type, rounded
// to nearest even; the norms and biases stay F32. No calibration, no smoothing.
struct QuantizeSpec {
  DType weights = DType::W4A16;   // W8A8, FP8, W4A16, W4A8, or F32/F16/BF16 (a conversion)
  uint32_t group = 128;           // W4A16 / W4A8 group size (a positive multiple of 32)
  // The KV format the model will be served with: Int4 asks for FireQ's pre-RoPE K smoothing.
  kv::KvFormat kv = kv::KvFormat::F16;
  std::vector<std::vector<int32_t>> calibration;  // token sequences run through the model
  bool smooth_k = true;           // with kv == Int4: scale K down (and Q up) per RoPE pair
};

struct LoadOptions {
  // Called with the fraction done (0..1) as tensors are checked; return false to cancel, which
  // makes load_model throw ModelError(Cancelled) and release everything it read.
  std::function<bool(double fraction)> on_progress;
  // Scan every weight for NaN/Inf (reads the whole file once; the progress callback follows it).
  bool check_finite = true;
  // Quantize after loading; progress and cancellation then span both phases. A spec that names
  // another type, a bad group, calibration tokens outside the vocabulary, or a source whose linear
  // weights are not F32/F16/BF16 is a ModelError naming the field or tensor and the value.
  std::optional<QuantizeSpec> quantize;
  // Replace the Q8_0 / Q4_0 / Q4_K / Q6_K linear weights by the CPU GEMM's packed copies now
  // (gemm/packed_load.h), so they are held once and weight_bytes counts what is held. Off, the
  // CPU path packs on first use and keeps the file's bytes too. Only for models the CPU serves:
  // the CUDA upload reads the file's layout (the addon sets it when built without CUDA).
  bool repack = false;
};

// A heap buffer aligned for 16-byte (and cache-line) loads, for the tensors the loader makes.
struct AlignedFree {
  // Inline so that code holding a LoadedModel links without loader.cc (the parser fuzzer).
  void operator()(uint8_t* p) const { std::free(p); }
};
using AlignedBytes = std::unique_ptr<uint8_t[], AlignedFree>;
AlignedBytes alloc_aligned(uint64_t bytes);

// A loaded model: configuration, weight views, and the file bytes that keep them alive.
class LoadedModel {
 public:
  virtual ~LoadedModel() = default;
  LlamaConfig config;
  LlamaWeights weights;
  std::string source;            // the path it was loaded from
  std::string format;            // "gguf" or "safetensors"
  uint64_t weight_bytes = 0;     // sum of tensor bytes (and input scales), after quantization
  // Storage of the tensors made at load (quantized weights, rescaled biases, input scales); the
  // views in `weights` point here instead of into the files.
  std::vector<AlignedBytes> owned;
  // The quantization applied at load (its calibration tokens dropped), or none.
  std::optional<QuantizeSpec> quantized;
  uint32_t calibration_sequences = 0;
  // GGUF metadata values rendered as strings (arrays as JSON), for the tokenizer and chat
  // template later; empty for HF folders, whose tokenizer lives in its own files.
  std::map<std::string, std::string> metadata;
};

// `path` is a .gguf file or a folder with config.json. Throws ModelError naming the file, tensor
// and field on anything it cannot use (see model_error.h), and rejects architectures outside the
// Llama family (llama, mistral, qwen2) by name.
std::unique_ptr<LoadedModel> load_model(const std::string& path, const LoadOptions& options = {});

}  // namespace fineserve::model
