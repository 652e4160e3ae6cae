// A .gguf file -> LoadedModel.
#include "model/config_readers.h"
#include "model/loader_internal.h"

namespace fineserve::model::detail {

void build_from_gguf(const gguf::File& file, LoadedModel& model, TensorIndex& index) {
  model.config = config_from_gguf(file);
  index.clear();
  for (const gguf::TensorInfo& t : file.tensors) index.emplace(t.name, FoundTensor{file.view(t), file.path});
  assemble_weights(model.config, index, NameScheme::Gguf, file.path, model.weights);
  gguf::check_data_layout(file);
  model.metadata = render_metadata(file);
  model.format = "gguf";
}

std::unique_ptr<MappedModel> load_gguf(const std::string& path, TensorIndex& index, const FileBytes::OnRead& on_read) {
  auto model = std::make_unique<MappedModel>();
  const FileBytes& bytes = model->files.emplace_back(path, on_read);
  gguf::File file = gguf::parse(bytes.data(), bytes.size(), path);
  build_from_gguf(file, *model, index);
  return model;
}

}  // namespace fineserve::model::detail
