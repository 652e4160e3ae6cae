// Re-encoding a GGUF file's weights as llama-quantize does for its file types Q8_0, Q4_0, Q4_K_S
// (our "q4_k"), Q4_K_M and Q6_K (LLAMA_FTYPE_MOSTLY_*, src/llama-quant.cpp), choosing the type of
// each tensor by its rules, so llama.cpp-based tools load the result and see the same blocks:
//   - metadata is copied key by key, in order and bit for bit (tokenizer included), except
//     general.file_type (llama_ftype below) and general.quantization_version (2, as ggml's
//     GGML_QNT_VERSION); either is appended when the source lacks it. The source's alignment is kept.
//   - tensors whose name ends in "weight" with two or more dimensions are quantized, except norms
//     (*_norm.weight) and the few small tensors llama-quantize also leaves alone (MoE router, position
//     and token-type embeddings); everything else (1-D tensors) is copied as it is.
//   - the output projection (output.weight; token_embd.weight when the embeddings are tied) is Q6_K
//     in Q4_K, Q4_K_M and Q6_K files (Q8_0 when its rows are not whole blocks of the file's type),
//     Q8_0 in Q8_0 files. llama-quantize gives it Q6_K in Q4_0 files too; here Q4_0 files keep the
//     Q8_0 they had before this writer could write Q6_K (the CPU benchmarks' Q4_0 files stay as
//     they were measured).
//   - Q4_K_M: the main type is Q4_K; attn_v (also attn_qkv / attn_kv_b) and ffn_down are Q6_K in
//     the layers llama.cpp's use_more_bits picks: i < n/8, i >= 7n/8, or (i - n/8) % 3 == 2, counting
//     those tensors in file order (n: how many there are). Q4_K ("q4_k") is Q4_K_S without its
//     Q5_K bumps (this build cannot write Q5_K): every other matrix Q4_K.
//   - a row length that is not a multiple of the chosen type's block falls back as llama-quantize
//     does: Q6_K -> Q8_0, Q4_K -> Q5_0, which this build cannot write, so Q8_0 (more bits, never
//     fewer). A row that is not a multiple of 32 either (llama-quantize: F16; Q8_0/Q4_0 files: an
//     error) keeps its source type: rounding F32 to F16 would also make llama.cpp round the
//     activations to F16 in that product (its F16 dot type), so the two engines would no longer
//     compute the same thing on the file. (stories260K, dim 64: every matrix but ffn_down is Q8_0
//     in its Q4_K_M file, ffn_down, rows of 172, stays F32; the K-quant blocks need rows of 256.)
//   - a tensor already in its chosen type is copied unchanged (as llama-quantize does); other
//     quantized sources (Q8_0, Q4_0, Q4_K, Q6_K) are decoded and requantized.
// The output is streamed a block of rows at a time into `dst + ".part"` and renamed into place when
// complete: a cancelled or failed write leaves no file.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
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
  std::vector<std::string> quantized;  // tensors written in the main type, in file order
  std::vector<GgufTensorType> kept;    // the others, with the type they were written in
};

// The file types written, as llama-quantize names them (Q4_K is its Q4_K_S, see above).
enum class GgufQuantType { Q8_0, Q4_0, Q4_K, Q6_K, Q4_K_M };

// "q8_0", "q4_0", "q4_k", "q6_k", "q4_k_m" (the CLI's names); nullopt for any other.
std::optional<GgufQuantType> gguf_quant_type_from_name(std::string_view name);
// The names gguf_quant_type_from_name takes, in GgufQuantType order.
const std::vector<std::string>& gguf_quant_type_names();
// The block type most matrices get (Q4_K for Q4_K_M).
DType gguf_quant_main_type(GgufQuantType type);
// llama.cpp's general.file_type: 7, 2, 14 (MOSTLY_Q4_K_S), 18, 15.
uint32_t llama_ftype(GgufQuantType type);

// The type of every tensor of `in` (in file order) in a file of `type`, by the rules above.
std::vector<DType> gguf_quantized_types(const gguf::File& in, GgufQuantType type);

// Writes `src_gguf` to `dst` as a file of `type`. `on_progress` gets the fraction done (0..1) and
// returns false to cancel: ModelError(Cancelled). Errors name the file and the tensor: ModelError
// (NotFound, Corrupt, Unsupported, BadWeights: a NaN or Inf in a tensor being quantized),
// std::runtime_error for I/O.
QuantizeGgufResult write_quantized_gguf(const std::string& src_gguf, const std::string& dst, GgufQuantType type,
                                        const std::function<bool(double)>& on_progress = {});
// The same with the file type named by its main block type (Q8_0, Q4_0, Q4_K, Q6_K);
// std::invalid_argument for any other DType.
QuantizeGgufResult write_quantized_gguf(const std::string& src_gguf, const std::string& dst, DType target,
                                        const std::function<bool(double)>& on_progress = {});

}  // namespace fineserve::model
