// load_model: picks the format from the path, then checks and scans what it loaded, and
// quantizes it when asked.
#include "model/loader.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <new>

#include "engine/thread_pool.h"
#include "model/loader_internal.h"
#include "model/model_error.h"
#include "model/quantize_model.h"

namespace fineserve::model {

namespace {

// Tells the kernel the pages wholly inside a replaced tensor's bytes are not needed any more, so
// the process's resident memory drops to the quantized size. The mapping is private and
// read-only: a later read would fault the file's bytes back in, never zeros.
void release_pages(const std::vector<MappedFile>& files, const TensorView& t) {
  static const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t begin = reinterpret_cast<uintptr_t>(t.data), end = begin + t.bytes;
  for (const MappedFile& f : files) {
    const uintptr_t fb = reinterpret_cast<uintptr_t>(f.data());
    if (f.data() == nullptr || begin < fb || end > fb + f.size()) continue;
    const uintptr_t first = (begin + page - 1) / page * page, last = end / page * page;
    if (last > first) ::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
    return;
  }
}

}  // namespace

AlignedBytes alloc_aligned(uint64_t bytes) {
  constexpr uint64_t kAlign = 64;
  void* p = std::aligned_alloc(kAlign, (std::max<uint64_t>(bytes, 1) + kAlign - 1) / kAlign * kAlign);
  if (p == nullptr) throw std::bad_alloc();
  return AlignedBytes(static_cast<uint8_t*>(p));
}

std::unique_ptr<LoadedModel> load_model(const std::string& path, const LoadOptions& options) {
  namespace fs = std::filesystem;
  if (options.quantize) check_quantize_spec(*options.quantize);
  std::error_code ec;
  fs::file_status st = fs::status(path, ec);
  if (ec || !fs::exists(st)) {
    throw ModelError(ModelErrc::NotFound, path + ": no such file or folder (expected a .gguf file or a Hugging Face "
                                                 "model folder)");
  }
  const std::string ext = fs::path(path).extension().string();
  if (!fs::is_directory(st) && (ext == ".safetensors" || ext == ".json")) {
    throw ModelError(ModelErrc::Unsupported, path + ": a Hugging Face model is loaded from its folder (config.json "
                                                    "plus weights), not from one of its files; pass the folder");
  }
  detail::TensorIndex index;
  std::unique_ptr<detail::MappedModel> model =
      fs::is_directory(st) ? detail::load_hf(path, index) : detail::load_gguf(path, index);
  model->source = path;
  model->weight_bytes = 0;
  for (const TensorView* t : detail::distinct_tensors(model->weights)) model->weight_bytes += t->bytes;
  if (options.quantize) check_quantizable(*model, *options.quantize);

  // Progress is split between the phases by their estimated cost (quantize_model.h), so the
  // fraction moves at a steady pace across both.
  const double scan_cost = static_cast<double>(model->weight_bytes) * (options.check_finite ? 1.0 : 0.01);
  const double quant_cost = options.quantize ? quantize_cost(model->config, *options.quantize) : 0.0;
  const double scan_share = scan_cost + quant_cost > 0 ? scan_cost / (scan_cost + quant_cost) : 1.0;
  LoadOptions scan = options;
  if (options.on_progress && options.quantize) {
    scan.on_progress = [&](double f) { return options.on_progress(f * scan_share); };
  }
  // On a throw (bad weights, cancel) `model` unwinds here and unmaps every file.
  detail::scan_weights(model->weights, index, scan, path);
  if (options.quantize) {
    engine::ThreadPool pool;  // every core this process may use, no more
    std::function<bool(double)> progress;
    if (options.on_progress) {
      progress = [&](double f) { return options.on_progress(scan_share + f * (1.0 - scan_share)); };
    }
    const std::vector<MappedFile>& files = model->files;
    quantize_model(*model, *options.quantize, pool, progress,
                   [&files](const TensorView& replaced) { release_pages(files, replaced); });
  }
  return model;
}

}  // namespace fineserve::model
