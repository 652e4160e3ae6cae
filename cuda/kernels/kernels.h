// The CUDA backend's kernels as plain C++ functions over device pointers: what the executor calls
// and what test/cuda checks against cpp/core's CPU path. Every function enqueues on `stream` and
// returns at once (under the SIMT emulator it runs to completion first). Activations are float32
// in device memory, row-major; weights keep the byte layout of quant/weight_format.h, uploaded
// as they are, so GPU and CPU decode the very same bytes.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/device.h"
#include "kv/kv_geometry.h"
#include "model/tensor.h"

namespace fineserve::gpu {

// A weight matrix {rows = out, cols = in} in device memory, rows of quant::row_bytes() bytes.
struct DeviceMatrix {
  const uint8_t* data = nullptr;
  model::DType dtype = model::DType::F32;
  uint32_t rows = 0, cols = 0;
  uint32_t group = 0;        // W4A16 / W4A8
  uint64_t row_bytes = 0;    // quant::row_bytes(dtype, cols, group)
  uint64_t data_offset = 0;  // quant::row_data_offset for the fineserve formats, 0 otherwise
  const float* input_scale = nullptr;  // device, cols floats, or null (see model::TensorView)
};

// Weight types the GPU kernels read in place. The executor converts the others (the GGUF block
// formats) to F16 when it uploads them.
bool linear_supports(model::DType t);

// --- linear: y[t][o] = sum_i x'[t][i] * W[o][i] + bias[o] --------------------------------------
// x: [tokens][cols] f32; y: [tokens][rows] f32 (must not alias x); bias: rows f32 or null.
// x' is x times input_scale when set, then quantized as the weight type defines
// (quant/weight_format.h: int8 per token for W8A8, e4m3 per token for FP8 and W4A8, f16 for the
// tensor-core path of F16, bf16 for BF16). `scratch` must hold linear_scratch_bytes(w, tokens),
// which covers every call with at most `tokens` tokens.
size_t linear_scratch_bytes(const DeviceMatrix& w, uint32_t tokens);
void linear(const float* x, uint32_t tokens, const DeviceMatrix& w, const float* bias, float* y, void* scratch,
            Stream stream);

// The tensor-core GEMM of more than 8 tokens comes in two versions: v2 (128 x 128 tiles,
// cp.async pipeline, ldmatrix) from kGemmV2MinTokens tokens on, v1 (64 x 64 tiles) below that,
// where most of v2's tile would be empty. FINESERVE_GEMM=v1 (or v2) in the environment, read once,
// forces one version for every GEMM call. set_gemm_version is for benchmarks and tests that A/B
// the two in one process: 1 or 2 forces that version, 0 goes back to the environment's choice.
inline constexpr uint32_t kGemmV2MinTokens = 128;
void set_gemm_version(int version);
// The version linear() uses for a GEMM of `tokens` tokens under the current setting.
int gemm_version(uint32_t tokens);
// For tests of the fragment loads v2 relies on: one warp copies 32 rows of 8 16-bit values (src,
// device, 256 values) to shared memory, lane l gives the address of row row_of_lane[l] (device,
// 32 entries < 32) to one ldmatrix.x4, and out[4 l + i] (device, 128 words) is lane l's register i.
void ldmatrix_probe(const uint16_t* src, const uint32_t* row_of_lane, uint32_t* out, Stream stream);

// --- elementwise ------------------------------------------------------------------------------
// out[r][:] = row tokens[r] of the table as f32 (F32, F16 or BF16 tables).
void embed(const int32_t* tokens, uint32_t n, const DeviceMatrix& table, float* out, Stream stream);
// out = x / rms(x) * weight, per row of `dim` (sum of squares in double, as the CPU does); out may
// alias x. weight: dim f32.
void rms_norm(const float* x, uint32_t rows, uint32_t dim, const float* weight, float eps, float* out, Stream stream);
// Rotates every head of each row in place: row r is at position positions[r]; inv_freq:
// head_dim / 2 doubles (ops::rope_inv_freq). interleaved: pairs (2i, 2i+1), else (i, i + d/2).
void rope(float* x, uint32_t rows, uint32_t heads, uint32_t head_dim, const uint32_t* positions,
          const double* inv_freq, bool interleaved, Stream stream);
// gate = silu(gate) * up, n elements.
void silu_mul(float* gate, const float* up, size_t n, Stream stream);
// x += y, n elements.
void add_inplace(float* x, const float* y, size_t n, Stream stream);
// out[i][:] = x[rows[i]][:], dim floats per row.
void gather_rows(const float* x, const uint32_t* rows, uint32_t n, uint32_t dim, float* out, Stream stream);
// out[r] = the index of the largest logit of row r (the first one on ties; NaN never wins).
void argmax(const float* logits, uint32_t rows, uint32_t vocab, int32_t* out, Stream stream);

// Greedy sampling on the device, as engine::sample does it for temperature 0 without penalties:
// token[r] = the first index of the largest logit of row r (NaN counts as -inf), logprob[r] = its
// log-softmax under the raw logits (max + log of the sum of exp(l - max) in double). Only ids and
// log-probabilities cross to the host, not [rows][vocab] logits. A row of all NaN/-inf gives -1.
void greedy_sample(const float* logits, uint32_t rows, uint32_t vocab, int32_t* token, float* logprob, Stream stream);

// --- paged KV cache ---------------------------------------------------------------------------
// Rows first_row .. first_row + n_rows - 1 of a step: tokens of one sequence at consecutive
// positions. A chunk of fewer than kAttentionSpanMinRows rows is attended faster row by row.
struct AttentionSpan {
  uint32_t first_row = 0, n_rows = 0;
};
inline constexpr uint32_t kAttentionSpanMinRows = 8;

// One step's tokens as the cache kernels see them. All arrays are in device memory.
struct PagedBatch {
  uint8_t* slab = nullptr;                 // the KV Slab's base (device memory)
  const uint64_t* block_offsets = nullptr; // every sequence's blocks' byte offsets from `slab`, concatenated
  const uint32_t* seq_first_block = nullptr;  // per sequence: its first entry in block_offsets
  const uint32_t* token_seq = nullptr;     // per token row: its sequence
  const uint32_t* token_pos = nullptr;     // per token row: its position in its sequence
  uint32_t n_tokens = 0;
  uint32_t max_context = 0;                // the largest token_pos + 1 in the batch

  // Optional, for paged_attention: the rows that are consecutive tokens of one sequence at
  // consecutive positions (a prefill chunk), which it attends in tiles that read each cached K/V
  // row once for many query rows, and the list of all other rows. Without spans (n_spans == 0)
  // every row is attended on its own and single_rows is not read.
  const AttentionSpan* spans = nullptr;    // n_spans spans, disjoint
  const uint32_t* single_rows = nullptr;   // n_single_rows rows, in no span
  uint32_t n_spans = 0, max_span_rows = 0, n_single_rows = 0;

  // int4 caches: k4_snapshot_bytes(layout, n_tokens) bytes of device memory that write_kv fills
  // and paged_attention reads (a token's own block as its row left it, when a later row of the
  // same step changed that block; kv_codec.h). May be null only when no sequence has several rows
  // in the step (decode): without it such rows would read their block as the whole step left it.
  uint8_t* k4_snapshots = nullptr;
};

// The rows of one sequence in a step are consecutive, in position order: row r starts its
// sequence's run unless row r - 1 is the same sequence's previous position.
FINESERVE_HOST_DEVICE inline bool k4_run_starts(const PagedBatch& b, uint32_t r) {
  return r == 0 || b.token_seq[r - 1] != b.token_seq[r] || b.token_pos[r - 1] + 1 != b.token_pos[r];
}
// Whether row r has a snapshot: the next row is its sequence's next position, in the same block.
FINESERVE_HOST_DEVICE inline bool k4_has_snapshot(const PagedBatch& b, uint32_t r, uint32_t tpb) {
  return r + 1 < b.n_tokens && !k4_run_starts(b, r + 1) && (b.token_pos[r] + 1) % tpb != 0;
}
// One (row, KV head) snapshot: the block's tpb K rows of that head, then its channel params.
FINESERVE_HOST_DEVICE inline uint64_t k4_snapshot_row_bytes(const kv::KvLayout& l) {
  return uint64_t{l.geometry.tokens_per_block} * l.row_bytes + l.k_params_bytes();
}
size_t k4_snapshot_bytes(const kv::KvLayout& layout, uint32_t n_tokens);

// Stores K and V of every token row for one layer in the cache's format, as ops::write_kv does
// (int8 and int4 V scales from each (token, head) row alone, int4 K per channel over its block). k, v: [n_tokens][kv_heads * head_dim].
void write_kv(const kv::KvLayout& layout, uint32_t layer, const PagedBatch& batch, const float* k, const float* v,
              Stream stream);

// Causal attention for one layer, as ops::attention: token row r attends to positions
// 0..token_pos[r] of its sequence. q, out: [n_tokens][heads * head_dim]. Query head h reads KV
// head h / (heads / kv_heads); scores scaled by 1/sqrt(head_dim). `scratch` holds
// paged_attention_scratch_bytes(layout, heads, n, c) bytes for any batch of at most n tokens and
// max_context at most c; it lets few rows with long contexts spread over many CTAs. It may be
// null (then each row's context is read by one CTA).
size_t paged_attention_scratch_bytes(const kv::KvLayout& layout, uint32_t heads, uint32_t n_tokens,
                                     uint32_t max_context);
void paged_attention(const kv::KvLayout& layout, uint32_t layer, uint32_t heads, const PagedBatch& batch,
                     const float* q, float* out, void* scratch, Stream stream);
// The prefill tiles come in two versions: f32 (SIMT math, every head_dim from 64) and mma (f16
// tensor-core products with f32 accumulation, head_dim 64 and 128; ~1e-3 relative error from the
// f16 rounding of Q, K, P and V). mma is the default where it exists, except over an f32 cache,
// which keeps f32 attention. FINESERVE_ATTN_TILE=f32 (or
// mma) in the environment, read once, forces one; set_attention_tile is for tests and benchmarks
// that A/B them in one process: 1 forces f32, 2 mma (where supported), 0 goes back to the
// environment's choice.
void set_attention_tile(int variant);
// The version (1 f32, 2 mma) paged_attention's tiles use at `head_dim` over a `format` cache under
// the current setting.
int attention_tile(uint32_t head_dim, kv::KvFormat format);

// --- synthetic data, for benchmarks at real model sizes ------------------------------------------
// Fills every byte of `m` (rows of row_bytes at m.data, which must be writable) with random weights
// valid for its type, decoding to values about uniform in (-1, 1) / sqrt(cols), so activations keep
// their scale through any number of layers. Every scale field and padding is written as the
// layout of quant/weight_format.h requires.
void fill_synthetic(const DeviceMatrix& m, uint64_t seed, Stream stream);
// Random bytes each of which is in [0, 0x3F]: finite in every KV format (and as f16/bf16/f32
// halves and scales), for filling a KV slab that benchmarks read as context.
void fill_finite_bytes(uint8_t* p, size_t bytes, uint64_t seed, Stream stream);
// n floats set to `value`.
void fill_f32(float* p, size_t n, float value, Stream stream);

}  // namespace fineserve::gpu
