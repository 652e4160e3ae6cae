// Block geometry against the sizes worked out by hand in fineserve-notes.md §1.2 (Llama-3.1-8B,
// 70B and FireQ INT4 KV), and the layout checked byte by byte: every row and scale of a block has
// its own bytes inside the block.
#include <doctest/doctest.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "kv/kv_geometry.h"

using namespace fineserve::kv;

namespace {

KvGeometry llama8b(KvFormat f, uint32_t tokens = 16, uint32_t scale = 0) {
  return KvGeometry{tokens, 32, 8, 128, f, scale};
}

}  // namespace

TEST_CASE("KV bytes per token match the reference table") {
  CHECK(make_layout(llama8b(KvFormat::F16)).token_bytes == 131072);
  // fp8: 128 B of E4M3 per token per head for K and V, plus K's per-channel references (128 f16)
  // once per block of 16 tokens per head: 32 layers x 8 heads x (256 + 256 / 16) = 69632 (plain
  // E4M3 without references took 65536; 70B: 163840 -> 174080).
  CHECK(make_layout(llama8b(KvFormat::Fp8E4M3)).token_bytes == 69632);
  CHECK(make_layout(KvGeometry{16, 80, 8, 128, KvFormat::F16, 0}).token_bytes == 327680);
  CHECK(make_layout(KvGeometry{16, 80, 8, 128, KvFormat::Fp8E4M3, 0}).token_bytes == 174080);
  // INT4 KV: 64 B of int4 per token per head for K and V, a 1-byte V scale per token per head, and
  // K's per-channel params (128 steps + 128 minima, f16) once per block of 16 tokens per head:
  // 32 layers x 8 heads x (128 + 1 + 512 / 16) = 41216 (a per-token-scale layout took 33280).
  CHECK(make_layout(llama8b(KvFormat::Int4, 16, 1)).token_bytes == 41216);
  // Larger blocks spread the params thinner: 32 x 8 x (128 + 2 + 512 / 64).
  CHECK(make_layout(llama8b(KvFormat::Int4, 64, 2)).token_bytes == 35328);
}

TEST_CASE("one layer's K region matches the reference per-layer block size") {
  // The reference's block is one layer's K (or V); ours holds every layer, so its region is that.
  CHECK(make_layout(llama8b(KvFormat::F16)).region_bytes == 32768);
  CHECK(make_layout(llama8b(KvFormat::F16, 32)).region_bytes == 65536);
  // fp8: K's region ends with the references (8 heads x 256 B); V's is the rows alone.
  CHECK(make_layout(llama8b(KvFormat::Fp8E4M3)).region_bytes == 16384 + 2048);
  CHECK(make_layout(llama8b(KvFormat::Fp8E4M3)).v_region_bytes == 16384);
  // int4: K's region ends with the channel params (8 heads x 512 B), V's with 16 x 8 scales.
  CHECK(make_layout(llama8b(KvFormat::Int4, 16, 1)).region_bytes == 12288);
  CHECK(make_layout(llama8b(KvFormat::Int4, 16, 1)).v_region_bytes == 8320);
  CHECK(make_layout(llama8b(KvFormat::Int4, 16, 1)).layer_stride == 12288 + 8320);
  KvLayout l = make_layout(llama8b(KvFormat::F16));
  CHECK(l.block_bytes == 32ull * 2 * 32768);
  CHECK(l.block_bytes == 16 * l.token_bytes);  // no padding when every region is 64-aligned
}

TEST_CASE("every row and scale of a block has its own bytes, all inside the block") {
  for (KvGeometry g : {KvGeometry{5, 3, 2, 6, KvFormat::Int4, 3}, KvGeometry{16, 2, 4, 64, KvFormat::F32, 0},
                       KvGeometry{3, 2, 3, 10, KvFormat::Int8, 4}, KvGeometry{7, 1, 1, 2, KvFormat::BF16, 1},
                       KvGeometry{5, 3, 2, 6, KvFormat::Fp8E4M3, 0}, KvGeometry{16, 2, 3, 8, KvFormat::Fp8E4M3, 2}}) {
    KvLayout l = make_layout(g);
    CAPTURE(l.block_bytes);
    std::vector<int> owner(l.block_bytes, 0);
    int claims = 0;
    for (uint32_t layer = 0; layer < g.num_layers; ++layer)
      for (uint32_t kv = 0; kv < 2; ++kv)
        for (uint32_t h = 0; h < g.num_kv_heads; ++h)
          for (uint32_t t = 0; t < g.tokens_per_block; ++t) {
            uint64_t row = l.row_offset(layer, kv, h, t);
            REQUIRE(row + l.row_bytes <= l.block_bytes);
            for (uint64_t b = 0; b < l.row_bytes; ++b) claims += owner[row + b]++ == 0;
            if (k_per_channel(g.format) && kv == 0) continue;  // per-channel params, below
            uint64_t sc = l.scale_at(layer, kv, h, t);
            REQUIRE(sc + g.scale_bytes <= l.block_bytes);
            for (uint64_t b = 0; b < g.scale_bytes; ++b) claims += owner[sc + b]++ == 0;
          }
    if (k_per_channel(g.format)) {
      REQUIRE(l.k_params_bytes() == (g.format == KvFormat::Int4 ? 4u : 2u) * g.head_dim);
      for (uint32_t layer = 0; layer < g.num_layers; ++layer)
        for (uint32_t h = 0; h < g.num_kv_heads; ++h) {
          uint64_t at = l.k_params_at(layer, h);
          REQUIRE(at % 2 == 0);
          REQUIRE(at + l.k_params_bytes() <= l.v_offset + layer * l.layer_stride);
          for (uint64_t b = 0; b < l.k_params_bytes(); ++b) claims += owner[at + b]++ == 0;
        }
    }
    int overlaps = 0;
    for (int c : owner) overlaps += c > 1;
    CHECK(overlaps == 0);
    // token_bytes spreads int4's and fp8's per-block params over the tokens, rounded down.
    CHECK(static_cast<uint64_t>(claims) / g.tokens_per_block == l.token_bytes);
    CHECK(l.block_bytes % kRegionAlign == 0);
    CHECK(l.block_bytes >= l.token_bytes * g.tokens_per_block);
  }
}

TEST_CASE("invalid geometries are rejected with the field and value named") {
  auto error_of = [](KvGeometry g) { return validate(g); };
  CHECK(error_of(KvGeometry{0, 32, 8, 128, KvFormat::F16, 0}).find("tokensPerBlock = 0") == 0);
  CHECK(error_of(KvGeometry{16, 0, 8, 128, KvFormat::F16, 0}).find("layers = 0") == 0);
  CHECK(error_of(KvGeometry{16, 32, 0, 128, KvFormat::F16, 0}).find("kvHeads = 0") == 0);
  CHECK(error_of(KvGeometry{16, 32, 8, 0, KvFormat::F16, 0}).find("headDim = 0") == 0);
  CHECK(error_of(KvGeometry{16, 32, 8, 127, KvFormat::Int4, 0}).find("headDim = 127") == 0);
  CHECK(error_of(KvGeometry{16, 32, 8, 128, KvFormat::F16, 65}).find("scaleBytes = 65") == 0);
  CHECK(error_of(KvGeometry{16, 32, 8, 128, static_cast<KvFormat>(42), 0}).find("format") == 0);
  CHECK(error_of(llama8b(KvFormat::F16)).empty());
  CHECK_THROWS_AS(make_layout(KvGeometry{16, 0, 8, 128, KvFormat::F16, 0}), std::invalid_argument);
}

TEST_CASE("format names round-trip") {
  for (KvFormat f : kAllKvFormats) {
    KvFormat parsed;
    REQUIRE(parse_format(format_name(f), &parsed));
    CHECK(parsed == f);
  }
  KvFormat unused;
  CHECK_FALSE(parse_format("fp4", &unused));
}

TEST_CASE("the integer KV formats carry an f16 scale per token x head; the others none") {
  CHECK(default_scale_bytes(KvFormat::Int8) == 2);
  CHECK(default_scale_bytes(KvFormat::Int4) == 2);
  for (KvFormat f : {KvFormat::F32, KvFormat::F16, KvFormat::BF16, KvFormat::Fp8E4M3}) CHECK(default_scale_bytes(f) == 0);
  // Llama-3.1-8B: 2 (K, V) x 32 layers x 8 heads x (128 B of int8 + 2 B scale) = 66560 B/token;
  // int4: 64 B + 2 B -> 33792.
  CHECK(make_layout(llama8b(KvFormat::Int8, 16, default_scale_bytes(KvFormat::Int8))).token_bytes == 66560);
  CHECK(make_layout(llama8b(KvFormat::Int4, 16, default_scale_bytes(KvFormat::Int4))).token_bytes == 41472);
}
