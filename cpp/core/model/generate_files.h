// The non-weight parts of a generated model: GGUF metadata (hyper-parameters and a minimal
// tokenizer block) and the JSON files of a Hugging Face folder. Internal to generate.cc.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/gguf_writer.h"
#include "model/llama_config.h"
#include "model/tensor.h"

namespace fineserve::model::gen {

// Token pieces of the stand-in vocabulary: <unk>, <s>, </s>, the 256 byte tokens <0xNN> that
// SentencePiece-style vocabularies carry (llama.cpp looks up "<0x0A>" for newline), then <tok_N>.
std::vector<std::string> vocab_pieces(uint32_t vocab_size);
constexpr int32_t kUnkId = 0, kBosId = 1, kEosId = 2;

// Hyper-parameters under "<architecture>.*" as llama.cpp names them, the tokenizer.ggml block,
// and general.* keys.
void add_gguf_metadata(GgufWriter& w, const LlamaConfig& c, DType dtype, const std::string& shape, uint64_t seed);

// Per rotary pair i: the divisor of its frequency under Llama 3 scaling, what llama.cpp stores in
// the rope_freqs.weight tensor (HF's _compute_llama3_parameters divides inv_freq by the same).
std::vector<float> llama3_rope_divisors(const LlamaConfig& c);

// config.json, generation_config.json, tokenizer.json and tokenizer_config.json. Returns their
// total size in bytes.
uint64_t write_hf_files(const std::string& folder, const LlamaConfig& c, DType dtype, const std::string& shape,
                        uint64_t seed);

// Shortest decimal text that reads back as the same float ("1e-05", not "9.99999975e-06").
std::string float_text(float v);

}  // namespace fineserve::model::gen
