// Re-encoding a GGUF file's weights as Q8_0 or Q4_0, choosing per tensor as llama-quantize does for
// LLAMA_FTYPE_MOSTLY_Q8_0 / MOSTLY_Q4_0 (src/llama-quant.cpp), so llama.cpp-based tools load the
// result and see the same blocks:
//   - metadata is copied key by key, in order and bit for bit (tokenizer included), except
//     general.file_type (7 for Q8_0, 2 for Q4_0) and general.quantization_version (2, as ggml's
//     GGML_QNT_VERSION); either is appended when the source lacks it. The source's alignment is kept.
//   - tensors whose name ends in "weight" with two or more dimensions are quantized, except norms
//     (*_norm.weight) and the few small tensors llama-quantize also leaves alone (MoE router, position
//     and token-type embeddings); everything else (1-D tensors) is copied as it is.
//   - output.weight (token_embd.weight when the embeddings are tied) is Q6_K in llama-quantize's Q4_0
//     files; this build cannot write Q6_K, so it gets Q8_0, the next type up with more bits.
//   - a row length that is not a multiple of 32 cannot be Q8_0/Q4_0. llama-quantize stops there
//     ("Unsupported tensor size encountered"); here such tensors keep their source type. Rounding
//     F32 to F16 would also make llama.cpp round the activations to F16 in that product (its F16
//     dot type), so the two engines would no longer compute the same thing on the file.
//   - a tensor already in its chosen type is copied unchanged (as llama-quantize does); other
//     quantized sources (Q8_0, Q4_0, Q4_K, Q6_K) are decoded and requantized.
// The output is streamed a block of rows at a time into `dst + ".part"` and renamed into place when
// complete: a cancelled or failed write leaves no file.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/gguf.h"
#include "model/tensor.h"

namespace fineserve::model {

struct GgufTensorType {
  std::string name;
  DType type;
};

struct QuantizeGgufResult {
  std::string path;
  uint64_t bytes = 0;                  // size of the written file
  std::vector<std::string> quantized;  // tensors written in the target type, in file order
  std::vector<GgufTensorType> kept;    // the others, with the type they were written in
};

// The type tensor `t` gets in a file of `target` (Q8_0 or Q4_0). `tied` says the file has no
// output.weight, so token_embd.weight is the output projection too.
DType gguf_quantized_type(const gguf::TensorInfo& t, DType target, bool tied);

// Writes `src_gguf` to `dst` with its weights in `target`. `on_progress` gets the fraction done
// (0..1) and returns false to cancel: ModelError(Cancelled). Errors name the file and the tensor:
// ModelError (NotFound, Corrupt, Unsupported, BadWeights: a NaN or Inf in a tensor being
// quantized), std::invalid_argument for a target other than Q8_0/Q4_0, std::runtime_error for I/O.
QuantizeGgufResult write_quantized_gguf(const std::string& src_gguf, const std::string& dst, DType target,
                                        const std::function<bool(double)>& on_progress = {});

}  // namespace fineserve::model
