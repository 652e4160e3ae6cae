// GPU benchmark of the CUDA backend (issue #8), as a plain binary for a GPU host without Node.js.
// Models of real shapes (Llama-3.2-1B, Llama-3-8B) get random weights made on the device
// (DeviceWeights::synthetic) and a KV Slab in device memory filled with finite random bytes, so
// decode steps read real amounts of weights and context. It measures, in one process run:
//   - the copy bandwidth (a large device-to-device copy, bytes read + written): the HBM ceiling;
//   - decode steps at batch 1..256 per precision, as tok/s and as a fraction of the roofline
//     (bytes of weights + KV a step must read over the copy bandwidth);
//   - prefill chunks, as TFLOP/s (2 x linear parameters x tokens + attention);
//   - GEMMs of the models' projection shapes per weight type, as TFLOP/s;
//   - two models' decode steps on two streams at once against the same steps one after the other.
// The matrix peak and the PyTorch eager peer come from bench/cuda/torch_peer.py on the same
// machine; scripts/device-run.sh runs both and bench/cuda/report.mjs joins them.
// `--smoke` runs every path at a tiny shape (also under the SIMT emulator, in ctest).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "common/device.h"
#include "engine/cuda_forward.h"
#include "engine/kv_binding.h"
#include "engine/step_plan.h"
#include "kernels/kernels.h"
#include "kv/kv_slab.h"
#include "model/generate.h"
#include "quant/weight_format.h"

using namespace fineserve;
using model::DType;
using kv::KvFormat;

namespace {

struct Precision {
  const char* name;  // the TypeScript API's shorthand
  DType weights;
  KvFormat kv;
};

const Precision kPrecisions[] = {
    {"fp16", DType::F16, KvFormat::F16},          {"bf16", DType::BF16, KvFormat::BF16},
    {"w8a8-kvi8", DType::W8A8, KvFormat::Int8},   {"fp8-kv8", DType::FP8, KvFormat::Fp8E4M3},
    {"w4a16", DType::W4A16, KvFormat::F16},       {"w4a8-kv4", DType::W4A8, KvFormat::Int4},
};

struct Options {
  std::vector<std::string> shapes{"llama-3.2-1b", "llama-3-8b"};
  std::vector<std::string> precisions{"fp16", "w8a8-kvi8", "fp8-kv8", "w4a16", "w4a8-kv4"};
  std::vector<uint32_t> batches{1, 8, 32, 64, 128, 256};
  uint32_t context = 512;
  uint32_t prefill = 2048;
  uint32_t reps = 10;
  std::string out = "gpu-bench.json";
  bool smoke = false;
};

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
      return argv[++i];
    };
    if (a == "--shapes") o.shapes = split(value());
    else if (a == "--precisions") o.precisions = split(value());
    else if (a == "--batches") {
      o.batches.clear();
      for (const std::string& b : split(value())) o.batches.push_back(static_cast<uint32_t>(std::stoul(b)));
    } else if (a == "--context") o.context = static_cast<uint32_t>(std::stoul(value()));
    else if (a == "--prefill") o.prefill = static_cast<uint32_t>(std::stoul(value()));
    else if (a == "--reps") o.reps = static_cast<uint32_t>(std::stoul(value()));
    else if (a == "--out") o.out = value();
    else if (a == "--smoke") o.smoke = true;
    else throw std::invalid_argument("unknown option " + a);
  }
  if (o.smoke) {
    o.shapes = {"tiny"};
    o.precisions = {"fp16", "bf16", "w8a8-kvi8", "fp8-kv8", "w4a16", "w4a8-kv4"};
    o.batches = {1, 3};
    o.context = 20;
    o.prefill = 24;
    o.reps = 2;
  }
  return o;
}

const Precision& precision(const std::string& name) {
  for (const Precision& p : kPrecisions) {
    if (name == p.name) return p;
  }
  throw std::invalid_argument("unknown precision " + name);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// A JSON object built by hand: the bench has no dependency beyond the project.
struct Json {
  std::ostringstream s;
  bool first = true;
  Json& key(const std::string& k) {
    s << (first ? "" : ",") << "\"" << k << "\":";
    first = false;
    return *this;
  }
  Json& num(const std::string& k, double v) {
    key(k);
    if (std::isfinite(v)) s << v; else s << "null";
    return *this;
  }
  Json& str(const std::string& k, const std::string& v) {
    key(k);
    s << "\"" << v << "\"";
    return *this;
  }
  std::string done() { return "{" + s.str() + "}"; }
};

// Copy bandwidth, counting bytes read plus bytes written, in bytes per millisecond.
double copy_bandwidth(gpu::Stream stream, size_t bytes, uint32_t reps) {
  gpu::DeviceBuffer a(bytes, "copy src"), b(bytes, "copy dst");
  gpu::fill_finite_bytes(a.as<uint8_t>(), bytes, 1, stream);
  gpu::EventTimer t(stream);
  std::vector<double> ms;
  for (uint32_t r = 0; r < reps + 2; ++r) {
    t.start();
    gpu::copy_on_device(b.as(), a.as(), bytes, stream);
    const double m = t.stop_ms();
    if (r >= 2) ms.push_back(m);
  }
  return 2.0 * bytes / median(ms);
}

// One model of a shape and precision on the device with a slab big enough for the largest batch.
struct Rig {
  model::LlamaConfig config;
  Precision prec;
  std::unique_ptr<kv::KvSlab> pool;
  kv::ModelId id = 0;
  std::unique_ptr<gpu::CudaForward> forward;
  uint64_t linear_bytes = 0, weight_bytes = 0;

  Rig(const std::string& shape, const Precision& p, uint32_t max_tokens, gpu::Stream stream)
      : config(model::shape_config(shape)), prec(p) {
    kv::KvGeometry g = engine::kv_geometry_for(config, p.kv, 16);
    const kv::KvLayout layout = kv::make_layout(g);
    kv::KvSlabOptions so;
    so.memory = gpu::simulated() ? "host" : "cuda:0";
    so.pool_bytes = (max_tokens / 16 + 64) * layout.block_bytes * 9 / 8 + ((gpu::simulated() ? 8ull : 64ull) << 20);
    pool = std::make_unique<kv::KvSlab>(so);
    id = pool->add_model({"bench", g, 0, 0});
    // Every byte a step may read is finite, in every format.
    gpu::fill_finite_bytes(pool->base(), so.pool_bytes, 7, stream);
    gpu::DeviceWeights w = gpu::DeviceWeights::synthetic(config, p.weights, 128, 11, stream);
    weight_bytes = w.device_bytes;
    for (const gpu::DeviceLayerWeights& l : w.layers) {
      for (const gpu::DeviceMatrix* m : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) {
        linear_bytes += m->row_bytes * m->rows;
      }
    }
    linear_bytes += w.output.row_bytes * w.output.rows;
    forward = std::make_unique<gpu::CudaForward>(config, std::move(w), pool->layout(id), pool->base(), stream);
  }

  // `batch` sequences with `context` tokens cached each, `n_tokens` new tokens each.
  engine::StepPlan plan(uint32_t batch, uint32_t context, uint32_t n_tokens, std::vector<kv::BlockId>& held) {
    engine::StepPlan p;
    const uint32_t tpb = 16, blocks = (context + n_tokens + tpb - 1) / tpb;
    std::vector<kv::BlockId> ids;
    if (!pool->alloc(id, batch * blocks, &ids).ok) throw std::runtime_error("bench: the KV slab is too small");
    held.insert(held.end(), ids.begin(), ids.end());
    for (uint32_t s = 0; s < batch; ++s) {
      engine::PlannedSequence ps;
      ps.row = s * n_tokens;
      ps.position = context;
      ps.n_tokens = n_tokens;
      for (uint32_t b = 0; b < blocks; ++b) ps.block_offsets.push_back(pool->block_offset(id, ids[s * blocks + b]));
      p.seqs.push_back(ps);
      for (uint32_t t = 0; t < n_tokens; ++t) p.tokens.push_back(static_cast<int32_t>((s * 7919 + t * 104729) % config.vocab_size));
      p.logit_rows.push_back(ps.row + n_tokens - 1);
    }
    return p;
  }
  void release(std::vector<kv::BlockId>& held) {
    pool->free(id, held.data(), held.size());
    held.clear();
  }

  // Median milliseconds of a step, the forward with device greedy sampling, as the executor runs it.
  double time_step(const engine::StepPlan& p, uint32_t reps, gpu::Stream stream) {
    gpu::CudaForward::Output out;
    gpu::EventTimer t(stream);
    std::vector<double> ms;
    for (uint32_t r = 0; r < reps + 2; ++r) {
      t.start();
      forward->run(p, gpu::CudaForward::Sampling::DeviceGreedy, out);
      const double m = t.stop_ms();
      if (r >= 2) ms.push_back(m);
      for (int32_t tok : out.tokens) {
        if (tok < 0) throw std::runtime_error("bench: a step produced no finite logit (NaN in the forward pass)");
      }
    }
    return median(ms);
  }
};

}  // namespace

int main(int argc, char** argv) try {
  const Options o = parse(argc, argv);
  gpu::set_device(0);
  gpu::Stream stream = gpu::stream_create();
  const gpu::DeviceInfo info = gpu::device_info(0);
  std::vector<std::string> decode, prefill, gemm, colocated;

  const size_t copy_bytes = o.smoke ? (1u << 16) : (2ull << 30);
  const double bw = copy_bandwidth(stream, copy_bytes, o.smoke ? 2 : 20);  // bytes per ms
  std::printf("device %s: copy bandwidth %.0f GB/s (read + write)\n", info.name.c_str(), bw / 1e6);

  const uint32_t max_batch = *std::max_element(o.batches.begin(), o.batches.end());
  for (const std::string& shape : o.shapes) {
    for (const std::string& pname : o.precisions) {
      const Precision& p = precision(pname);
      Rig rig(shape, p, std::max(max_batch * (o.context + 1), o.prefill), stream);
      const kv::KvLayout& layout = rig.pool->layout(rig.id);
      std::vector<kv::BlockId> held;
      for (uint32_t b : o.batches) {
        engine::StepPlan plan = rig.plan(b, o.context, 1, held);
        const double ms = rig.time_step(plan, o.reps, stream);
        // The fewest bytes a step reads: every linear weight once (the embedding only per token)
        // and each sequence's cached context, K and V, all layers.
        const double kv_bytes = double(b) * (o.context + 1) * layout.token_bytes;
        // bw counts every byte a copy moves (read + write), the rate at which a step can read.
        const double floor_ms = (rig.linear_bytes + kv_bytes) / bw;
        decode.push_back(Json()
                             .str("shape", shape)
                             .str("precision", p.name)
                             .num("batch", b)
                             .num("context", o.context)
                             .num("stepMs", ms)
                             .num("tokPerS", b / ms * 1e3)
                             .num("weightBytes", double(rig.linear_bytes))
                             .num("kvBytes", kv_bytes)
                             .num("rooflineMs", floor_ms)
                             .num("rooflineFraction", floor_ms / ms)
                             .done());
        std::printf("decode  %-13s %-10s batch %3u: %8.3f ms/step %9.0f tok/s  %5.1f%% of roofline\n", shape.c_str(),
                    p.name, b, ms, b / ms * 1e3, 100 * floor_ms / ms);
        rig.release(held);
      }
      {
        engine::StepPlan plan = rig.plan(1, 0, o.prefill, held);
        const double ms = rig.time_step(plan, std::max<uint32_t>(2, o.reps / 3), stream);
        const model::LlamaConfig& c = rig.config;
        const double params = double(model::parameter_count(c)) - double(c.vocab_size) * c.hidden_size;
        const double attn = 2.0 * c.num_layers * double(c.num_heads) * c.head_dim * o.prefill * (o.prefill + 1);
        const double flops = 2.0 * params * o.prefill + attn;
        prefill.push_back(Json()
                              .str("shape", shape)
                              .str("precision", p.name)
                              .num("tokens", o.prefill)
                              .num("ms", ms)
                              .num("tflops", flops / ms / 1e9)
                              .done());
        std::printf("prefill %-13s %-10s %5u tokens: %8.2f ms  %6.1f TFLOP/s\n", shape.c_str(), p.name, o.prefill, ms,
                    flops / ms / 1e9);
        rig.release(held);
      }
    }
  }

  // GEMMs of the largest model's projection shapes, per weight type (x is f32, as the forward has it).
  {
    const model::LlamaConfig c = model::shape_config(o.shapes.back());
    const uint32_t m_tokens = o.prefill;
    const uint32_t shapes[][2] = {{c.hidden_size, c.hidden_size}, {c.intermediate_size, c.hidden_size}, {c.hidden_size, c.intermediate_size}};
    gpu::DeviceBuffer x(size_t{m_tokens} * c.intermediate_size * 4, "gemm x");
    gpu::fill_finite_bytes(x.as<uint8_t>(), size_t{m_tokens} * c.intermediate_size * 4, 3, stream);  // small finite floats
    for (const std::string& pname : o.precisions) {
      const Precision& p = precision(pname);
      for (const auto& nk : shapes) {
        gpu::DeviceMatrix w;
        w.dtype = p.weights;
        w.rows = nk[0];
        w.cols = nk[1];
        w.group = (p.weights == DType::W4A16 || p.weights == DType::W4A8) ? 128 : 0;
        w.row_bytes = quant::row_bytes(w.dtype, w.cols, w.group);
        w.data_offset = quant::row_data_offset(w.dtype, w.cols, w.group);
        gpu::DeviceBuffer wb(w.row_bytes * w.rows, "gemm w"), y(size_t{m_tokens} * w.rows * 4, "gemm y"),
            scratch(std::max<size_t>(1, gpu::linear_scratch_bytes(w, m_tokens)), "gemm scratch");
        w.data = wb.as<uint8_t>();
        gpu::fill_synthetic(w, 5, stream);
        // Both GEMM versions on the same weights (set per run, reset to the automatic choice after),
        // so one run A/Bs them; ms/tflops are those of the version linear() picks by itself.
        gpu::EventTimer t(stream);
        double ms_of[3] = {0, 0, 0};
        for (int version = 1; version <= 2; ++version) {
          gpu::set_gemm_version(version);
          std::vector<double> ms;
          for (uint32_t r = 0; r < o.reps + 2; ++r) {
            t.start();
            gpu::linear(x.as<float>(), m_tokens, w, nullptr, y.as<float>(), scratch.as(), stream);
            const double v = t.stop_ms();
            if (r >= 2) ms.push_back(v);
          }
          ms_of[version] = median(ms);
        }
        gpu::set_gemm_version(0);
        const int chosen = gpu::gemm_version(m_tokens);
        const double med = ms_of[chosen], flops = 2.0 * m_tokens * w.rows * w.cols;
        gemm.push_back(Json()
                           .str("precision", p.name)
                           .num("m", m_tokens)
                           .num("n", w.rows)
                           .num("k", w.cols)
                           .num("ms", med)
                           .num("tflops", flops / med / 1e9)
                           .num("version", chosen)
                           .num("v1Ms", ms_of[1])
                           .num("v2Ms", ms_of[2])
                           .num("v1Tflops", flops / ms_of[1] / 1e9)
                           .num("v2Tflops", flops / ms_of[2] / 1e9)
                           .done());
        std::printf("gemm    %-10s %5u x %5u x %5u: v1 %8.3f ms %6.1f TFLOP/s  v2 %8.3f ms %6.1f TFLOP/s\n", p.name,
                    m_tokens, w.rows, w.cols, ms_of[1], flops / ms_of[1] / 1e9, ms_of[2], flops / ms_of[2] / 1e9);
      }
    }
  }

  // Spatial sharing: two models decode on two streams from two threads at once, against the
  // same steps run one model after the other on one thread.
  {
    const std::string shape = o.shapes.front();
    const uint32_t b = o.smoke ? 3 : 32;
    gpu::Stream s2 = gpu::stream_create();
    Rig a(shape, precision(o.smoke ? "fp16" : o.precisions.front()), b * (o.context + 1), stream);
    Rig c(shape, precision(o.smoke ? "w4a16" : o.precisions.back()), b * (o.context + 1), s2);
    std::vector<kv::BlockId> ha, hc;
    engine::StepPlan pa = a.plan(b, o.context, 1, ha), pc = c.plan(b, o.context, 1, hc);
    const uint32_t steps = o.smoke ? 2 : 50;
    gpu::CudaForward::Output oa, oc;
    a.forward->run(pa, gpu::CudaForward::Sampling::DeviceGreedy, oa);  // warm
    c.forward->run(pc, gpu::CudaForward::Sampling::DeviceGreedy, oc);
    auto now = [] { return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count(); };
    double t0 = now();
    for (uint32_t i = 0; i < steps; ++i) {
      a.forward->run(pa, gpu::CudaForward::Sampling::DeviceGreedy, oa);
      c.forward->run(pc, gpu::CudaForward::Sampling::DeviceGreedy, oc);
    }
    const double serial = now() - t0;
    t0 = now();
    std::thread ta([&] {
      gpu::set_device(0);
      gpu::CudaForward::Output o1;
      for (uint32_t i = 0; i < steps; ++i) a.forward->run(pa, gpu::CudaForward::Sampling::DeviceGreedy, o1);
    });
    std::thread tc([&] {
      gpu::set_device(0);
      gpu::CudaForward::Output o2;
      for (uint32_t i = 0; i < steps; ++i) c.forward->run(pc, gpu::CudaForward::Sampling::DeviceGreedy, o2);
    });
    ta.join();
    tc.join();
    const double together = now() - t0;
    colocated.push_back(Json()
                            .str("shape", shape)
                            .str("a", a.prec.name)
                            .str("b", c.prec.name)
                            .num("batch", b)
                            .num("steps", steps)
                            .num("serialMs", serial)
                            .num("concurrentMs", together)
                            .num("speedup", serial / together)
                            .done());
    std::printf("co-located %s %s + %s, batch %u: serial %.1f ms, concurrent %.1f ms (%.2fx)\n", shape.c_str(),
                a.prec.name, c.prec.name, b, serial, together, serial / together);
    a.release(ha);
    c.release(hc);
    gpu::stream_destroy(s2);
  }

  // The shapes' configurations, so the PyTorch peer builds the very same models.
  std::vector<std::string> shapes;
  for (const std::string& shape : o.shapes) {
    const model::LlamaConfig c = model::shape_config(shape);
    shapes.push_back(Json()
                         .str("name", shape)
                         .num("hidden", c.hidden_size)
                         .num("intermediate", c.intermediate_size)
                         .num("layers", c.num_layers)
                         .num("heads", c.num_heads)
                         .num("kvHeads", c.num_kv_heads)
                         .num("headDim", c.head_dim)
                         .num("vocab", c.vocab_size)
                         .num("ropeTheta", c.rope_theta)
                         .num("rmsNormEps", c.rms_norm_eps)
                         .num("tied", c.tied_embeddings ? 1 : 0)
                         .done());
  }
  std::string batches = "[";
  for (size_t i = 0; i < o.batches.size(); ++i) batches += (i ? "," : "") + std::to_string(o.batches[i]);
  batches += "]";

  std::ofstream f(o.out);
  auto list = [](const std::vector<std::string>& v) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + v[i];
    return s + "]";
  };
  f << "{\"device\":\"" << info.name << "\",\"simulated\":" << (gpu::simulated() ? "true" : "false")
    << ",\"smCount\":" << info.sm_count << ",\"shapes\":" << list(shapes) << ",\"batches\":" << batches
    << ",\"context\":" << o.context << ",\"prefillTokens\":" << o.prefill << ",\"copyBytesPerS\":" << bw * 1e3 << ",\"decode\":" << list(decode)
    << ",\"prefill\":" << list(prefill) << ",\"gemm\":" << list(gemm) << ",\"colocated\":" << list(colocated) << "}\n";
  std::printf("wrote %s\n", o.out.c_str());
  gpu::stream_destroy(stream);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "gpu_bench: %s\n", e.what());
  return 1;
}
