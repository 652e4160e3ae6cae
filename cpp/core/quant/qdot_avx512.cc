// AVX-512 (F/BW/VL/DQ) quantized row dots: none of its own yet, so qdot_kernels() falls back to the
// AVX2 kernels for every entry (an AVX-512 CPU runs them).
#include "quant/qdot.h"

namespace fineserve::quant {

const QdotKernels kQdotAvx512 = {nullptr, nullptr, nullptr, nullptr, nullptr, nullptr};

}  // namespace fineserve::quant
