// Tensor names -> LlamaWeights, with every shape checked against the configuration, so the
// forward pass can trust what it is given.
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "model/json.h"
#include "model/layer_tensors.h"
#include "model/loader_internal.h"
#include "model/model_error.h"
#include "quant/weight_format.h"

namespace fineserve::model::detail {

namespace {

std::string list(const std::vector<uint64_t>& v) {
  std::string s = "[";
  for (size_t k = 0; k < v.size(); ++k) s += (k ? ", " : "") + std::to_string(v[k]);
  return s + "]";
}

struct Expect {
  std::vector<uint64_t> shape;
  const char* meaning;  // "[vocab_size, hidden_size]"
};

class Assembler {
 public:
  Assembler(const TensorIndex& index, NameScheme scheme, const std::string& where)
      : index_(index), scheme_(scheme), where_(where) {}

  // nullptr when absent and not required.
  const FoundTensor* find(const std::string& name, const Expect& e, bool required) const {
    auto it = index_.find(name);
    if (it == index_.end()) {
      if (!required) return nullptr;
      std::string shown;
      json::append_quoted(shown, name);
      throw ModelError(ModelErrc::Corrupt, where_ + ": tensor " + shown + " is missing (expected shape " +
                                               list(e.shape) + " = " + e.meaning + ")");
    }
    const TensorView& v = it->second.view;
    if (v.shape != e.shape) {
      std::string shown;
      json::append_quoted(shown, name);
      std::string ne;
      if (scheme_ == NameScheme::Gguf) ne = " (ggml ne " + list({v.shape.rbegin(), v.shape.rend()}) + ")";
      throw ModelError(ModelErrc::ShapeMismatch,
                       it->second.file + ": tensor " + shown + ": shape " + list(v.shape) + ne +
                           " does not match the configuration: expected " + list(e.shape) + " = " + e.meaning);
    }
    check_bytes(it->second, name);
    return &it->second;
  }

  // The parsers size a tensor from its type; this catches a view whose bytes disagree with the
  // rows of its type (a hand-made index, a future parser) before a kernel reads past them.
  static void check_bytes(const FoundTensor& f, const std::string& name) {
    const TensorView& v = f.view;
    if (!is_quantized(v.dtype)) return;
    std::string why = quant::row_layout_error(v.dtype, v.cols(), v.group);
    const uint64_t need = why.empty() ? v.rows() * quant::row_bytes(v.dtype, v.cols(), v.group) : 0;
    if (why.empty() && v.bytes == need) return;
    std::string shown;
    json::append_quoted(shown, name);
    throw ModelError(ModelErrc::Corrupt, f.file + ": tensor " + shown + ": " +
                                             (why.empty() ? std::string(dtype_name(v.dtype)) + " data of " +
                                                                std::to_string(v.bytes) + " bytes, its shape needs " +
                                                                std::to_string(need)
                                                          : why));
  }

  TensorView take(const std::string& name, const Expect& e) const { return find(name, e, true)->view; }

  std::string layer_name(uint32_t layer, const LayerTensor& t) const {
    return scheme_ == NameScheme::Gguf ? "blk." + std::to_string(layer) + "." + t.gguf
                                       : "model.layers." + std::to_string(layer) + "." + t.hf;
  }

 private:
  const TensorIndex& index_;
  NameScheme scheme_;
  const std::string& where_;
};

// The layer a per-layer tensor name belongs to ("blk.12.attn_q.weight" -> 12), or -1 for a name
// outside the scheme's per-layer prefix.
int64_t layer_of(const std::string& name, NameScheme scheme) {
  const std::string prefix = scheme == NameScheme::Gguf ? "blk." : "model.layers.";
  if (name.compare(0, prefix.size(), prefix) != 0) return -1;
  size_t p = prefix.size();
  int64_t n = 0;
  for (; p < name.size() && name[p] >= '0' && name[p] <= '9'; ++p) {
    if (p - prefix.size() >= 12) return -1;  // no file has a trillion layers
    n = n * 10 + (name[p] - '0');
  }
  return p > prefix.size() && p < name.size() && name[p] == '.' ? n : -1;
}

// A layer count smaller than the layers the file holds would run a shallower model than the one
// trained, on the first layers' weights, and ignore the rest: refuse it, naming the key.
void check_layer_count(const LlamaConfig& c, const TensorIndex& index, NameScheme scheme) {
  std::set<int64_t> layers;
  const std::pair<const std::string, FoundTensor>* past = nullptr;  // a tensor of the highest layer
  int64_t top = -1;
  for (const auto& entry : index) {
    const int64_t l = layer_of(entry.first, scheme);
    if (l < 0) continue;
    layers.insert(l);
    if (l >= int64_t{c.num_layers} && (l > top || (l == top && entry.first < past->first))) {
      top = l;
      past = &entry;
    }
  }
  if (!past) return;
  const std::string key =
      scheme == NameScheme::Gguf ? "metadata key \"" + c.architecture + ".block_count\"" : "num_hidden_layers (config.json)";
  std::string shown;
  json::append_quoted(shown, past->first);
  throw ModelError(ModelErrc::Corrupt,
                   past->second.file + ": tensor " + shown + " belongs to layer " + std::to_string(top) + ", but " +
                       key + " declares " + std::to_string(c.num_layers) + " layers; the weights hold tensors of " +
                       std::to_string(layers.size()) + " layers (" + std::to_string(*layers.begin()) + ".." +
                       std::to_string(*layers.rbegin()) + ")");
}

bool same_bytes(const TensorView& a, const TensorView& b) {
  return a.dtype == b.dtype && a.shape == b.shape && a.bytes == b.bytes &&
         (a.data == b.data || std::memcmp(a.data, b.data, a.bytes) == 0);
}

}  // namespace

void assemble_weights(LlamaConfig& c, const TensorIndex& index, NameScheme scheme, const std::string& where,
                      LlamaWeights& w) {
  check_layer_count(c, index, scheme);
  Assembler a(index, scheme, where);
  const bool gguf = scheme == NameScheme::Gguf;
  const Expect embedding{{c.vocab_size, c.hidden_size}, "[vocab_size, hidden_size]"};
  const Expect norm{{c.hidden_size}, "[hidden_size]"};

  w.token_embedding = a.take(gguf ? "token_embd.weight" : "model.embed_tokens.weight", embedding);
  w.layers.clear();
  // Grown one layer at a time, so a corrupt layer count fails at the first missing tensor
  // instead of allocating for billions of layers.
  for (uint32_t l = 0; l < c.num_layers; ++l) {
    LlamaLayerWeights layer;
    for_each_layer_tensor(layer, [&](const LayerTensor& t, TensorView& view) {
      if (!t.bias || c.qkv_bias) view = a.take(a.layer_name(l, t), {layer_tensor_shape(t, c), t.meaning});
    });
    w.layers.push_back(std::move(layer));
  }
  w.output_norm = a.take(gguf ? "output_norm.weight" : "model.norm.weight", norm);

  const FoundTensor* out = a.find(gguf ? "output.weight" : "lm_head.weight", embedding, false);
  if (gguf) {
    // llama.cpp omits output.weight for tied models; older converters (stories260K's among
    // them) wrote a copy. Either way the embedding is the projection, and a copy is not worth
    // a second pass over the weights or the bytes in the page cache.
    c.tied_embeddings = !out || same_bytes(out->view, w.token_embedding);
  } else {
    c.tied_embeddings = c.tied_embeddings || !out;
  }
  w.output = c.tied_embeddings ? w.token_embedding : out->view;
}

std::vector<const TensorView*> distinct_tensors(const LlamaWeights& w) {
  std::vector<const TensorView*> out;
  out.push_back(&w.token_embedding);
  for (const LlamaLayerWeights& l : w.layers) {
    for_each_layer_tensor(l, [&](const LayerTensor&, const TensorView& view) {
      if (view.data) out.push_back(&view);
    });
  }
  out.push_back(&w.output_norm);
  if (w.output.data != w.token_embedding.data) out.push_back(&w.output);
  return out;
}

}  // namespace fineserve::model::detail
