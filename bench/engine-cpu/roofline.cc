// The roofline of this CPU for one thread, measured beside the engines (bench/engine-cpu/roofline.ts
// builds it with g++ and runs it): a STREAM-like copy over arrays far larger than the caches
// (bytes read + written per second) and a loop of independent AVX2 FMAs (2 flops per lane), the
// best of several rounds each (on a shared machine, the least disturbed). Prints one JSON line.
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string_view>
#include <vector>

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

double copy_gbps(size_t n, int rounds) {
  std::vector<float> a(n, 1.0f), b(n, 0.0f);
  double best = 0;
  for (int r = 0; r < rounds; ++r) {
    const double t0 = now();
    for (size_t i = 0; i < n; i += 8) _mm256_storeu_ps(&b[i], _mm256_loadu_ps(&a[i]));
    const double dt = now() - t0;
    best = std::max(best, 2.0 * 4.0 * double(n) / dt / 1e9);
    a[r % n] = b[(r * 7) % n];  // keep the copies observable
  }
  return best;
}

// Twelve independent accumulators, named so they stay in registers: enough chains to cover FMA
// latency x throughput on current cores. Best of many short rounds: on a shared machine some
// rounds run undisturbed.
double fma_gflops(long iters, int rounds) {
  double best = 0;
  volatile float sink = 0;
  const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
  for (int r = 0; r < rounds; ++r) {
    __m256 a0 = _mm256_set1_ps(0.1f), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0;
    __m256 a6 = a0, a7 = a0, a8 = a0, a9 = a0, a10 = a0, a11 = a0;
    const double t0 = now();
    for (long i = 0; i < iters; ++i) {
      a0 = _mm256_fmadd_ps(a0, m, c); a1 = _mm256_fmadd_ps(a1, m, c); a2 = _mm256_fmadd_ps(a2, m, c);
      a3 = _mm256_fmadd_ps(a3, m, c); a4 = _mm256_fmadd_ps(a4, m, c); a5 = _mm256_fmadd_ps(a5, m, c);
      a6 = _mm256_fmadd_ps(a6, m, c); a7 = _mm256_fmadd_ps(a7, m, c); a8 = _mm256_fmadd_ps(a8, m, c);
      a9 = _mm256_fmadd_ps(a9, m, c); a10 = _mm256_fmadd_ps(a10, m, c); a11 = _mm256_fmadd_ps(a11, m, c);
      __asm__ volatile("" : "+x"(a0), "+x"(a1), "+x"(a2), "+x"(a3), "+x"(a4), "+x"(a5), "+x"(a6), "+x"(a7),
                       "+x"(a8), "+x"(a9), "+x"(a10), "+x"(a11));
    }
    const double dt = now() - t0;
    best = std::max(best, 12.0 * 16.0 * double(iters) / dt / 1e9);
    const __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                                   _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)),
                                                 _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11))));
    sink = sink + _mm256_cvtss_f32(s);
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  const bool smoke = argc > 1 && std::string_view(argv[1]) == "--smoke";
  const size_t n = smoke ? (1u << 20) : (64u << 20);  // 4 MiB or 256 MiB per array
  const double copy = copy_gbps(n, smoke ? 2 : 10);
  const double fma = fma_gflops(smoke ? 100000 : 1000000, smoke ? 3 : 100);
  std::printf("{\"copyGBps\": %.2f, \"fmaGflops\": %.2f}\n", copy, fma);
  return 0;
}
