// load_model: picks the format from the path, then checks and scans what it loaded.
#include "model/loader.h"

#include <filesystem>

#include "model/loader_internal.h"
#include "model/model_error.h"

namespace fineserve::model {

std::unique_ptr<LoadedModel> load_model(const std::string& path, const LoadOptions& options) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::file_status st = fs::status(path, ec);
  if (ec || !fs::exists(st)) {
    throw ModelError(ModelErrc::NotFound, path + ": no such file or folder (expected a .gguf file or a Hugging Face "
                                                 "model folder)");
  }
  const std::string ext = fs::path(path).extension().string();
  if (!fs::is_directory(st) && (ext == ".safetensors" || ext == ".json")) {
    throw ModelError(ModelErrc::Unsupported, path + ": a Hugging Face model is loaded from its folder (config.json "
                                                    "plus weights), not from one of its files; pass the folder");
  }
  detail::TensorIndex index;
  std::unique_ptr<detail::MappedModel> model =
      fs::is_directory(st) ? detail::load_hf(path, index) : detail::load_gguf(path, index);
  model->source = path;
  model->weight_bytes = 0;
  for (const TensorView* t : detail::distinct_tensors(model->weights)) model->weight_bytes += t->bytes;
  // On a throw (bad weights, cancel) `model` unwinds here and unmaps every file.
  detail::scan_weights(model->weights, index, options, path);
  return model;
}

}  // namespace fineserve::model
