// Post-training quantization of a loaded model's linear layers (LoadOptions::quantize).
//
// Per layer, the 7 linear weights are read as f32 and transformed, then rounded to nearest:
//  - FireQ-style pre-RoPE K smoothing when the KV cache is int4 (spec.kv == Int4, smooth_k):
//    per KV head and per pair of channels that RoPE rotates together, K is divided and the
//    matching channels of every query head of the group multiplied by one factor
//    s = sqrt(max|k| / max|q|) clamped to [1/16, 16]. A pair-shared factor commutes with the
//    rotation, so q.k, and the attention, are unchanged; K's outlier channels shrink before the
//    int4 cache rounds them. Folded into W_k/b_k and W_q/b_q rows.
//  - with calibration, per-input-channel scaling of each linear input (the attention input
//    shared by q/k/v, o_proj's, the MLP input shared by gate/up, down_proj's): the weights'
//    columns are multiplied by s and TensorView::input_scale = 1/s divides the activations.
//      W4A16: AWQ, s = mean|x|^alpha normalised by sqrt(max s * min s).
//      W8A8, W4A8, FP8: SmoothQuant/FireQ, s = max|x|^alpha / max|W_:,c|^(1 - alpha).
//    alpha on AWQ's grid {0, 1/20, .., 19/20}, plus "no scaling", is chosen per input by the
//    squared output error of the quantized linears (activations quantized as the format does)
//    on a subsample of the calibration activations; "no scaling" wins when nothing helps.
// Without calibration it is plain round-to-nearest (and K smoothing from weight norms).
// The plain targets F32/F16/BF16 (QuantizeSpec) convert every matrix instead: each row read as
// f32 and rounded to nearest even in the target type, no transform.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "engine/thread_pool.h"
#include "model/channel_scales.h"
#include "model/loader.h"

namespace fineserve::model {

// Throws ModelError naming the field and value when `spec` asks for something other than W8A8,
// FP8, W4A16, W4A8, F32, F16, BF16, has a bad group size, or calibrates a plain conversion.
void check_quantize_spec(const QuantizeSpec& spec);

// Throws ModelError naming the tensor when a linear weight of `model` is not F32/F16/BF16, or
// its row length cannot be stored with spec.group; and the calibration checks.
void check_quantizable(const LoadedModel& model, const QuantizeSpec& spec);

// Quantizes `model` in place: checks it (check_quantizable), calibrates when the spec has
// sequences, then per layer scale_layer and rounding into buffers the model owns
// (LoadedModel::owned), and updates weight_bytes and quantized. on_progress gets the fraction of
// the estimated work done and cancels (ModelError(Cancelled)) by returning false; on_replaced is
// called with each view whose data is no longer used, once the model points elsewhere. After a
// throw the model is partly quantized and must be discarded (load_model does).
void quantize_model(LoadedModel& model, const QuantizeSpec& spec, engine::ThreadPool& pool,
                    const std::function<bool(double)>& on_progress = {},
                    const std::function<void(const TensorView& replaced)>& on_replaced = {});

// The estimated cost of quantize_model relative to scanning one byte of weights at load, so
// load_model can split its progress honestly between the phases.
double quantize_cost(const LlamaConfig& config, const QuantizeSpec& spec);

}  // namespace fineserve::model
