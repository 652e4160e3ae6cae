// KvPool: Node-API wrapper over fineserve::kv::KvPool (any policy). Translation only: argument
// unpacking, KvError -> Error with a `code`, results into plain objects and typed arrays.
#include <cstring>

#include "addon.h"
#include "args.h"
#include "wraps.h"
#include "kv/kv_slab.h"
#include "kv/pool_batch.h"
#include "kv/pool_factory.h"

namespace fineserve::addon {
namespace {

using kv::KvError;

[[noreturn]] void throw_kv(Napi::Env env, const KvError& e) { throw_coded(env, kv::errc_code(e.code()), e.what()); }

uint32_t u32_arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a number");
  return info[i].As<Napi::Number>().Uint32Value();
}


Napi::Object model_stats_js(Napi::Env env, const kv::ModelStats& s) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", s.id);
  o.Set("name", s.name);
  o.Set("geometry", geometry_js(env, s.geometry));
  auto set = [&](const char* k, uint64_t v) { o.Set(k, static_cast<double>(v)); };
  set("blockBytes", s.block_bytes);
  set("tokenBytes", s.token_bytes);
  set("blocksPerSlab", s.blocks_per_slab);
  set("reserveBlocks", s.reserve_blocks);
  set("liveBlocks", s.live_blocks);
  set("liveTokens", s.live_tokens);
  set("slabsHeld", s.slabs_held);
  set("heldBytes", s.held_bytes);
  set("liveTokenBytes", s.live_token_bytes);
  set("internalBytes", s.internal_bytes);
  set("externalBytes", s.external_bytes);
  set("tailBytes", s.tail_bytes);
  set("peakLiveBlocks", s.peak_live_blocks);
  set("peakHeldBytes", s.peak_held_bytes);
  set("peakLiveTokenBytes", s.peak_live_token_bytes);
  set("allocCalls", s.alloc_calls);
  set("blocksAllocated", s.blocks_allocated);
  set("freeCalls", s.free_calls);
  set("blocksFreed", s.blocks_freed);
  set("oomCount", s.oom_count);
  set("blocksMoved", s.blocks_moved);
  return o;
}

Napi::Object alloc_js(Napi::Env env, const kv::AllocResult& a, const kv::BlockId* ids, size_t n) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("ok", a.ok);
  o.Set("available", static_cast<double>(a.available));
  if (a.ok) {
    Napi::Uint32Array blocks = Napi::Uint32Array::New(env, n);
    if (n > 0) std::memcpy(blocks.Data(), ids, n * sizeof(kv::BlockId));
    o.Set("blocks", blocks);
  }
  return o;
}

class KvPoolWrap : public Napi::ObjectWrap<KvPoolWrap> {
 public:
  static Napi::Function define(Napi::Env env) {
    return DefineClass(env, "KvPool",
                       {InstanceMethod<&KvPoolWrap::add_model>("addModel"),
                        InstanceMethod<&KvPoolWrap::remove_model>("removeModel"),
                        InstanceMethod<&KvPoolWrap::alloc>("alloc"),
                        InstanceMethod<&KvPoolWrap::free>("free"),
                        InstanceMethod<&KvPoolWrap::set_live_tokens>("setLiveTokens"),
                        InstanceMethod<&KvPoolWrap::available_blocks>("availableBlocks"),
                        InstanceMethod<&KvPoolWrap::step>("step"),
                        InstanceMethod<&KvPoolWrap::layout>("layout"),
                        InstanceMethod<&KvPoolWrap::block_offset>("blockOffset"),
                        InstanceMethod<&KvPoolWrap::compact>("compact"),
                        InstanceMethod<&KvPoolWrap::stats>("stats"),
                        InstanceMethod<&KvPoolWrap::dispose>("dispose"),
                        InstanceAccessor<&KvPoolWrap::native_bytes>("nativeBytes")});
  }

  explicit KvPoolWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<KvPoolWrap>(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject()) throw Napi::TypeError::New(env, "KvPool options must be an object");
    Napi::Object o = info[0].As<Napi::Object>();
    kv::PoolConfig c;
    Napi::Value policy = o.Get("policy");
    if (policy.IsString()) c.policy = policy.As<Napi::String>().Utf8Value();
    c.pool_bytes = static_cast<uint64_t>(optional_number(o, "poolBytes", 0));
    c.slab_bytes = static_cast<uint64_t>(optional_number(o, "slabBytes", 0));
    c.max_tail_fraction = optional_number(o, "maxTailFraction", c.max_tail_fraction);
    Napi::Value memory = o.Get("memory");
    if (memory.IsString()) c.memory = memory.As<Napi::String>().Utf8Value();
    c.block_bytes = static_cast<uint64_t>(optional_number(o, "blockBytes", 0));
    c.page_bytes = static_cast<uint64_t>(optional_number(o, "pageBytes", static_cast<double>(c.page_bytes)));
    c.map_cost_ns = static_cast<uint64_t>(optional_number(o, "mapCostNs", static_cast<double>(c.map_cost_ns)));
    std::unique_ptr<kv::KvPool> pool;
    try {
      pool = kv::make_pool(c);
    } catch (const KvError& e) {
      throw_kv(env, e);
    }
    // Host memory is reported to V8 as external memory; device memory ("cuda:N") and an
    // accounting-only pool ("none") hold none of the process's.
    auto* slab = dynamic_cast<kv::KvSlab*>(pool.get());
    bytes_ = slab != nullptr && slab->memory() == "host" ? pool->stats().pool_bytes : 0;
    pool_ = share_tracked(env, std::move(pool), bytes_);
  }

  // The pool, or ERR_KV_DISPOSED naming `used`.
  const std::shared_ptr<kv::KvPool>& live(Napi::Env env, const std::string& used) const {
    if (!pool_) throw_coded(env, "ERR_KV_DISPOSED", used + ": the KvPool was disposed");
    return pool_;
  }

 private:
  // Drops this wrap's share: the pool's memory is freed now unless an executor still holds it.
  void dispose(const Napi::CallbackInfo&) { pool_.reset(); }

  Napi::Value native_bytes(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), pool_ ? static_cast<double>(bytes_) : 0.0);
  }

  template <typename F>
  auto guard(Napi::Env env, F&& f) -> decltype(f()) {
    try {
      return f();
    } catch (const KvError& e) {
      throw_kv(env, e);
    }
  }

  Napi::Value add_model(const Napi::CallbackInfo& info) {
    kv::KvPool& pool = *live(info.Env(), "KvPool.addModel()");
    Napi::Env env = info.Env();
    if (!info[0].IsObject()) throw Napi::TypeError::New(env, "addModel options must be an object");
    Napi::Object o = info[0].As<Napi::Object>();
    kv::ModelOptions m;
    m.name = o.Get("name").ToString().Utf8Value();
    if (!o.Get("geometry").IsObject()) throw Napi::TypeError::New(env, "geometry must be an object");
    Napi::Object g = o.Get("geometry").As<Napi::Object>();
    m.geometry.tokens_per_block = static_cast<uint32_t>(optional_number(g, "tokensPerBlock", 0));
    m.geometry.num_layers = static_cast<uint32_t>(optional_number(g, "layers", 0));
    m.geometry.num_kv_heads = static_cast<uint32_t>(optional_number(g, "kvHeads", 0));
    m.geometry.head_dim = static_cast<uint32_t>(optional_number(g, "headDim", 0));
    m.geometry.scale_bytes = static_cast<uint32_t>(optional_number(g, "scaleBytes", 0));
    std::string format = g.Get("format").ToString().Utf8Value();
    if (!kv::parse_format(format, &m.geometry.format)) {
      throw_kv(env, KvError(kv::KvErrc::InvalidGeometry,
                            "model \"" + m.name + "\": format = \"" + format +
                                "\" is not a KV format (f32, f16, bf16, fp8, int8, int4)"));
    }
    m.reserve_blocks = static_cast<uint64_t>(optional_number(o, "reserveBlocks", 0));
    m.partition_bytes = static_cast<uint64_t>(optional_number(o, "partitionBytes", 0));
    return Napi::Number::New(env, guard(env, [&] { return pool.add_model(m); }));
  }

  void remove_model(const Napi::CallbackInfo& info) {
    kv::KvPool& pool = *live(info.Env(), "KvPool.removeModel()");
    guard(info.Env(), [&] { pool.remove_model(u32_arg(info, 0, "model")); });
  }

  Napi::Value alloc(const Napi::CallbackInfo& info) {
    kv::KvPool& pool = *live(info.Env(), "KvPool.alloc()");
    Napi::Env env = info.Env();
    std::vector<kv::BlockId> ids;
    kv::AllocResult a = guard(env, [&] { return pool.alloc(u32_arg(info, 0, "model"), u32_arg(info, 1, "count"), &ids); });
    return alloc_js(env, a, ids.data(), ids.size());
  }

  void free(const Napi::CallbackInfo& info) {
    kv::KvPool& pool = *live(info.Env(), "KvPool.free()");
    std::vector<kv::BlockId> ids = typed_array<kv::BlockId>(info[1], "blocks");
    guard(info.Env(), [&] { pool.free(u32_arg(info, 0, "model"), ids.data(), ids.size()); });
  }

  void set_live_tokens(const Napi::CallbackInfo& info) {
    kv::KvPool& pool = *live(info.Env(), "KvPool.setLiveTokens()");
    if (!info[1].IsNumber()) throw Napi::TypeError::New(info.Env(), "tokens must be a number");
    uint64_t tokens = static_cast<uint64_t>(info[1].As<Napi::Number>().DoubleValue());
    guard(info.Env(), [&] { pool.set_live_tokens(u32_arg(info, 0, "model"), tokens); });
  }

  Napi::Value available_blocks(const Napi::CallbackInfo& info) {
    kv::KvPool& pool = *live(info.Env(), "KvPool.availableBlocks()");
    return Napi::Number::New(info.Env(), static_cast<double>(guard(info.Env(), [&] {
                               return pool.available_blocks(u32_arg(info, 0, "model"));
                             })));
  }

  // step(freeModels, freeCounts, freeIds, allocModels, allocCounts, liveModels, liveTokens)
  Napi::Value step(const Napi::CallbackInfo& info) {
    kv::KvPool& pool = *live(info.Env(), "KvPool.step()");
    Napi::Env env = info.Env();
    kv::PoolBatch b;
    b.free_models = typed_array<uint32_t>(info[0], "freeModels");
    b.free_counts = typed_array<uint32_t>(info[1], "freeCounts");
    b.free_ids = typed_array<uint32_t>(info[2], "freeIds");
    b.alloc_models = typed_array<uint32_t>(info[3], "allocModels");
    b.alloc_counts = typed_array<uint32_t>(info[4], "allocCounts");
    b.live_models = typed_array<uint32_t>(info[5], "liveModels");
    for (double t : typed_array<double>(info[6], "liveTokens")) b.live_tokens.push_back(static_cast<uint64_t>(t));
    kv::PoolBatchResult r = guard(env, [&] { return kv::run_batch(pool, b); });
    Napi::Object o = Napi::Object::New(env);
    Napi::Uint32Array ids = Napi::Uint32Array::New(env, r.ids.size());
    if (!r.ids.empty()) std::memcpy(ids.Data(), r.ids.data(), r.ids.size() * sizeof(uint32_t));
    Napi::Uint32Array starts = Napi::Uint32Array::New(env, r.starts.size());
    std::memcpy(starts.Data(), r.starts.data(), r.starts.size() * sizeof(uint32_t));
    Napi::Uint8Array ok = Napi::Uint8Array::New(env, r.allocs.size());
    Napi::Float64Array available = Napi::Float64Array::New(env, r.allocs.size());
    for (size_t i = 0; i < r.allocs.size(); ++i) {
      ok[i] = r.allocs[i].ok ? 1 : 0;
      available[i] = static_cast<double>(r.allocs[i].available);
    }
    o.Set("ids", ids);
    o.Set("starts", starts);
    o.Set("ok", ok);
    o.Set("available", available);
    return o;
  }

  Napi::Value layout(const Napi::CallbackInfo& info) {
    kv::KvPool& pool = *live(info.Env(), "KvPool.layout()");
    Napi::Env env = info.Env();
    const kv::KvLayout& l = guard(env, [&]() -> const kv::KvLayout& { return pool.layout(u32_arg(info, 0, "model")); });
    Napi::Object o = Napi::Object::New(env);
    o.Set("geometry", geometry_js(env, l.geometry));
    o.Set("rowBytes", static_cast<double>(l.row_bytes));
    o.Set("dataBytes", static_cast<double>(l.data_bytes));
    o.Set("scaleOffset", static_cast<double>(l.scale_offset));
    o.Set("regionBytes", static_cast<double>(l.region_bytes));
    o.Set("vRegionBytes", static_cast<double>(l.v_region_bytes));
    o.Set("layerStride", static_cast<double>(l.layer_stride));
    o.Set("blockBytes", static_cast<double>(l.block_bytes));
    o.Set("tokenBytes", static_cast<double>(l.token_bytes));
    return o;
  }

  Napi::Value block_offset(const Napi::CallbackInfo& info) {
    kv::KvPool& pool = *live(info.Env(), "KvPool.blockOffset()");
    return Napi::Number::New(info.Env(), static_cast<double>(guard(info.Env(), [&] {
                               return pool.block_offset(u32_arg(info, 0, "model"), u32_arg(info, 1, "block"));
                             })));
  }

  // compact(model, maxSlabs) -> { released, moves: Uint32Array [from0, to0, from1, to1, ...] }
  Napi::Value compact(const Napi::CallbackInfo& info) {
    kv::KvPool& pool = *live(info.Env(), "KvPool.compact()");
    Napi::Env env = info.Env();
    std::vector<kv::BlockMove> moves;
    uint64_t released = guard(env, [&] {
      return pool.compact(u32_arg(info, 0, "model"), u32_arg(info, 1, "maxSlabs"), &moves);
    });
    Napi::Uint32Array pairs = Napi::Uint32Array::New(env, moves.size() * 2);
    for (size_t i = 0; i < moves.size(); ++i) {
      pairs[2 * i] = moves[i].from;
      pairs[2 * i + 1] = moves[i].to;
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("released", static_cast<double>(released));
    o.Set("moves", pairs);
    return o;
  }

  Napi::Value stats(const Napi::CallbackInfo& info) {
    kv::KvPool& pool = *live(info.Env(), "KvPool.stats()");
    Napi::Env env = info.Env();
    kv::PoolStats s = pool.stats();
    Napi::Object o = Napi::Object::New(env);
    o.Set("policy", s.policy);
    auto set = [&](const char* k, uint64_t v) { o.Set(k, static_cast<double>(v)); };
    set("poolBytes", s.pool_bytes);
    set("slabBytes", s.slab_bytes);
    set("numSlabs", s.num_slabs);
    set("freeSlabs", s.free_slabs);
    set("freeBytes", s.free_bytes);
    set("unusableBytes", s.unusable_bytes);
    set("heldBytes", s.held_bytes);
    set("liveTokenBytes", s.live_token_bytes);
    set("internalBytes", s.internal_bytes);
    set("externalBytes", s.external_bytes);
    set("tailBytes", s.tail_bytes);
    set("peakHeldBytes", s.peak_held_bytes);
    set("peakLiveTokenBytes", s.peak_live_token_bytes);
    set("mapCalls", s.map_calls);
    set("mapCostNs", s.map_cost_ns);
    Napi::Array models = Napi::Array::New(env, s.models.size());
    for (uint32_t i = 0; i < s.models.size(); ++i) models.Set(i, model_stats_js(env, s.models[i]));
    o.Set("models", models);
    return o;
  }

  std::shared_ptr<kv::KvPool> pool_;
  uint64_t bytes_ = 0;
};

}  // namespace

Napi::Object geometry_js(Napi::Env env, const kv::KvGeometry& g) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("tokensPerBlock", g.tokens_per_block);
  o.Set("layers", g.num_layers);
  o.Set("kvHeads", g.num_kv_heads);
  o.Set("headDim", g.head_dim);
  o.Set("format", kv::format_name(g.format));
  o.Set("scaleBytes", g.scale_bytes);
  return o;
}

std::shared_ptr<kv::KvPool> unwrap_kv_pool(const Napi::Value& value, const char* what) {
  Napi::Env env = value.Env();
  return unwrap_instance<KvPoolWrap>(value, addon_data(env).kv_pool, what, "KvPool")->live(env, what);
}

void throw_coded(Napi::Env env, const char* code, const std::string& message) {
  Napi::Error err = Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, code));
  throw err;
}

void register_kv_pool(Napi::Env env, Napi::Object exports) {
  Napi::Function ctor = KvPoolWrap::define(env);
  // Per environment: instanceof checks in unwrap_kv_pool need it.
  addon_data(env).kv_pool = Napi::Persistent(ctor);
  exports.Set("KvPool", ctor);
}

}  // namespace fineserve::addon
