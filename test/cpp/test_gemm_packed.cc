// The packed integer GEMMs of Q8_0 / Q4_0 (gemm/packed.h) and Q4_K / Q6_K (gemm/packed_k.h): the
// repack loses nothing, every SIMD level's quantizer and kernels are bit-identical to the portable reference, that reference is
// within f32 accumulation error of a float64 product written out here from the file's own block
// layout, and linear() through it is batch invariant at every level (token counts across the
// tile and chunk boundaries, row counts that are not multiples of the 16-row groups, 1 and 2
// threads).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "engine/cpu_executor.h"
#include "engine/thread_pool.h"
#include "kv/kv_slab.h"
#include "gemm/gemm.h"
#include "gemm/packed.h"
#include "gemm/packed_k.h"
#include "gemm/packed_load.h"
#include "model/generate.h"
#include "model/gguf_quantize.h"
#include "model/loader.h"
#include "model/loader_internal.h"
#include "ops/linear.h"
#include "ops/rows.h"
#include "quant/kquant_dot.h"
#include "quant/quantize.h"
#include "quant/weight_format.h"
#include "simd/dispatch.h"
#include "simd/half.h"
#include "model_test_files.h"
#include "test_matrices.h"

#ifdef __linux__
#include <sys/mman.h>
#include <unistd.h>
#endif

using fineserve::model::DType;
using fineserve::model::TensorView;
using fineserve::test::Matrix;
namespace gemm = fineserve::gemm;
namespace quant = fineserve::quant;
namespace simd = fineserve::simd;

namespace {

Matrix make(DType t, size_t out, size_t in, uint32_t seed) {
  return fineserve::test::random_matrix(t, out, in, seed, [](size_t r, std::vector<float>& row) {
    if (r == 1) row[3] = 1.0f;  // a block whose weights reach -128 / +127 (Q8_0) and 0 / 15 (Q4_0)
    if (r == 2) row[5] = -1.0f;
  });
}

std::vector<float> activations(size_t tokens, size_t in, uint32_t seed) {
  return fineserve::test::random_activations(tokens, in, seed, std::min<size_t>(32, in));  // an all-zero block: d = 0
}

// Weight element i of a row in the file's layout (weight_format.h), written out from the spec.
double weight(DType t, const uint8_t* row, size_t i) {
  const size_t b = i / 32, j = i % 32;
  uint16_t h;
  if (t == DType::Q8_0) {
    std::memcpy(&h, row + 34 * b, 2);
    return double(simd::f16_to_f32_scalar(h)) * double(int8_t(row[34 * b + 2 + j]));
  }
  std::memcpy(&h, row + 18 * b, 2);
  const uint8_t q = row[18 * b + 2 + j % 16];
  return double(simd::f16_to_f32_scalar(h)) * double(int((j < 16 ? q & 15 : q >> 4)) - 8);
}

std::vector<simd::Level> packed_levels() {
  std::vector<simd::Level> out;
  for (simd::Level l : simd::supported_levels()) {
    if (gemm::packed_kernels_for(l) != nullptr) out.push_back(l);
  }
  if (out.empty()) MESSAGE("no packed GEMM kernels on this host: only the portable reference is checked");
  return out;
}

// linear() of up to 70 tokens in one call against each token alone, at every level in `levels`,
// with 1 and 2 threads, for 40 and 200 rows (not multiples of the 16-row groups' tiles).
void check_batch_invariant(DType t, size_t in, const std::vector<simd::Level>& levels) {
  const size_t max_tokens = 70;
  for (size_t out : {40u, 200u}) {
    const std::string type = fineserve::model::dtype_name(t);
    CAPTURE(type);
    CAPTURE(out);
    Matrix m = make(t, out, in, uint32_t(7 + out));
    std::vector<float> x = activations(max_tokens, in, 11);
    fineserve::engine::ThreadPool one(1), two(2);
    for (simd::Level l : levels) {
      const std::string level = simd::level_name(l);
      CAPTURE(level);
      std::vector<float> alone(max_tokens * out);
      for (size_t tk = 0; tk < max_tokens; ++tk) {
        fineserve::ops::linear(one, x.data() + tk * in, 1, m.view, nullptr, alone.data() + tk * out, l);
      }
      for (size_t tokens : {2u, 5u, 8u, 33u, 70u}) {
        for (fineserve::engine::ThreadPool* pool : {&one, &two}) {
          CAPTURE(tokens);
          CAPTURE(pool->size());
          std::vector<float> y(tokens * out);
          fineserve::ops::linear(*pool, x.data(), tokens, m.view, nullptr, y.data(), l);
          CHECK(std::memcmp(y.data(), alone.data(), y.size() * sizeof(float)) == 0);
        }
      }
    }
  }
}

// Each level's kernel on the first 1..tokens tokens of `a` against `ref` (all tokens), bit for bit.
template <class Kernel>
void check_levels(const std::vector<simd::Level>& levels, size_t tokens, size_t out, const std::vector<float>& ref,
                  const Kernel& run) {
  for (simd::Level l : levels) {
    const std::string level = simd::level_name(l);
    CAPTURE(level);
    for (size_t nt = 1; nt <= tokens; ++nt) {
      CAPTURE(nt);
      std::vector<float> y(nt * out, -1.0f);
      run(l, nt, y.data());
      CHECK(std::memcmp(y.data(), ref.data(), y.size() * sizeof(float)) == 0);
    }
  }
}

const DType kTypes[] = {DType::Q8_0, DType::Q4_0};

}  // namespace

TEST_CASE("packed GEMM: repacking keeps every byte of every row") {
  for (DType t : kTypes) {
    for (size_t out : {1u, 16u, 37u}) {
      Matrix m = make(t, out, 96, 5);
      auto p = gemm::pack(t, m.view.data, out, 96);
      const size_t rb = quant::row_bytes(t, 96, 0);
      std::vector<uint8_t> row(rb);
      for (size_t r = 0; r < out; ++r) {
        gemm::unpack_row(*p, r, row.data());
        CHECK(std::memcmp(row.data(), m.bytes.data() + r * rb, rb) == 0);
      }
    }
  }
}

TEST_CASE("packed GEMM: activations are llama.cpp's Q8_0 blocks, the same at every level") {
  const size_t tokens = 5, in = 160;
  std::vector<float> x = activations(tokens, in, 9);
  gemm::PackedActs ref;
  gemm::quantize_reference(x.data(), tokens, in, ref);
  quant::Activations qa;
  quant::prepare_activations(DType::Q8_0, 0, x.data(), tokens, in, nullptr, qa);
  CHECK(std::memcmp(ref.q.data(), qa.q.data(), ref.q.size()) == 0);
  CHECK(std::memcmp(ref.d.data(), qa.block_scale.data(), 4 * ref.d.size()) == 0);
  for (size_t at = 0; at < tokens * in / 32; ++at) {
    int32_t s = 0;
    for (size_t j = 0; j < 32; ++j) s += ref.q[at * 32 + j];
    CHECK(ref.sum[at] == s);
  }
  for (simd::Level l : packed_levels()) {
    const std::string level = simd::level_name(l);
        CAPTURE(level);
    gemm::PackedActs got;
    gemm::packed_kernels_for(l)->quantize(x.data(), tokens, in, got);
    CHECK(got.q == ref.q);
    CHECK(std::memcmp(got.d.data(), ref.d.data(), 4 * ref.d.size()) == 0);
    CHECK(got.sum == ref.sum);
  }
}

TEST_CASE("packed GEMM: each level's kernel is bit-identical to the reference, which matches float64") {
  for (DType t : kTypes) {
    for (size_t out : {13u, 64u, 100u}) {
      const size_t in = 256, tokens = 7;
      const std::string type = fineserve::model::dtype_name(t);
      CAPTURE(type);
      CAPTURE(out);
      Matrix m = make(t, out, in, uint32_t(out));
      auto p = gemm::pack(t, m.view.data, out, in);
      std::vector<float> x = activations(tokens, in, 3), bias(out);
      for (size_t r = 0; r < out; ++r) bias[r] = 0.01f * float(r);
      gemm::PackedActs a;
      gemm::quantize_reference(x.data(), tokens, in, a);
      std::vector<float> ref(tokens * out);
      gemm::packed_reference(*p, a, tokens, 0, out, bias.data(), ref.data(), out);
      const size_t rb = quant::row_bytes(t, in, 0);
      for (size_t tk = 0; tk < tokens; ++tk) {
        for (size_t r = 0; r < out; ++r) {
          long double want = bias[r], mag = std::fabs(bias[r]);
          for (size_t i = 0; i < in; ++i) {
            const size_t at = tk * a.blocks + i / 32;
            const long double v = weight(t, m.bytes.data() + r * rb, i) * double(a.q[at * 32 + i % 32]) * double(a.d[at]);
            want += v;
            mag += std::fabs(v);
          }
          CAPTURE(tk);
          CAPTURE(r);
          CHECK(std::fabs(ref[tk * out + r] - double(want)) <= 1e-5 * double(mag) + 1e-30);
        }
      }
      check_levels(packed_levels(), tokens, out, ref, [&](simd::Level l, size_t nt, float* y) {
        gemm::packed_kernel(*gemm::packed_kernels_for(l), t)(*p, a, nt, 0, out, bias.data(), y, out);
      });
    }
  }
}

TEST_CASE("packed GEMM: linear() is batch invariant at every level, across tiles, chunks and threads") {
  for (DType t : kTypes) check_batch_invariant(t, 128, packed_levels());  // past the 32-token chunks and 4-token tiles
}

// ---- Q4_K / Q6_K (gemm/packed_k.h) ----

namespace {

const DType kKTypes[] = {DType::Q4_K, DType::Q6_K};

// Activations with an all-zero super-block (d = 0) and one whose largest magnitude appears with
// both signs (the first one's sign wins).
std::vector<float> k_activations(size_t tokens, size_t in, uint32_t seed) {
  std::vector<float> x = activations(tokens, in, seed);
  for (size_t i = 0; i < 256 && i < x.size(); ++i) x[i] = 0.0f;
  if (x.size() >= 512) {
    x[300] = -9.0f;
    x[400] = 9.0f;
  }
  return x;
}

std::vector<simd::Level> packed_k_levels() {
  std::vector<simd::Level> out;
  for (simd::Level l : simd::supported_levels()) out.push_back(l);  // Baseline runs the reference
  return out;
}

}  // namespace

TEST_CASE("packed K GEMM: repacking keeps every byte of every row") {
  for (DType t : kKTypes) {
    for (size_t out : {1u, 16u, 37u}) {
      Matrix m = make(t, out, 512, 5);
      auto p = gemm::pack_k(t, m.view.data, out, 512);
      const size_t rb = quant::row_bytes(t, 512, 0);
      std::vector<uint8_t> row(rb);
      for (size_t r = 0; r < out; ++r) {
        gemm::unpack_k_row(*p, r, row.data());
        CHECK(std::memcmp(row.data(), m.bytes.data() + r * rb, rb) == 0);
      }
    }
  }
}

TEST_CASE("packed K GEMM: Q8_K activations are quantize_q8_k's, the same at every level") {
  const size_t tokens = 3, in = 768;
  std::vector<float> x = k_activations(tokens, in, 9);
  gemm::PackedKActs ref;
  gemm::quantize_k_reference(x.data(), tokens, in, ref);
  for (size_t i = 0; i < ref.bsums32.size(); ++i) CHECK(ref.bsums32[i] == ref.q8.bsums[2 * i] + ref.q8.bsums[2 * i + 1]);
  CHECK(ref.q8.q[300] == -127);  // x[300] = -9 is the first of the block's largest magnitudes
  CHECK(ref.q8.q[400] == 127);
  for (simd::Level l : packed_k_levels()) {
    const std::string level = simd::level_name(l);
    CAPTURE(level);
    gemm::PackedKActs got;
    gemm::packed_k_kernels_for(l)->quantize(x.data(), tokens, in, got);
    CHECK(got.q8.q == ref.q8.q);
    CHECK(std::memcmp(got.q8.d.data(), ref.q8.d.data(), 4 * ref.q8.d.size()) == 0);
    CHECK(got.q8.bsums == ref.q8.bsums);
    CHECK(got.bsums32 == ref.bsums32);
  }
}

TEST_CASE("packed K GEMM: every level bit-identical to the reference and kquant's row dots; float64 agrees") {
  for (DType t : kKTypes) {
    for (size_t out : {13u, 64u, 100u}) {
      const size_t in = 512, tokens = 7;
      const std::string type = fineserve::model::dtype_name(t);
      CAPTURE(type);
      CAPTURE(out);
      Matrix m = make(t, out, in, uint32_t(out));
      auto p = gemm::pack_k(t, m.view.data, out, in);
      std::vector<float> x = k_activations(tokens, in, 3), bias(out);
      for (size_t r = 0; r < out; ++r) bias[r] = 0.01f * float(r);
      gemm::PackedKActs a;
      gemm::quantize_k_reference(x.data(), tokens, in, a);
      std::vector<float> ref(tokens * out), rows(tokens * out);
      gemm::packed_k_reference(*p, a, tokens, 0, out, bias.data(), ref.data(), out);
      // The file-layout row dots define the arithmetic (kquant_dot.h): the same bits.
      const size_t rb = quant::row_bytes(t, in, 0);
      quant::kquant::dot_kernel(t, simd::Level::Baseline)(m.bytes.data(), rb, a.q8, 0, out, bias.data(), rows.data(), out);
      CHECK(std::memcmp(rows.data(), ref.data(), ref.size() * sizeof(float)) == 0);
      std::vector<float> wrow(in);
      for (size_t r = 0; r < out; ++r) {
        quant::dequantize_row(t, m.bytes.data() + r * rb, in, 0, wrow.data());
        for (size_t tk = 0; tk < tokens; ++tk) {
          long double want = bias[r], mag = std::fabs(bias[r]);
          for (size_t i = 0; i < in; ++i) {
            const size_t at = tk * a.q8.blocks + i / 256;
            const long double v = (long double)wrow[i] * a.q8.q[tk * in + i] * a.q8.d[at];
            want += v;
            mag += std::fabs(v);
          }
          CAPTURE(tk);
          CAPTURE(r);
          CHECK(std::fabs(ref[tk * out + r] - double(want)) <= 1e-5 * double(mag) + 1e-30);
        }
      }
      check_levels(packed_k_levels(), tokens, out, ref, [&](simd::Level l, size_t nt, float* y) {
        gemm::packed_k_kernel(*gemm::packed_k_kernels_for(l), t)(*p, a, nt, 0, out, bias.data(), y, out);
      });
    }
  }
}

TEST_CASE("packed K GEMM: linear() is batch invariant at every level, across tiles, chunks and threads") {
  for (DType t : kKTypes) check_batch_invariant(t, 256, packed_k_levels());
}

// ---- packing at load (gemm/packed_load.h) ----

namespace {

namespace fm = fineserve::model;

std::vector<fm::TensorView*> linear_views(fm::LlamaWeights& w) {
  std::vector<fm::TensorView*> out;
  for (fm::LlamaLayerWeights& l : w.layers) {
    for (fm::TensorView* t : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) out.push_back(t);
  }
  out.push_back(&w.output);
  return out;
}

// Bytes of the model's weights in memory: the distinct views' own bytes (a packed view's are its
// copy's), plus every packed copy made beside a view's file bytes (on first use).
uint64_t held_bytes(const fm::LoadedModel& m) {
  uint64_t n = 0;
  for (const fm::TensorView* t : fm::detail::distinct_tensors(m.weights)) {
    n += t->bytes;
    if (t->packed && !t->packed_only) n += t->packed->bytes.size();
  }
  return n;
}

#ifdef __linux__
// Resident pages of the model's file bytes.
uint64_t resident_file_pages(const fm::LoadedModel& m) {
  const auto* mapped = dynamic_cast<const fm::detail::MappedModel*>(&m);
  REQUIRE(mapped != nullptr);
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  uint64_t in = 0;
  for (const fm::FileBytes& f : mapped->files) {
    std::vector<unsigned char> resident((f.size() + page - 1) / page);
    REQUIRE(::mincore(const_cast<uint8_t*>(f.data()), f.size(), resident.data()) == 0);
    for (unsigned char r : resident) in += r & 1;
  }
  return in;
}
#endif

// A one-layer llama-100m-shaped F16 GGUF in `dir` (its options, out = the path).
fm::GenerateOptions one_layer_f16(const fm::testing::TempDir& dir, uint32_t seed) {
  fm::GenerateOptions o;
  o.shape = "llama-100m";
  o.layers = 1;
  o.vocab = 512;
  o.dtype = DType::F16;
  o.seed = seed;
  o.out = (dir / "f16.gguf").string();
  fm::generate_model(o);
  return o;
}

// One forward step of `prompt` through the CPU executor: the next token's logits.
std::vector<float> forward_logits(const fm::LoadedModel& m, const std::vector<int32_t>& prompt) {
  namespace kv = fineserve::kv;
  namespace engine = fineserve::engine;
  kv::KvSlab pool{kv::KvSlabOptions{16ull << 20, 1ull << 20, 0.125, "host"}};
  kv::ModelId id = pool.add_model({"m", engine::kv_geometry_for(m.config, kv::KvFormat::F32, 16), 0, 0});
  auto exec = engine::make_cpu_executor(m, pool, id, {kv::KvFormat::F32, 1, nullptr});
  std::vector<kv::BlockId> blocks;
  REQUIRE(pool.alloc(id, 1, &blocks).ok);
  engine::SequenceChunk c;
  c.n_tokens = static_cast<uint32_t>(prompt.size());
  c.tokens = prompt.data();
  c.position = 0;
  c.block_table = blocks.data();
  c.n_blocks = static_cast<uint32_t>(blocks.size());
  engine::SamplingParams params;
  engine::SamplerState state;
  state.reset(exec->vocab_size(), prompt.data(), static_cast<uint32_t>(prompt.size()));
  c.sample = true;
  c.sampling = &params;
  c.sampler_state = &state;
  engine::StepOutput out = exec->step({c}, true);
  REQUIRE(out.logits.size() == exec->vocab_size());
  return out.logits;
}

}  // namespace

TEST_CASE("packed at load: each matrix is held once, and the reported bytes are the bytes held, before and after a forward pass") {
  fm::testing::TempDir dir;
  const fm::GenerateOptions o = one_layer_f16(dir, 3);
  const std::vector<int32_t> prompt = {1, 17, 300, 42, 9};
  for (fm::GgufQuantType type : {fm::GgufQuantType::Q8_0, fm::GgufQuantType::Q4_K_M}) {
    const std::string path = (dir / "q.gguf").string();
    fm::write_quantized_gguf(o.out, path, type);
    const std::string type_name = fm::gguf_quant_type_names()[static_cast<size_t>(type)];
    CAPTURE(type_name);
    fm::LoadOptions packed_opts;
    packed_opts.repack = true;  // as the addon loads for the CPU
    std::unique_ptr<fm::LoadedModel> m = fm::load_model(path, packed_opts);
    std::unique_ptr<fm::LoadedModel> lazy = fm::load_model(path);  // packs on first use
    const bool packs = gemm::packs(m->weights.layers[0].wq) || m->weights.layers[0].wq.packed_only;
    if (!packs) {
      MESSAGE("no packed GEMM at the active level: nothing is packed at load");
      continue;
    }
    std::vector<const gemm::PackedWeights*> copies;
    for (fm::TensorView* t : linear_views(m->weights)) {
      CAPTURE(t->name);
      CHECK(t->packed_only);
      REQUIRE(t->packed);
      CHECK(t->data == t->packed->bytes.data());
      copies.push_back(t->packed.get());
    }
    const uint64_t reported = m->weight_bytes;
    CHECK(reported == held_bytes(*m));
#ifdef __linux__
    const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
    // The files' pages under the packed matrices were given back: what stays resident of the file
    // is the embedding and the norms (each at most a page over), not the matrices.
    uint64_t unpacked = 0;
    for (const fm::TensorView* t : fm::detail::distinct_tensors(m->weights)) unpacked += t->packed_only ? 0 : t->bytes + 2 * page;
    const uint64_t file_before = resident_file_pages(*m);
    CHECK(file_before * page <= unpacked);
#endif
    const std::vector<float> got = forward_logits(*m, prompt), want = forward_logits(*lazy, prompt);
    CHECK(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)) == 0);
    // After the forward pass: no copy made, nothing more held, the same bytes reported.
    CHECK(m->weight_bytes == reported);
    CHECK(held_bytes(*m) == reported);
    std::vector<fm::TensorView*> views = linear_views(m->weights);
    for (size_t i = 0; i < views.size(); ++i) CHECK(views[i]->packed.get() == copies[i]);
#ifdef __linux__
    CHECK(resident_file_pages(*m) == file_before);
#endif
    // The lazy load, for contrast: its forward pass made the copies its weight_bytes does not count.
    MESSAGE("lazily packed: reports " << lazy->weight_bytes << " bytes, holds " << held_bytes(*lazy)
                                      << "; packed at load: reports and holds " << reported);
    // Rows in the file's layout are still readable (embedding-style lookups, the CUDA upload).
    std::vector<float> a(m->weights.layers[0].w_down.cols()), b(a.size());
    for (uint64_t r : {0ull, 5ull, 767ull}) {
      fineserve::ops::load_row(m->weights.layers[0].w_down, r, a.data());
      fineserve::ops::load_row(lazy->weights.layers[0].w_down, r, b.data());
      CHECK(a == b);
    }
  }
}

TEST_CASE("packed at load: W8A8 made by PTQ is held once (its owned rows freed), reported == held, logits as lazily packed") {
  fm::testing::TempDir dir;
  const fm::GenerateOptions o = one_layer_f16(dir, 5);
  const std::vector<int32_t> prompt = {1, 17, 300, 42, 9};
  fm::QuantizeSpec spec;
  spec.weights = DType::W8A8;
  spec.calibration = {prompt};  // smoothing: the views carry input scales
  fm::LoadOptions lazy_opts, packed_opts;
  lazy_opts.quantize = spec;
  packed_opts.quantize = spec;
  packed_opts.repack = true;
  std::unique_ptr<fm::LoadedModel> m = fm::load_model(o.out, packed_opts);
  std::unique_ptr<fm::LoadedModel> lazy = fm::load_model(o.out, lazy_opts);
  if (!m->weights.layers[0].wq.packed_only) {
    MESSAGE("no W8A8 GEMM at the active level: nothing is packed at load");
    return;
  }
  for (const fm::TensorView* t : linear_views(m->weights)) {
    CAPTURE(t->name);
    if (t->dtype != DType::W8A8) continue;  // the output projection stays as loaded
    CHECK(t->packed_only);
    REQUIRE(t->packed);
    CHECK(t->data == t->packed->bytes.data());
  }
  // weight_bytes also counts the smoothing's input scales (one array per distinct input).
  std::vector<const float*> scales;
  uint64_t scale_bytes = 0;
  for (const fm::TensorView* t : linear_views(m->weights)) {
    if (t->input_scale == nullptr || std::find(scales.begin(), scales.end(), t->input_scale) != scales.end()) continue;
    scales.push_back(t->input_scale);
    scale_bytes += 4 * t->cols();
  }
  CHECK(scale_bytes > 0);
  CHECK(m->weight_bytes == held_bytes(*m) + scale_bytes);
  // The PTQ rows of the seven matrices are gone from the owned buffers.
  CHECK(m->owned.size() + 7 == lazy->owned.size());
  const std::vector<float> got = forward_logits(*m, prompt), want = forward_logits(*lazy, prompt);
  CHECK(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)) == 0);
  CHECK(m->weight_bytes == held_bytes(*m) + scale_bytes);  // no copy made by the forward pass
  std::vector<float> a(m->weights.layers[0].w_up.cols()), b(a.size());
  for (uint64_t r : {0ull, 5ull, 2047ull}) {
    fineserve::ops::load_row(m->weights.layers[0].w_up, r, a.data());
    fineserve::ops::load_row(lazy->weights.layers[0].w_up, r, b.data());
    CHECK(a == b);
  }
}
