// The benchmarks' synthetic weights (gpu::fill_synthetic) decode, through cpp/core's own
// dequantizer, to finite values of the intended range in every weight type, with the padding the
// layout requires: a benchmark on malformed bytes would time something other than real weights.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "common/device.h"
#include "kernels/kernels.h"
#include "model/tensor.h"
#include "ops/rows.h"
#include "quant/weight_format.h"

using namespace fineserve;
using model::DType;

TEST_CASE("synthetic weights decode to finite values in range, in every weight type") {
  const DType types[] = {DType::F32, DType::F16, DType::BF16, DType::W8A8, DType::FP8, DType::W4A16, DType::W4A8};
  const uint32_t rows = 5, cols = 200;  // a partial last group and sub-block
  for (DType t : types) {
    CAPTURE(model::dtype_name(t));
    gpu::DeviceMatrix m;
    m.dtype = t;
    m.rows = rows;
    m.cols = cols;
    m.group = (t == DType::W4A16 || t == DType::W4A8) ? 64 : 0;
    m.row_bytes = quant::row_bytes(t, cols, m.group);
    m.data_offset = quant::row_data_offset(t, cols, m.group);
    gpu::DeviceBuffer buf(m.row_bytes * rows, "weights");
    m.data = buf.as<uint8_t>();
    gpu::fill_synthetic(m, 99, nullptr);
    std::vector<uint8_t> host(m.row_bytes * rows);
    gpu::copy_to_host(host.data(), buf.as(), host.size(), nullptr);
    gpu::stream_sync(nullptr);

    model::TensorView v;
    v.dtype = t;
    v.shape = {rows, cols};
    v.data = host.data();
    v.bytes = host.size();
    v.group = m.group;
    const double amp = 1.0 / std::sqrt(double(cols));
    double sum_sq = 0;
    std::vector<float> row(cols);
    for (uint32_t r = 0; r < rows; ++r) {
      ops::load_row(v, r, row.data());
      for (float x : row) {
        REQUIRE(std::isfinite(x));
        CHECK(std::fabs(x) <= amp * 1.07 + 1e-6);  // a scale rounded to f16/e4m3 may overshoot a little
        sum_sq += double(x) * x;
      }
    }
    // Uniform in (-amp, amp) has mean square amp^2 / 3 (4-bit grids a little more); not all zero.
    CHECK(sum_sq / (rows * cols) > amp * amp * 0.2);
  }
}
