#include "simd/upper_state.h"

#include <cstdint>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace fineserve::simd {

#if defined(__x86_64__) || defined(__i386__)
namespace {

uint64_t xgetbv(uint32_t index) {
  uint32_t eax = 0, edx = 0;
  asm volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(index));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}

// AVX in CPUID and the YMM state enabled by the OS (XCR0 bits 1 and 2).
bool avx_usable() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid(1, &eax, &ebx, &ecx, &edx) == 0) return false;
  if ((ecx & bit_OSXSAVE) == 0 || (ecx & bit_AVX) == 0) return false;
  return (xgetbv(0) & 6) == 6;
}

// XGETBV with ECX = 1 (the in-use bitmap) is optional: CPUID leaf 0xD, sub-leaf 1, EAX bit 2.
bool xinuse_readable() {
  if (!avx_usable()) return false;
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  __cpuid_count(0xd, 1, eax, ebx, ecx, edx);
  return (eax & 4) != 0;
}

const bool kAvx = avx_usable();
const bool kXinuse = xinuse_readable();

}  // namespace

void clean_upper() {
  if (kAvx) asm volatile("vzeroupper" ::: "memory");
}

bool upper_state_readable() { return kXinuse; }

bool upper_dirty() { return kXinuse && (xgetbv(1) & 0x44) != 0; }

#else

void clean_upper() {}
bool upper_state_readable() { return false; }
bool upper_dirty() { return false; }

#endif

}  // namespace fineserve::simd
