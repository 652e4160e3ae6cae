// The 6-bit scale and min of sub-block j (0..7) of a Q4_K super-block's 12 scale bytes (layout in
// weight_format.h), shared by the K-quant encoder and dot kernels.
#pragma once

#include <cstdint>

namespace fineserve::quant {

inline void q4_k_scale_min(const uint8_t* s, int j, int* sc, int* m) {
  if (j < 4) {
    *sc = s[j] & 63;
    *m = s[j + 4] & 63;
  } else {
    *sc = (s[j + 4] & 15) | (s[j - 4] >> 6) << 4;
    *m = (s[j + 4] >> 4) | (s[j] >> 6) << 4;
  }
}

}  // namespace fineserve::quant
