// calibrate(): the serving forward pass with an observer that summarises every linear input.
#include "model/calibration.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "engine/cpu_executor.h"
#include "engine/llama_forward.h"
#include "kv/kv_slab.h"
#include "model/model_error.h"

namespace fineserve::model {

namespace {

using Point = engine::ForwardObserver::Point;

class StatsObserver final : public engine::ForwardObserver {
 public:
  StatsObserver(Calibration& cal, uint64_t total_tokens)
      : cal_(cal), stride_((total_tokens + kMaxSampleRows - 1) / kMaxSampleRows) {}

  // Index of the first row of the current sequence among all calibration tokens.
  void start_sequence(uint64_t first_row) { first_row_ = first_row; }

  void observe(uint32_t layer, Point point, const float* x, size_t rows, size_t cols) override {
    LayerCalibration& l = cal_.layers[layer];
    switch (point) {
      case Point::AttnInput: return add(l.attn_in, x, rows, cols);
      case Point::OInput: return add(l.o_in, x, rows, cols);
      case Point::MlpInput: return add(l.mlp_in, x, rows, cols);
      case Point::DownInput: return add(l.down_in, x, rows, cols);
      case Point::Query: return add_max(l.q_max, x, rows, cols);
      case Point::Key: return add_max(l.k_max, x, rows, cols);
    }
  }

 private:
  void add(ChannelStats& s, const float* x, size_t rows, size_t cols) {
    if (s.mean_abs.empty()) {
      s.mean_abs.assign(cols, 0.0);  // a running sum until finish()
      s.max_abs.assign(cols, 0.0f);
    }
    for (size_t r = 0; r < rows; ++r) {
      const float* row = x + r * cols;
      for (size_t c = 0; c < cols; ++c) {
        const float a = std::fabs(row[c]);
        s.mean_abs[c] += a;
        s.max_abs[c] = std::max(s.max_abs[c], a);
      }
      if ((first_row_ + r) % stride_ == 0 && s.sample_rows < kMaxSampleRows) {
        s.samples.insert(s.samples.end(), row, row + cols);
        ++s.sample_rows;
      }
    }
    s.rows_seen += rows;
  }

  static void add_max(std::vector<float>& m, const float* x, size_t rows, size_t cols) {
    if (m.empty()) m.assign(cols, 0.0f);
    for (size_t r = 0; r < rows; ++r) {
      for (size_t c = 0; c < cols; ++c) m[c] = std::max(m[c], std::fabs(x[r * cols + c]));
    }
  }

  Calibration& cal_;
  uint64_t stride_;
  uint64_t first_row_ = 0;
};

void finish(ChannelStats& s) {
  for (double& m : s.mean_abs) m /= static_cast<double>(std::max<uint64_t>(s.rows_seen, 1));
}

}  // namespace

void check_calibration(const LlamaConfig& config, const std::vector<std::vector<int32_t>>& sequences) {
  for (size_t i = 0; i < sequences.size(); ++i) {
    const std::vector<int32_t>& seq = sequences[i];
    const std::string where = "quantize.calibration[" + std::to_string(i) + "]";
    if (seq.empty()) throw ModelError(ModelErrc::Unsupported, where + ": an empty token sequence");
    if (seq.size() > config.max_context) {
      throw ModelError(ModelErrc::ContextTooLong, where + ": " + std::to_string(seq.size()) +
                                                      " tokens, past the model's context of " +
                                                      std::to_string(config.max_context));
    }
    for (size_t t = 0; t < seq.size(); ++t) {
      if (seq[t] < 0 || static_cast<uint32_t>(seq[t]) >= config.vocab_size) {
        throw ModelError(ModelErrc::Unsupported, where + "[" + std::to_string(t) + "]: token " + std::to_string(seq[t]) +
                                                     " is outside the vocabulary (0.." +
                                                     std::to_string(config.vocab_size - 1) + ")");
      }
    }
  }
}

Calibration calibrate(const LoadedModel& model, const std::vector<std::vector<int32_t>>& sequences,
                      engine::ThreadPool& pool, const std::function<bool(double)>& on_progress) {
  const LlamaConfig& c = model.config;
  check_calibration(c, sequences);
  Calibration cal;
  cal.layers.resize(c.num_layers);
  uint64_t total = 0, longest = 0;
  for (const auto& s : sequences) {
    total += s.size();
    longest = std::max<uint64_t>(longest, s.size());
  }
  cal.tokens = total;
  if (total == 0) return cal;

  // An f32 cache, so the statistics are those of the unquantized model; one sequence at a time,
  // so the slab holds the longest one.
  const kv::KvGeometry g = engine::kv_geometry_for(c, kv::KvFormat::F32);
  const kv::KvLayout layout = kv::make_layout(g);
  const uint32_t n_blocks = static_cast<uint32_t>((longest + g.tokens_per_block - 1) / g.tokens_per_block);
  kv::KvSlabOptions so;
  so.slab_bytes = layout.block_bytes * 8;  // whole blocks: no tail
  so.pool_bytes = so.slab_bytes * ((n_blocks + 7) / 8);
  so.memory = "host";
  kv::KvSlab slab(so);
  kv::ModelOptions mo;
  mo.name = "calibration";
  mo.geometry = g;
  const kv::ModelId id = slab.add_model(mo);
  std::vector<kv::BlockId> ids;
  if (!slab.alloc(id, n_blocks, &ids).ok) {
    throw ModelError(ModelErrc::Unsupported, "calibration: no memory for the KV cache of " + std::to_string(longest) +
                                                 " tokens");
  }
  ops::PagedSequence seq;
  for (kv::BlockId b : ids) seq.blocks.push_back(slab.base() + slab.block_offset(id, b));

  StatsObserver observer(cal, total);
  engine::LlamaForward forward(model, layout, pool);
  forward.set_observer(&observer);
  std::vector<float> logits(c.vocab_size);
  uint64_t done = 0;
  for (const auto& tokens : sequences) {
    if (on_progress && !on_progress(static_cast<double>(done) / static_cast<double>(total))) {
      throw ModelError(ModelErrc::Cancelled, model.source + ": quantization cancelled by the progress callback");
    }
    seq.position = 0;
    seq.n_tokens = static_cast<uint32_t>(tokens.size());
    seq.row = 0;
    observer.start_sequence(done);
    forward.run(tokens, {seq}, {seq.n_tokens - 1}, logits.data());
    done += tokens.size();
  }
  for (LayerCalibration& l : cal.layers) {
    for (ChannelStats* s : {&l.attn_in, &l.o_in, &l.mlp_in, &l.down_in}) finish(*s);
  }
  if (on_progress && !on_progress(1.0)) {
    throw ModelError(ModelErrc::Cancelled, model.source + ": quantization cancelled by the progress callback");
  }
  return cal;
}

}  // namespace fineserve::model
