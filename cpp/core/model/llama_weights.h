// The weights a Llama-family forward pass reads, as views into the loaded files. A loader fills
// this and checks every shape against the LlamaConfig; the forward pass trusts it.
#pragma once

#include <vector>

#include "model/llama_config.h"
#include "model/tensor.h"

namespace fineserve::model {

struct LlamaLayerWeights {
  TensorView attn_norm;                 // {hidden}
  TensorView wq, wk, wv, wo;            // {heads*head_dim, hidden}, {kv*head_dim, hidden} x2, {hidden, heads*head_dim}
  TensorView bq, bk, bv;                // Qwen2 only (data == nullptr otherwise)
  TensorView ffn_norm;                  // {hidden}
  TensorView w_gate, w_up, w_down;      // {ffn, hidden}, {ffn, hidden}, {hidden, ffn}
};

struct LlamaWeights {
  TensorView token_embedding;           // {vocab, hidden}
  std::vector<LlamaLayerWeights> layers;
  TensorView output_norm;               // {hidden}
  TensorView output;                    // {vocab, hidden}; the embedding when tied
};

}  // namespace fineserve::model
