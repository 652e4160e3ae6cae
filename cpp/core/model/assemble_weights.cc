// Tensor names -> LlamaWeights, with every shape checked against the configuration, so the
// forward pass can trust what it is given.
#include <cstring>
#include <string>
#include <vector>

#include "model/json.h"
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

// One tensor of a layer under both naming schemes: llama.cpp's (gguf-py/gguf/constants.py,
// MODEL_TENSOR) and transformers' modeling_llama.py / modeling_qwen2.py.
struct LayerSlot {
  TensorView LlamaLayerWeights::*member;
  const char* gguf;
  const char* hf;
  bool bias;
};
const LayerSlot kLayerSlots[] = {
    {&LlamaLayerWeights::attn_norm, "attn_norm.weight", "input_layernorm.weight", false},
    {&LlamaLayerWeights::wq, "attn_q.weight", "self_attn.q_proj.weight", false},
    {&LlamaLayerWeights::wk, "attn_k.weight", "self_attn.k_proj.weight", false},
    {&LlamaLayerWeights::wv, "attn_v.weight", "self_attn.v_proj.weight", false},
    {&LlamaLayerWeights::wo, "attn_output.weight", "self_attn.o_proj.weight", false},
    {&LlamaLayerWeights::bq, "attn_q.bias", "self_attn.q_proj.bias", true},
    {&LlamaLayerWeights::bk, "attn_k.bias", "self_attn.k_proj.bias", true},
    {&LlamaLayerWeights::bv, "attn_v.bias", "self_attn.v_proj.bias", true},
    {&LlamaLayerWeights::ffn_norm, "ffn_norm.weight", "post_attention_layernorm.weight", false},
    {&LlamaLayerWeights::w_gate, "ffn_gate.weight", "mlp.gate_proj.weight", false},
    {&LlamaLayerWeights::w_up, "ffn_up.weight", "mlp.up_proj.weight", false},
    {&LlamaLayerWeights::w_down, "ffn_down.weight", "mlp.down_proj.weight", false},
};

class Assembler {
 public:
  Assembler(const LlamaConfig& c, const TensorIndex& index, NameScheme scheme, const std::string& where)
      : c_(c), index_(index), scheme_(scheme), where_(where) {}

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

  Expect layer_expect(const TensorView LlamaLayerWeights::*m) const {
    uint64_t hidden = c_.hidden_size, ffn = c_.intermediate_size;
    uint64_t q = uint64_t(c_.num_heads) * c_.head_dim, kv = uint64_t(c_.num_kv_heads) * c_.head_dim;
    using L = LlamaLayerWeights;
    if (m == &L::attn_norm || m == &L::ffn_norm) return {{hidden}, "[hidden_size]"};
    if (m == &L::wq) return {{q, hidden}, "[num_heads * head_dim, hidden_size]"};
    if (m == &L::wk || m == &L::wv) return {{kv, hidden}, "[num_kv_heads * head_dim, hidden_size]"};
    if (m == &L::wo) return {{hidden, q}, "[hidden_size, num_heads * head_dim]"};
    if (m == &L::bq) return {{q}, "[num_heads * head_dim]"};
    if (m == &L::bk || m == &L::bv) return {{kv}, "[num_kv_heads * head_dim]"};
    if (m == &L::w_gate || m == &L::w_up) return {{ffn, hidden}, "[intermediate_size, hidden_size]"};
    return {{hidden, ffn}, "[hidden_size, intermediate_size]"};  // w_down
  }

  std::string layer_name(uint32_t layer, const LayerSlot& s) const {
    return scheme_ == NameScheme::Gguf ? "blk." + std::to_string(layer) + "." + s.gguf
                                       : "model.layers." + std::to_string(layer) + "." + s.hf;
  }

 private:
  const LlamaConfig& c_;
  const TensorIndex& index_;
  NameScheme scheme_;
  const std::string& where_;
};

bool same_bytes(const TensorView& a, const TensorView& b) {
  return a.dtype == b.dtype && a.shape == b.shape && a.bytes == b.bytes &&
         (a.data == b.data || std::memcmp(a.data, b.data, a.bytes) == 0);
}

}  // namespace

void assemble_weights(LlamaConfig& c, const TensorIndex& index, NameScheme scheme, const std::string& where,
                      LlamaWeights& w) {
  Assembler a(c, index, scheme, where);
  const bool gguf = scheme == NameScheme::Gguf;
  const Expect embedding{{c.vocab_size, c.hidden_size}, "[vocab_size, hidden_size]"};
  const Expect norm{{c.hidden_size}, "[hidden_size]"};

  w.token_embedding = a.take(gguf ? "token_embd.weight" : "model.embed_tokens.weight", embedding);
  w.layers.clear();
  // Grown one layer at a time, so a corrupt layer count fails at the first missing tensor
  // instead of allocating for billions of layers.
  for (uint32_t l = 0; l < c.num_layers; ++l) {
    LlamaLayerWeights layer;
    for (const LayerSlot& s : kLayerSlots) {
      if (s.bias && !c.qkv_bias) continue;
      layer.*s.member = a.take(a.layer_name(l, s), a.layer_expect(s.member));
    }
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
    for (const LayerSlot& s : kLayerSlots) {
      if ((l.*s.member).data) out.push_back(&(l.*s.member));
    }
  }
  out.push_back(&w.output_norm);
  if (w.output.data != w.token_embedding.data) out.push_back(&w.output);
  return out;
}

}  // namespace fineserve::model::detail
