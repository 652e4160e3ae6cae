#include "cpu_info.h"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <set>
#include <thread>
#include <utility>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace fineserve {
namespace {

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t");
  size_t e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

std::string cpuid_brand() {
#if defined(__x86_64__) || defined(__i386__)
  unsigned eax, ebx, ecx, edx;
  if (__get_cpuid(0x80000000u, &eax, &ebx, &ecx, &edx) == 0 || eax < 0x80000004u) return "";
  char brand[49] = {};
  for (unsigned leaf = 0; leaf < 3; ++leaf) {
    __get_cpuid(0x80000002u + leaf, &eax, &ebx, &ecx, &edx);
    unsigned regs[4] = {eax, ebx, ecx, edx};
    for (int r = 0; r < 4; ++r) {
      for (int b = 0; b < 4; ++b) brand[leaf * 16 + r * 4 + b] = static_cast<char>(regs[r] >> (8 * b));
    }
  }
  return trim(brand);
#else
  return "";
#endif
}

// /proc/cpuinfo gives the model on non-x86 hosts and the (package, core) topology everywhere.
struct ProcCpuinfo {
  std::string model;
  std::set<std::pair<int, int>> cores;
};

ProcCpuinfo read_proc_cpuinfo() {
  ProcCpuinfo out;
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  int package = 0;
  while (std::getline(in, line)) {
    size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string key = trim(line.substr(0, colon));
    std::string value = trim(line.substr(colon + 1));
    if (out.model.empty() && (key == "model name" || key == "Model")) out.model = value;
    if (key == "physical id") package = std::atoi(value.c_str());
    if (key == "core id") out.cores.insert({package, std::atoi(value.c_str())});
  }
  return out;
}

uint64_t physical_memory() {
  long pages = sysconf(_SC_PHYS_PAGES);
  long page_size = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page_size > 0 ? static_cast<uint64_t>(pages) * static_cast<uint64_t>(page_size)
                                    : 0;
}

}  // namespace

int usable_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  unsigned hw = std::thread::hardware_concurrency();
  return hw > 0 ? static_cast<int>(hw) : 1;
}

CpuInfo query_cpu() {
  CpuInfo info;
  ProcCpuinfo proc = read_proc_cpuinfo();
  info.model = cpuid_brand();
  if (info.model.empty()) info.model = proc.model.empty() ? "unknown CPU" : proc.model;
  info.logical_cores = usable_cores();
  int host_physical = static_cast<int>(proc.cores.size());
  // Physical cores are counted for the host; report no more than the CPUs we may use.
  info.physical_cores = host_physical > 0 ? std::min(host_physical, info.logical_cores) : 0;
  info.memory_bytes = physical_memory();
  info.simd_supported = simd::supported_levels();
  info.simd_active = simd::active_selection().level;
  info.simd_note = simd::active_selection().note;
  return info;
}

}  // namespace fineserve
