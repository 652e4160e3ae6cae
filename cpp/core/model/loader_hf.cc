// A Hugging Face folder -> LoadedModel: config.json, then either model.safetensors or the
// shards that model.safetensors.index.json lists (the layout save_pretrained writes).
#include <filesystem>
#include <map>
#include <string_view>

#include "model/config_readers.h"
#include "model/json.h"
#include "model/loader_internal.h"
#include "model/model_error.h"
#include "model/safetensors.h"

namespace fineserve::model::detail {

namespace fs = std::filesystem;

namespace {

bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

json::Value read_json(const fs::path& p) {
  FileBytes f(p.string());
  std::string_view text(reinterpret_cast<const char*>(f.data()), f.size());
  return json::parse(text, p.string());
}

std::string in_quotes(std::string_view s) {
  std::string out;
  json::append_quoted(out, s);
  return out;
}

// Adds one safetensors file's tensors to the index: all of them, or only those the shard index
// assigns to it.
void index_shard(MappedModel& model, const fs::path& path, const std::vector<std::string>* wanted,
                 const std::string& listed_in, TensorIndex& index, const FileBytes::OnRead& on_read) {
  const FileBytes* bytes = nullptr;
  try {
    bytes = &model.files.emplace_back(path.string(), on_read);
  } catch (const ModelError& e) {
    if (e.code() != ModelErrc::NotFound || listed_in.empty()) throw;
    throw ModelError(ModelErrc::NotFound, path.string() + ": shard listed in " + listed_in + " is missing");
  }
  safetensors::File file = safetensors::parse(bytes->data(), bytes->size(), path.string());
  auto add = [&](const safetensors::TensorInfo& t) {
    index.emplace(t.name, FoundTensor{file.view(t), path.string()});
  };
  if (!wanted) {
    for (const safetensors::TensorInfo& t : file.tensors) add(t);
    return;
  }
  for (const std::string& name : *wanted) {
    const safetensors::TensorInfo* t = file.find(name);
    if (!t) {
      throw ModelError(ModelErrc::Corrupt, path.string() + ": tensor " + in_quotes(name) + " is missing, though " +
                                               listed_in + " puts it in this shard");
    }
    add(*t);
  }
}

// weight_map: tensor name -> shard file name, grouped by shard in order of first mention.
void load_shards(MappedModel& model, const fs::path& dir, const fs::path& index_path, TensorIndex& index,
                 const FileBytes::OnRead& on_read) {
  const std::string where = index_path.string();
  json::Value root = read_json(index_path);
  const json::Value* map = root.find("weight_map");
  if (!map || !map->is_object()) {
    throw ModelError(ModelErrc::Corrupt, where + ": \"weight_map\" is missing or not an object");
  }
  std::vector<std::string> order;
  std::map<std::string, std::vector<std::string>> by_shard;
  for (size_t k = 0; k < map->size(); ++k) {
    const std::string& name = map->keys()[k];
    const json::Value& shard = map->items()[k];
    // Shards are siblings of the index; anything else could read outside the model folder.
    if (!shard.is_string() || shard.as_string().empty() || shard.as_string().find('/') != std::string::npos ||
        shard.as_string().find('\\') != std::string::npos || shard.as_string() == "." || shard.as_string() == "..") {
      std::string found = shard.is_string() ? in_quotes(shard.as_string())
                                            : std::string("a JSON ") + json::type_name(shard.type());
      throw ModelError(ModelErrc::Corrupt, where + ": \"weight_map\": tensor " + in_quotes(name) +
                                               ": expected a shard file name in this folder, found " + found);
    }
    auto [it, fresh] = by_shard.try_emplace(shard.as_string());
    if (fresh) order.push_back(shard.as_string());
    it->second.push_back(name);
  }
  for (const std::string& shard : order) {
    index_shard(model, dir / shard, &by_shard[shard], index_path.filename().string(), index, on_read);
  }
}

}  // namespace

std::unique_ptr<MappedModel> load_hf(const std::string& dir_name, TensorIndex& index, const FileBytes::OnRead& on_read) {
  const fs::path dir(dir_name);
  const fs::path config_path = dir / "config.json";
  if (!is_file(config_path)) {
    throw ModelError(ModelErrc::NotFound, config_path.string() + ": config.json is missing; a Hugging Face model "
                                                                 "folder needs it next to the weights");
  }
  auto model = std::make_unique<MappedModel>();
  model->config = config_from_hf(read_json(config_path), config_path.string());
  model->format = "safetensors";

  const fs::path index_path = dir / "model.safetensors.index.json";
  const fs::path single = dir / "model.safetensors";
  std::string where;
  index.clear();
  if (is_file(index_path)) {
    load_shards(*model, dir, index_path, index, on_read);
    where = index_path.string();
  } else if (is_file(single)) {
    index_shard(*model, single, nullptr, "", index, on_read);
    where = single.string();
  } else {
    std::string hint =
        is_file(dir / "pytorch_model.bin") ? " (pytorch_model.bin is not read: convert it to safetensors)" : "";
    throw ModelError(ModelErrc::NotFound, dir.string() + ": neither model.safetensors nor model.safetensors.index.json "
                                                         "is in the folder" + hint);
  }
  assemble_weights(model->config, index, NameScheme::HuggingFace, where, model->weights);
  return model;
}

}  // namespace fineserve::model::detail
