// The kernel tables each kernels_*.cc file defines. Declared unconditionally so every definition
// gets external linkage; dispatch.cc references only those the build compiled in.
#pragma once

#include "simd/dispatch.h"

namespace fineserve::simd {

extern const Kernels kBaselineKernels;
extern const Kernels kAvx2Kernels;
extern const Kernels kAvx512Kernels;

}  // namespace fineserve::simd
