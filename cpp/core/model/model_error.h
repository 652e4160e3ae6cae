// Errors from reading model files. Every message names the file and, where there is one, the
// tensor or field and the offending value, e.g.
//   model.safetensors: tensor "model.layers.3.mlp.up_proj.weight": data offsets [10, 99] run past
//   the end of the file (64 bytes of data)
#pragma once

#include <stdexcept>
#include <string>

namespace fineserve::model {

enum class ModelErrc {
  NotFound,       // no such file or folder, or a required file is missing from an HF folder
  Corrupt,        // wrong magic, truncated, bad offsets, malformed header or metadata
  Unsupported,    // an architecture, tensor type, or version this build does not handle
  ShapeMismatch,  // a tensor's shape disagrees with the model configuration
  BadWeights,     // NaN or Inf in a weight
  Cancelled,      // the progress callback asked to stop
  ContextTooLong, // a request past the model's context length
};

// "ERR_MODEL_NOT_FOUND" and so on: the codes the TypeScript errors carry.
const char* errc_code(ModelErrc code);

class ModelError : public std::runtime_error {
 public:
  ModelError(ModelErrc code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ModelErrc code() const { return code_; }

 private:
  ModelErrc code_;
};

}  // namespace fineserve::model
