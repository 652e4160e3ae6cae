// gpu::linear: y = x' W^T + b on the GPU, for the weight types it reads in place. Each call first
// prepares the activations once into `scratch` (input_scale applied, then quantized per token as
// the weight type defines, exactly as cpp/core's quant::prepare_activations does), then runs
//   - up to kGemvMaxTokens tokens: the GEMV of linear_gemv.cuh (decode: bound by weight reads);
//   - more tokens: the tensor-core GEMM of linear_gemm_v2.cuh (from kGemmV2MinTokens) or
//     linear_gemm.cuh (v1), or, for F32, the GEMV over token tiles.
#include <algorithm>
#include <stdexcept>
#include <string>

#include "common/cuda_lang.cuh"
#include "common/kernel_choice.h"
#include "common/launch.cuh"
#include "common/numeric.cuh"
#include "kernels/kernels.h"
#include "kernels/linear_common.cuh"
#include "kernels/linear_gemm.cuh"
#include "kernels/linear_gemm_v2.cuh"
#include "kernels/linear_gemv.cuh"
#include "quant/fp8.h"
#include "quant/weight_format.h"
#include "quant/weight_traits.h"

namespace fineserve::gpu {

using model::DType;
using namespace linear_detail;

namespace {

constexpr int kPrepThreads = 128;

// One block per token: the token's abs max (for the per-token scale), then every element of its
// padded row in scratch. Divisions and roundings are the CPU's (IEEE division, round half to even)
// so the quantized activations are bit for bit those of quant::prepare_activations.
template <ActKind K>
__global__ void __launch_bounds__(kPrepThreads) prepare_activations_kernel(const float* x, uint32_t cols,
                                                                          const float* input_scale, uint8_t* act,
                                                                          uint32_t stride, float* token_scale) {
  constexpr bool kScaled = K == ActKind::I8 || K == ActKind::E4M3 || K == ActKind::E4M3_AS_F16;
  const uint32_t tok = blockIdx.x;
  const float* xt = x + static_cast<uint64_t>(tok) * cols;
  auto scaled = [&](uint32_t i) { return input_scale != nullptr ? xt[i] * input_scale[i] : xt[i]; };
  float sx = 0.0f;
  if constexpr (kScaled) {
    __shared__ float warp_amax[kPrepThreads / 32];
    float m = 0.0f;
    for (uint32_t i = threadIdx.x; i < cols; i += kPrepThreads) m = fmaxf(m, fabsf(scaled(i)));
    m = warp_max(m);
    if (threadIdx.x % 32 == 0) warp_amax[threadIdx.x / 32] = m;
    __syncthreads();
    float amax = 0.0f;
    for (int w = 0; w < kPrepThreads / 32; ++w) amax = fmaxf(amax, warp_amax[w]);
    sx = amax / (K == ActKind::I8 ? 127.0f : quant::kFp8Max);
    if (threadIdx.x == 0) token_scale[tok] = sx;
  }
  uint8_t* out = act + static_cast<uint64_t>(tok) * stride * act_bytes(K);
  for (uint32_t i = threadIdx.x; i < stride; i += kPrepThreads) {
    const float v = i < cols ? scaled(i) : 0.0f;
    if constexpr (K == ActKind::F32) {
      reinterpret_cast<float*>(out)[i] = v;
    } else if constexpr (K == ActKind::F16) {
      reinterpret_cast<uint16_t*>(out)[i] = f32_to_f16(v);
    } else if constexpr (K == ActKind::BF16) {
      reinterpret_cast<uint16_t*>(out)[i] = f32_to_bf16(v);
    } else if constexpr (K == ActKind::I8) {
      reinterpret_cast<int8_t*>(out)[i] = sx != 0.0f ? static_cast<int8_t>(rintf(v / sx)) : int8_t{0};
    } else {
      const uint8_t q = sx != 0.0f ? f32_to_fp8(v / sx) : uint8_t{0};
      if constexpr (K == ActKind::E4M3) {
        out[i] = q;
      } else {
        reinterpret_cast<uint16_t*>(out)[i] = f32_to_f16(fp8_to_f32(q));  // exact
      }
    }
  }
}

struct Plan {
  bool gemm = false;
  ActKind act = ActKind::F32;
  uint32_t stride = 0;  // activation elements per token
  size_t scale_offset = 0, act_offset = 0, bytes = 0;
};

size_t round_up(size_t n, size_t m) { return (n + m - 1) / m * m; }

template <ActKind K>
void launch_prepare_as(const char* name, const float* x, uint32_t tokens, const DeviceMatrix& w, const Plan& p,
                       uint8_t* base, Stream s) {
  launch(name, prepare_activations_kernel<K>, dim3(tokens), dim3(kPrepThreads), 0, s, x, w.cols, w.input_scale,
         base + p.act_offset, p.stride, reinterpret_cast<float*>(base + p.scale_offset));
}

void launch_prepare(ActKind k, const float* x, uint32_t tokens, const DeviceMatrix& w, const Plan& p, uint8_t* base,
                    Stream s) {
  switch (k) {
    case ActKind::F32: return launch_prepare_as<ActKind::F32>("linear_prepare_f32", x, tokens, w, p, base, s);
    case ActKind::F16: return launch_prepare_as<ActKind::F16>("linear_prepare_f16", x, tokens, w, p, base, s);
    case ActKind::BF16: return launch_prepare_as<ActKind::BF16>("linear_prepare_bf16", x, tokens, w, p, base, s);
    case ActKind::I8: return launch_prepare_as<ActKind::I8>("linear_prepare_i8", x, tokens, w, p, base, s);
    case ActKind::E4M3: return launch_prepare_as<ActKind::E4M3>("linear_prepare_e4m3", x, tokens, w, p, base, s);
    case ActKind::E4M3_AS_F16:
      return launch_prepare_as<ActKind::E4M3_AS_F16>("linear_prepare_e4m3_f16", x, tokens, w, p, base, s);
  }
}

template <DType D, int T>
void launch_gemv(GemvParams p, uint32_t tiles, Stream s) {
  const dim3 grid((p.rows + kRowsPerGemvBlock - 1) / kRowsPerGemvBlock, tiles), block(kGemvWarps * 32);
  launch("linear_gemv", gemv_kernel<D, T>, grid, block, 0, s, p);
}

// Full tiles of kGemvMaxTokens in one launch, the remainder with its exact count.
template <DType D>
void run_gemv(GemvParams p, uint32_t tokens, Stream s) {
  static_assert(kGemvMaxTokens == 8, "the switch below instantiates 1..8 tokens");
  const uint32_t full = tokens / 8, rest = tokens % 8;
  if (full > 0) launch_gemv<D, 8>(p, full, s);
  p.token0 = full * 8;
  switch (rest) {
    case 1: launch_gemv<D, 1>(p, 1, s); break;
    case 2: launch_gemv<D, 2>(p, 1, s); break;
    case 3: launch_gemv<D, 3>(p, 1, s); break;
    case 4: launch_gemv<D, 4>(p, 1, s); break;
    case 5: launch_gemv<D, 5>(p, 1, s); break;
    case 6: launch_gemv<D, 6>(p, 1, s); break;
    case 7: launch_gemv<D, 7>(p, 1, s); break;
    default: break;
  }
}

template <DType D>
void run_gemm(const GemmParams& p, int version, Stream s) {
  if (version == 2) {
    const dim3 grid((p.rows + kGemm2N - 1) / kGemm2N, (p.tokens + kGemm2M - 1) / kGemm2M), block(kGemm2Threads);
    if (direct_weights<D>(p.vec_ok)) {
      launch("linear_gemm_v2", gemm_v2_kernel<D, direct_weights<D>(true)>, grid, block, kGemm2SmemBytes, s, p);
    } else {
      launch("linear_gemm_v2", gemm_v2_kernel<D, direct_weights<D>(false)>, grid, block, kGemm2SmemBytes, s, p);
    }
    return;
  }
  const dim3 grid((p.rows + kGemmN - 1) / kGemmN, (p.tokens + kGemmM - 1) / kGemmM), block(kGemmThreads);
  launch("linear_gemm", gemm_kernel<D>, grid, block, 0, s, p);
}

KernelChoice g_gemm("FINESERVE_GEMM", "v1", "v2");

// The CUDA side of the rows of quant/weight_traits.h whose gpu is GpuSupport::Native: the
// GEMV/GEMM instantiations of each type and the activations they read. A type added there as
// Native gets one entry here (gpu_type() refuses a Native row without one).
struct GpuType {
  DType type;
  void (*gemv)(GemvParams p, uint32_t tokens, Stream s);
  void (*gemm)(const GemmParams& p, int version, Stream s);  // nullptr: the GEMV over token tiles
  ActKind gemv_act, gemm_act;
  // 16-byte vectors of a quantized row hold this many elements (its data is padded to them);
  // 0 for the plain types, whose rows are whole vectors when they stay 16-byte aligned.
  uint32_t vector_elements;
};

const GpuType kGpuTypes[] = {
    {DType::F32, run_gemv<DType::F32>, nullptr, ActKind::F32, ActKind::F16, 0},
    {DType::F16, run_gemv<DType::F16>, run_gemm<DType::F16>, ActKind::F32, ActKind::F16, 0},
    {DType::BF16, run_gemv<DType::BF16>, run_gemm<DType::BF16>, ActKind::F32, ActKind::BF16, 0},
    {DType::W8A8, run_gemv<DType::W8A8>, run_gemm<DType::W8A8>, ActKind::I8, ActKind::I8, 16},
    {DType::FP8, run_gemv<DType::FP8>, run_gemm<DType::FP8>, ActKind::E4M3, ActKind::E4M3_AS_F16, 16},
    {DType::W4A16, run_gemv<DType::W4A16>, run_gemm<DType::W4A16>, ActKind::F32, ActKind::F16, 32},
    {DType::W4A8, run_gemv<DType::W4A8>, run_gemm<DType::W4A8>, ActKind::E4M3, ActKind::E4M3_AS_F16, 32},
};

const GpuType* find_gpu_type(DType t) {
  for (const GpuType& g : kGpuTypes) {
    if (g.type == t) return &g;
  }
  return nullptr;
}

// Checked once: the Native rows of quant::traits and this table name the same types.
const GpuType& gpu_type(DType t) {
  static const bool consistent = [] {
    for (const quant::WeightTypeTraits& row : quant::all_weight_types()) {
      if ((row.gpu == quant::GpuSupport::Native) != (find_gpu_type(row.type) != nullptr)) {
        throw std::logic_error(std::string("gpu::linear: ") + row.name +
                               ": quant::traits' gpu support and the CUDA kernel table disagree");
      }
    }
    return true;
  }();
  (void)consistent;
  const GpuType* g = find_gpu_type(t);
  if (g == nullptr) throw std::logic_error(std::string("gpu::linear: no kernels for ") + model::dtype_name(t));
  return *g;
}

// 16-byte vectors per row for the GEMV: all of a quantized row; for plain types the whole
// vectors when rows stay 16-byte aligned, else none.
uint32_t gemv_vectors(const DeviceMatrix& w) {
  const uint32_t per_vector = gpu_type(w.dtype).vector_elements;
  if (per_vector != 0) return (w.cols + per_vector - 1) / per_vector;
  const bool aligned = reinterpret_cast<uintptr_t>(w.data) % 16 == 0 && w.row_bytes % 16 == 0;
  return aligned ? static_cast<uint32_t>(w.row_bytes / 16) : 0;
}

Plan plan(const DeviceMatrix& w, uint32_t tokens) {
  Plan p;
  const GpuType& type = gpu_type(w.dtype);
  p.gemm = tokens > static_cast<uint32_t>(kGemvMaxTokens) && type.gemm != nullptr;
  p.act = p.gemm ? type.gemm_act : type.gemv_act;
  // Whole 32-element sub-blocks for the GEMV, whole 64-byte k tiles for the GEMM.
  p.stride = static_cast<uint32_t>(round_up(w.cols, act_bytes(p.act) == 1 ? 64 : 32));
  p.scale_offset = 0;
  p.act_offset = round_up(static_cast<size_t>(tokens) * sizeof(float), 256);
  p.bytes = p.act_offset + static_cast<size_t>(tokens) * p.stride * act_bytes(p.act);
  return p;
}

void check_matrix(const DeviceMatrix& w) {
  const std::string name = model::dtype_name(w.dtype);
  if (!linear_supports(w.dtype)) throw std::invalid_argument("gpu::linear: no kernel for " + name);
  const std::string why = quant::row_layout_error(w.dtype, w.cols, w.group);
  if (!why.empty()) throw std::invalid_argument("gpu::linear: " + why);
  if (w.row_bytes != quant::row_bytes(w.dtype, w.cols, w.group)) {
    throw std::invalid_argument("gpu::linear: row_bytes " + std::to_string(w.row_bytes) + " is not " + name +
                                "'s " + std::to_string(quant::row_bytes(w.dtype, w.cols, w.group)));
  }
  if (model::is_quantized(w.dtype) && reinterpret_cast<uintptr_t>(w.data) % 16 != 0) {
    throw std::invalid_argument("gpu::linear: " + name + " weights must start 16-byte aligned");
  }
}

}  // namespace

void set_gemm_version(int version) { g_gemm.set(version, "gpu::set_gemm_version"); }

int gemm_version(uint32_t tokens) {
  const int v = g_gemm.forced();
  return v != 0 ? v : tokens >= kGemmV2MinTokens ? 2 : 1;
}

namespace {
__global__ void __launch_bounds__(32) ldmatrix_probe_kernel(const uint16_t* src, const uint32_t* row_of_lane,
                                                            uint32_t* out) {
  struct alignas(16) Rows {
    uint16_t v[32 * 8];
  };
  __shared__ Rows rows;
  const int lane = threadIdx.x;
  for (int i = 0; i < 8; ++i) rows.v[lane * 8 + i] = src[lane * 8 + i];
  __syncthreads();
  uint32_t r[4];
  ldmatrix_m8n8<4>(r, &rows.v[row_of_lane[lane] * 8]);
  for (int i = 0; i < 4; ++i) out[4 * lane + i] = r[i];
}
}  // namespace

void ldmatrix_probe(const uint16_t* src, const uint32_t* row_of_lane, uint32_t* out, Stream stream) {
  launch("ldmatrix_probe", ldmatrix_probe_kernel, dim3(1), dim3(32), 0, stream, src, row_of_lane, out);
}

bool linear_supports(DType t) { return quant::traits(t).gpu == quant::GpuSupport::Native; }

// A GEMV call keeps f32 activations where the GEMM of more tokens keeps 16-bit ones, so the
// need is not monotonic in the token count: the largest GEMV call is taken into account too.
size_t linear_scratch_bytes(const DeviceMatrix& w, uint32_t tokens) {
  const uint32_t gemv = std::min<uint32_t>(tokens, static_cast<uint32_t>(kGemvMaxTokens));
  return std::max(plan(w, tokens).bytes, plan(w, gemv).bytes);
}

void linear(const float* x, uint32_t tokens, const DeviceMatrix& w, const float* bias, float* y, void* scratch,
            Stream stream) {
  check_matrix(w);
  if (tokens == 0 || w.rows == 0) return;
  if (reinterpret_cast<uintptr_t>(scratch) % 16 != 0) {
    throw std::invalid_argument("gpu::linear: scratch must be 16-byte aligned (its rows are read in 16-byte vectors)");
  }
  const Plan p = plan(w, tokens);
  uint8_t* base = static_cast<uint8_t*>(scratch);
  launch_prepare(p.act, x, tokens, w, p, base, stream);
  const uint32_t data_offset =
      model::is_quantized(w.dtype) ? static_cast<uint32_t>(quant::row_data_offset(w.dtype, w.cols, w.group)) : 0;
  const float* token_scale = reinterpret_cast<const float*>(base + p.scale_offset);

  if (p.gemm) {
    GemmParams g;
    g.w = w.data;
    g.row_bytes = w.row_bytes;
    g.data_offset = data_offset;
    g.rows = w.rows;
    g.cols = w.cols;
    g.group = w.group;
    g.vec_ok = reinterpret_cast<uintptr_t>(w.data) % 16 == 0 && w.row_bytes % 16 == 0;
    g.act = base + p.act_offset;
    g.act_row_bytes = p.stride * act_bytes(p.act);
    g.tokens = tokens;
    g.token_scale = token_scale;
    g.bias = bias;
    g.y = y;
    g.y_pairs = w.rows % 2 == 0 && reinterpret_cast<uintptr_t>(y) % 8 == 0;
    const int version = gemm_version(tokens);
    gpu_type(w.dtype).gemm(g, version, stream);
    return;
  }

  GemvParams v;
  v.w = w.data;
  v.row_bytes = w.row_bytes;
  v.data_offset = data_offset;
  v.rows = w.rows;
  v.cols = w.cols;
  v.group = w.group;
  v.nvec = gemv_vectors(w);
  v.act = base + p.act_offset;
  v.act_stride = p.stride;
  v.token_scale = token_scale;
  v.bias = bias;
  v.y = y;
  gpu_type(w.dtype).gemv(v, tokens, stream);
}

}  // namespace fineserve::gpu
