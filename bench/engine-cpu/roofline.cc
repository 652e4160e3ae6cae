// The roofline of this CPU for one thread, measured beside the engines (bench/engine-cpu/roofline.ts
// builds it with g++ and runs it): a STREAM-like copy over arrays far larger than the caches
// (bytes read + written per second) and a loop of independent AVX2 FMAs (2 flops per lane), the
// best of several rounds each. Prints one JSON line.
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

// Twelve independent accumulators: enough chains to cover FMA latency x throughput on current cores.
double fma_gflops(long iters, int rounds) {
  double best = 0;
  volatile float sink = 0;
  for (int r = 0; r < rounds; ++r) {
    __m256 acc[12];
    for (int j = 0; j < 12; ++j) acc[j] = _mm256_set1_ps(float(j) * 1e-3f);
    const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    const double t0 = now();
    for (long i = 0; i < iters; ++i) {
      for (int j = 0; j < 12; ++j) acc[j] = _mm256_fmadd_ps(acc[j], m, c);
      __asm__ volatile("" : "+x"(acc[0]), "+x"(acc[1]), "+x"(acc[2]), "+x"(acc[3]), "+x"(acc[4]), "+x"(acc[5]),
                       "+x"(acc[6]), "+x"(acc[7]), "+x"(acc[8]), "+x"(acc[9]), "+x"(acc[10]), "+x"(acc[11]));
    }
    const double dt = now() - t0;
    best = std::max(best, 12.0 * 16.0 * double(iters) / dt / 1e9);
    __m256 s = acc[0];
    for (int j = 1; j < 12; ++j) s = _mm256_add_ps(s, acc[j]);
    sink = sink + _mm256_cvtss_f32(s);
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  const bool smoke = argc > 1 && std::string_view(argv[1]) == "--smoke";
  const size_t n = smoke ? (1u << 20) : (64u << 20);  // 4 MiB or 256 MiB per array
  const double copy = copy_gbps(n, smoke ? 2 : 5);
  const double fma = fma_gflops(smoke ? 1000000 : 50000000, smoke ? 2 : 5);
  std::printf("{\"copyGBps\": %.2f, \"fmaGflops\": %.2f}\n", copy, fma);
  return 0;
}
