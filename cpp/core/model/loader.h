// Loading a Llama-family model from a GGUF file or a Hugging Face folder (config.json plus one
// model.safetensors or shards listed in model.safetensors.index.json). Files are memory-mapped;
// F32/F16/BF16 tensors are used in place, so a model costs page cache, not heap.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "model/llama_config.h"
#include "model/llama_weights.h"

namespace fineserve::model {

struct LoadOptions {
  // Called with the fraction done (0..1) as tensors are checked; return false to cancel, which
  // makes load_model throw ModelError(Cancelled) and release everything it mapped.
  std::function<bool(double fraction)> on_progress;
  // Scan every weight for NaN/Inf (reads the whole file once; the progress callback follows it).
  bool check_finite = true;
};

// A loaded model: configuration, weight views, and the mappings that keep them alive.
class LoadedModel {
 public:
  virtual ~LoadedModel() = default;
  LlamaConfig config;
  LlamaWeights weights;
  std::string source;            // the path it was loaded from
  std::string format;            // "gguf" or "safetensors"
  uint64_t weight_bytes = 0;     // sum of tensor bytes
  // GGUF metadata values rendered as strings (arrays as JSON), for the tokenizer and chat
  // template later; empty for HF folders, whose tokenizer lives in its own files.
  std::map<std::string, std::string> metadata;
};

// `path` is a .gguf file or a folder with config.json. Throws ModelError naming the file, tensor
// and field on anything it cannot use (see model_error.h), and rejects architectures outside the
// Llama family (llama, mistral, qwen2) by name.
std::unique_ptr<LoadedModel> load_model(const std::string& path, const LoadOptions& options = {});

}  // namespace fineserve::model
