// Random-weight models of real Llama-family shapes, written as GGUF or as a Hugging Face folder,
// for numerics tests at real head sizes and for benchmarks at real model sizes without
// downloading anything.
//
// The weights are drawn once, in Hugging Face convention (Q/K rows in rotate-half order), from a
// stream per tensor row that depends only on (seed, tensor, row); a GGUF "llama" file stores Q/K
// rows permuted for interleaved RoPE, as llama.cpp's converter does. So one seed is one model:
// its GGUF file and its HF folder hold the same numbers and must give the same logits.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/llama_config.h"
#include "model/tensor.h"

namespace fineserve::model {

struct GenerateOptions {
  // "tiny", "tiny-qwen2", "llama-100m", "llama-3.2-1b", "llama-3-8b", "qwen2.5-0.5b".
  std::string shape = "tiny";
  uint32_t layers = 0;            // 0: the shape's own
  uint32_t vocab = 0;             // 0: the shape's own
  DType dtype = DType::F16;       // of the matrices (GGUF keeps 1-D tensors in F32, as llama.cpp does)
  std::string format = "gguf";    // "gguf" (a file) or "hf" (a folder)
  uint64_t seed = 0;
  std::string out;                // the .gguf file, or the folder for "hf"
  // "hf": a new model-0000i-of-0000n.safetensors starts past this many bytes (0: one file).
  uint64_t max_shard_bytes = 5'000'000'000ull;
  // Called with the fraction written (0..1); return false to cancel, which throws
  // ModelError(Cancelled) and removes what was written.
  std::function<bool(double fraction)> on_progress;
};

struct GenerateResult {
  std::string path;
  uint64_t parameters = 0;        // weights in the model (tied embeddings counted once)
  uint64_t bytes = 0;             // bytes written, all files together
  LlamaConfig config;             // what a loader should read back from it
};

// The shape names generate_model accepts.
std::vector<std::string> model_shapes();

// The configuration of a shape, with layers/vocab overridden when non-zero, as an HF folder holds
// it (rope_style HalfSplit). Throws std::invalid_argument naming the known shapes.
LlamaConfig shape_config(const std::string& shape, uint32_t layers = 0, uint32_t vocab = 0);

// Weights in a model of this configuration (tied embeddings counted once).
uint64_t parameter_count(const LlamaConfig& config);

// Writes the model; throws std::invalid_argument for bad options, std::runtime_error for I/O.
GenerateResult generate_model(const GenerateOptions& options);

// The row of the Hugging Face Q or K matrix (or bias) that row `gguf_row` of the GGUF "llama"
// tensor holds: within each head, GGUF row 2i + j is HF row j * head_dim / 2 + i.
inline uint64_t hf_row_of_gguf_qk_row(uint64_t gguf_row, uint32_t head_dim) {
  uint64_t head = gguf_row / head_dim, k = gguf_row % head_dim;
  return head * head_dim + (k % 2) * (head_dim / 2) + k / 2;
}

}  // namespace fineserve::model
