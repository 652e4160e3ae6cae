// The tensors of one transformer layer (LlamaLayerWeights), in one table, and one visitor over
// them: the loaders (names and shapes), the weight scan, quantization at load and the tests walk
// this instead of spelling the list. A new per-layer tensor is a field of LlamaLayerWeights and
// one row here.
#pragma once

#include <cstdint>
#include <vector>

#include "model/llama_config.h"
#include "model/llama_weights.h"

namespace fineserve::model {

// A dimension of a layer tensor's shape, in terms of the configuration.
enum class LayerDim : uint8_t { None, Hidden, QDim, KvDim, Ffn };

// Which activation a linear reads: the linears of one input share its input_scale (AWQ /
// SmoothQuant column scaling). None for norms and biases.
enum class LayerInput : uint8_t { None, Attn, AttnOut, Mlp, MlpOut };

struct LayerTensor {
  const char* role;                        // the LlamaLayerWeights field: "wq", "ffn_norm", ...
  TensorView LlamaLayerWeights::*member;
  // Names under llama.cpp's scheme (gguf-py/gguf/constants.py, MODEL_TENSOR; after "blk.N.") and
  // transformers' (modeling_llama.py / modeling_qwen2.py; after "model.layers.N.").
  const char* gguf;
  const char* hf;
  LayerDim rows, cols;                     // shape {rows, cols}; {rows} when cols is None
  const char* meaning;                     // the shape in words, for messages
  bool bias;                               // present only with LlamaConfig::qkv_bias (Qwen2)
  LayerInput input;                        // set exactly for the linears (quantized at load)

  bool linear() const { return input != LayerInput::None; }
};

inline constexpr LayerTensor kLayerTensors[] = {
    {"attn_norm", &LlamaLayerWeights::attn_norm, "attn_norm.weight", "input_layernorm.weight", LayerDim::Hidden,
     LayerDim::None, "[hidden_size]", false, LayerInput::None},
    {"wq", &LlamaLayerWeights::wq, "attn_q.weight", "self_attn.q_proj.weight", LayerDim::QDim, LayerDim::Hidden,
     "[num_heads * head_dim, hidden_size]", false, LayerInput::Attn},
    {"wk", &LlamaLayerWeights::wk, "attn_k.weight", "self_attn.k_proj.weight", LayerDim::KvDim, LayerDim::Hidden,
     "[num_kv_heads * head_dim, hidden_size]", false, LayerInput::Attn},
    {"wv", &LlamaLayerWeights::wv, "attn_v.weight", "self_attn.v_proj.weight", LayerDim::KvDim, LayerDim::Hidden,
     "[num_kv_heads * head_dim, hidden_size]", false, LayerInput::Attn},
    {"wo", &LlamaLayerWeights::wo, "attn_output.weight", "self_attn.o_proj.weight", LayerDim::Hidden, LayerDim::QDim,
     "[hidden_size, num_heads * head_dim]", false, LayerInput::AttnOut},
    {"bq", &LlamaLayerWeights::bq, "attn_q.bias", "self_attn.q_proj.bias", LayerDim::QDim, LayerDim::None,
     "[num_heads * head_dim]", true, LayerInput::None},
    {"bk", &LlamaLayerWeights::bk, "attn_k.bias", "self_attn.k_proj.bias", LayerDim::KvDim, LayerDim::None,
     "[num_kv_heads * head_dim]", true, LayerInput::None},
    {"bv", &LlamaLayerWeights::bv, "attn_v.bias", "self_attn.v_proj.bias", LayerDim::KvDim, LayerDim::None,
     "[num_kv_heads * head_dim]", true, LayerInput::None},
    {"ffn_norm", &LlamaLayerWeights::ffn_norm, "ffn_norm.weight", "post_attention_layernorm.weight",
     LayerDim::Hidden, LayerDim::None, "[hidden_size]", false, LayerInput::None},
    {"w_gate", &LlamaLayerWeights::w_gate, "ffn_gate.weight", "mlp.gate_proj.weight", LayerDim::Ffn,
     LayerDim::Hidden, "[intermediate_size, hidden_size]", false, LayerInput::Mlp},
    {"w_up", &LlamaLayerWeights::w_up, "ffn_up.weight", "mlp.up_proj.weight", LayerDim::Ffn, LayerDim::Hidden,
     "[intermediate_size, hidden_size]", false, LayerInput::Mlp},
    {"w_down", &LlamaLayerWeights::w_down, "ffn_down.weight", "mlp.down_proj.weight", LayerDim::Hidden,
     LayerDim::Ffn, "[hidden_size, intermediate_size]", false, LayerInput::MlpOut},
};

inline uint64_t layer_dim(LayerDim d, const LlamaConfig& c) {
  switch (d) {
    case LayerDim::Hidden: return c.hidden_size;
    case LayerDim::QDim: return uint64_t{c.num_heads} * c.head_dim;
    case LayerDim::KvDim: return uint64_t{c.num_kv_heads} * c.head_dim;
    case LayerDim::Ffn: return c.intermediate_size;
    case LayerDim::None: break;
  }
  return 0;
}

// The shape `c` expects of a layer tensor, outermost first.
inline std::vector<uint64_t> layer_tensor_shape(const LayerTensor& t, const LlamaConfig& c) {
  if (t.cols == LayerDim::None) return {layer_dim(t.rows, c)};
  return {layer_dim(t.rows, c), layer_dim(t.cols, c)};
}

// Calls f(const LayerTensor&, TensorView&) for every tensor of `layer`, in table order (absent
// biases included: their view has data == nullptr). Layer is LlamaLayerWeights, const or not.
template <class Layer, class F>
void for_each_layer_tensor(Layer& layer, F&& f) {
  for (const LayerTensor& t : kLayerTensors) f(t, layer.*t.member);
}

}  // namespace fineserve::model
