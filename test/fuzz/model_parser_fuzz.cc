// libFuzzer target for the model file parsers. Byte 0 picks the parser, the rest is the file:
//   0: GGUF, then (when it parses) config, weight assembly, metadata rendering and the NaN scan,
//      exactly as load_model runs them on a mapped file;
//   1: safetensors, then every tensor view is read end to end;
//   2: JSON, then config_from_hf when it is an object.
// Any input may be rejected, but only with ModelError: anything else thrown escapes and libFuzzer
// records it, as it does crashes, ASan/UBSan reports and leaks.
//
// Built by CMake with -DFINESERVE_FUZZ=ON (clang only) and run by scripts/fuzz.mjs; seeds are in
// test/fuzz/corpus/model_parser/ (each starts with its selector byte).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "model/config_readers.h"
#include "model/gguf.h"
#include "model/json.h"
#include "model/loader_internal.h"
#include "model/model_error.h"
#include "model/safetensors.h"

using namespace fineserve::model;

namespace {

// Reads every byte a view claims, so an out-of-bounds view is an ASan report, not a silent pass.
uint8_t touch(const TensorView& v) {
  uint8_t acc = 0;
  for (uint64_t k = 0; k < v.bytes; ++k) acc ^= v.data[k];
  return acc;
}

volatile uint8_t sink;

void run_gguf(const uint8_t* data, size_t size) {
  gguf::File f = gguf::parse(data, size, "fuzz.gguf");
  for (const gguf::TensorInfo& t : f.tensors) sink = touch(f.view(t));
  // Also for files the config rejects, so every metadata type reaches the renderer; a small
  // cap exercises the give-up path.
  sink = uint8_t(detail::render_metadata(f, 256).size());
  LoadedModel model;
  detail::TensorIndex index;
  detail::build_from_gguf(f, model, index);
  LoadOptions options;
  options.on_progress = [](double fraction) { return fraction <= 1.0; };
  detail::scan_weights(model.weights, index, options, "fuzz.gguf");
}

void run_safetensors(const uint8_t* data, size_t size) {
  safetensors::File f = safetensors::parse(data, size, "fuzz.safetensors");
  for (const safetensors::TensorInfo& t : f.tensors) sink = touch(f.view(t));
}

void run_json(const uint8_t* data, size_t size) {
  json::Value v = json::parse(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.json");
  if (v.is_object()) config_from_hf(v, "config.json");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t which = data[0] % 3;
  ++data;
  --size;
  try {
    switch (which) {
      case 0: run_gguf(data, size); break;
      case 1: run_safetensors(data, size); break;
      default: run_json(data, size); break;
    }
  } catch (const ModelError&) {
    // The one acceptable way to reject an input.
  }
  return 0;
}
