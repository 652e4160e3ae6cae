// The pieces load_model is made of, shared by loader*.cc and reachable from the fuzz target
// (which drives the GGUF path from a byte buffer, with no file system).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "model/gguf.h"
#include "model/loader.h"
#include "model/file_bytes.h"

namespace fineserve::model::detail {

// The loaded model proper: the file bytes that the weight views point into live as long as it.
// They are the process's own memory (file_bytes.h), so nothing the files undergo later reaches it.
class MappedModel : public LoadedModel {
 public:
  std::vector<FileBytes> files;
};

// A tensor found in one of the model's files, and which file, for messages.
struct FoundTensor {
  TensorView view;
  std::string file;
};
using TensorIndex = std::unordered_map<std::string, FoundTensor>;

enum class NameScheme { Gguf, HuggingFace };

// Fills `weights` from `index` by the scheme's tensor names (llama.cpp's for GGUF, transformers'
// for HF) and checks every shape against `config`: a missing tensor is ModelError(Corrupt), a
// wrong shape ModelError(ShapeMismatch), both naming the tensor. `where` names the file(s) a
// missing tensor should have been in. Decides config.tied_embeddings for GGUF (output.weight
// absent, or a byte-identical copy of token_embd.weight) and honours it for HF.
void assemble_weights(LlamaConfig& config, const TensorIndex& index, NameScheme scheme, const std::string& where,
                      LlamaWeights& weights);

// The distinct tensors of `weights` (a tied output counts once), in file-reading order.
std::vector<const TensorView*> distinct_tensors(const LlamaWeights& weights);

// Walks every distinct tensor, reporting progress by bytes through options.on_progress (and
// stopping with ModelError(Cancelled) when it returns false) and, with options.check_finite,
// failing with ModelError(BadWeights) on the first NaN or Inf, naming the tensor and element.
void scan_weights(const LlamaWeights& weights, const TensorIndex& index, const LoadOptions& options,
                  const std::string& source);

// GGUF metadata rendered for LoadedModel::metadata: strings as they are, numbers in decimal,
// arrays as JSON. A value whose rendering passes `cap` bytes is left out and its key listed in
// "fineserve.metadata_omitted" (a JSON array), so nothing is silently truncated.
constexpr uint64_t kMetadataValueCap = 64ull << 20;
std::map<std::string, std::string> render_metadata(const gguf::File& file, uint64_t cap = kMetadataValueCap);

// Everything load_model does with a parsed GGUF file except reading it and scanning weights:
// config, weights, metadata, format. Also the fuzz target's entry point.
void build_from_gguf(const gguf::File& file, LoadedModel& model, TensorIndex& index);

// `on_read` follows the reading of each weight file (FileBytes::OnRead, per file).
std::unique_ptr<MappedModel> load_gguf(const std::string& path, TensorIndex& index,
                                       const FileBytes::OnRead& on_read = {});
std::unique_ptr<MappedModel> load_hf(const std::string& dir, TensorIndex& index,
                                     const FileBytes::OnRead& on_read = {});

}  // namespace fineserve::model::detail
