// CleanExit<f>::call: the kernel f, returning with the upper YMM/ZMM halves clean. For the
// kernel tables whose entries baseline code calls in its own loops (simd/upper_state.h says why
// that code must find them clean); GCC 12 emits no vzeroupper of its own after most of them.
// Include only from translation units compiled for AVX or wider.
#pragma once

#include <immintrin.h>

#include <type_traits>

namespace fineserve::simd {

template <auto F>
struct CleanExit;

template <class R, class... Args, R (*F)(Args...)>
struct CleanExit<F> {
  static R call(Args... args) {
    if constexpr (std::is_void_v<R>) {
      F(args...);
      _mm256_zeroupper();
    } else {
      R r = F(args...);
      _mm256_zeroupper();
      return r;
    }
  }
};

}  // namespace fineserve::simd
