// load_model: picks the format from the path, then checks and scans what it loaded, and
// quantizes it when asked.
#include "model/loader.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <new>

#include "engine/thread_pool.h"
#include "gemm/packed_load.h"
#include "model/loader_internal.h"
#include "model/model_error.h"
#include "model/quantize_model.h"

namespace fineserve::model {

namespace {

// Gives the kernel back the pages wholly inside a replaced tensor's bytes, so the process's
// resident memory drops to the quantized size.
void release_pages(std::vector<FileBytes>& files, const TensorView& t) {
  for (FileBytes& f : files) f.discard(t.data, t.bytes);
}

// Gives back every page of the files that no weight view reads: headers (their metadata is
// copied into LoadedModel::metadata), tensors the model does not use (a tied output's copy,
// rope_freqs), alignment padding. The mapping this replaced never faulted those pages in.
void release_unused(std::vector<FileBytes>& files, const LlamaWeights& weights) {
  std::vector<std::pair<const uint8_t*, const uint8_t*>> used;
  for (const TensorView* t : detail::distinct_tensors(weights)) used.emplace_back(t->data, t->data + t->bytes);
  std::sort(used.begin(), used.end());
  for (FileBytes& f : files) {
    const uint8_t* at = f.data();
    const uint8_t* end = f.data() + f.size();
    for (const auto& [b, e] : used) {
      if (e <= f.data() || b >= end) continue;
      if (b > at) f.discard(at, static_cast<uint64_t>(b - at));
      at = std::max(at, e);
    }
    if (at != nullptr && at < end) f.discard(at, static_cast<uint64_t>(end - at));
  }
}

// Bytes the load will read: the .gguf file, or the folder's safetensors files. Only for
// splitting the progress fraction between reading and the later phases.
uint64_t bytes_to_read(const std::string& path, bool folder) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!folder) return fs::file_size(path, ec);
  uint64_t total = 0;
  for (const fs::directory_entry& e : fs::directory_iterator(path, ec)) {
    if (e.path().extension() == ".safetensors" && e.is_regular_file(ec)) total += e.file_size(ec);
  }
  return total;
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
  // Progress is split between the phases by their estimated cost (reading the files, the scan,
  // quantize_model.h), so the fraction moves at a steady pace across them.
  const bool folder = fs::is_directory(st);
  const double read_cost = static_cast<double>(bytes_to_read(path, folder));
  double read_share = 1.0, scan_share = 0.0;  // fixed once the weights' bytes are known
  uint64_t files_read = 0;                    // bytes of the files read to the end
  FileBytes::OnRead on_read;
  if (options.on_progress) {
    on_read = [&](uint64_t done, uint64_t total) {
      const double f = read_cost > 0 ? std::min(1.0, static_cast<double>(files_read + done) / read_cost) : 1.0;
      if (done == total) files_read += total;
      return options.on_progress(f * read_share);
    };
    // The read's share is fixed before the configuration is known: the scan costs what the
    // files weigh, quantizing about 15 per byte (30 per element of 16-bit weights, see
    // quantize_model.cc). The later phases split the rest exactly.
    const double later = read_cost * ((options.check_finite ? 1.0 : 0.01) + (options.quantize ? 15.0 : 0.0));
    read_share = read_cost > 0 ? read_cost / (read_cost + later) : 0.0;
  }
  detail::TensorIndex index;
  std::unique_ptr<detail::MappedModel> model =
      folder ? detail::load_hf(path, index, on_read) : detail::load_gguf(path, index, on_read);
  model->source = path;
  model->weight_bytes = 0;
  for (const TensorView* t : detail::distinct_tensors(model->weights)) model->weight_bytes += t->bytes;
  if (options.quantize) check_quantizable(*model, *options.quantize);

  const double scan_cost = static_cast<double>(model->weight_bytes) * (options.check_finite ? 1.0 : 0.01);
  const double quant_cost = options.quantize ? quantize_cost(model->config, *options.quantize) : 0.0;
  const double rest = 1.0 - read_share;
  scan_share = scan_cost + quant_cost > 0 ? rest * scan_cost / (scan_cost + quant_cost) : rest;
  LoadOptions scan = options;
  if (options.on_progress) {
    scan.on_progress = [&](double f) { return options.on_progress(read_share + f * scan_share); };
  }
  // On a throw (bad weights, cancel) `model` unwinds here and frees every file's bytes.
  detail::scan_weights(model->weights, index, scan, path);
  if (options.quantize) {
    engine::ThreadPool pool;  // every core this process may use, no more
    std::function<bool(double)> progress;
    if (options.on_progress) {
      const double start = read_share + scan_share;
      progress = [&, start](double f) { return options.on_progress(start + f * (1.0 - start)); };
    }
    std::vector<FileBytes>& files = model->files;
    quantize_model(*model, *options.quantize, pool, progress,
                   [&files](const TensorView& replaced) { release_pages(files, replaced); });
  }
  if (options.repack) {
    // The packed copies replace the files' bytes, whose pages release_unused then gives back.
    auto held = [&] {
      uint64_t n = 0;
      for (const TensorView* t : detail::distinct_tensors(model->weights)) n += t->bytes;
      return n;
    };
    const uint64_t before = held();
    std::vector<const uint8_t*> rows_before;  // W8A8 rows live in owned buffers, not in the files
    for (const TensorView* t : detail::distinct_tensors(model->weights)) rows_before.push_back(t->data);
    gemm::pack_linear_weights(model->weights);
    model->weight_bytes = model->weight_bytes + held() - before;
    // Owned buffers whose rows were all replaced by packed copies are freed, so they are held once.
    std::vector<const uint8_t*> read;
    for (const TensorView* t : detail::distinct_tensors(model->weights)) read.push_back(t->data);
    auto in = [](const std::vector<const uint8_t*>& v, const uint8_t* p) { return std::find(v.begin(), v.end(), p) != v.end(); };
    model->owned.erase(std::remove_if(model->owned.begin(), model->owned.end(),
                                      [&](const AlignedBytes& b) { return in(rows_before, b.get()) && !in(read, b.get()); }),
                       model->owned.end());
  }
  release_unused(model->files, model->weights);
  return model;
}

}  // namespace fineserve::model
