// A stand-in for libFuzzer's main where clang and libFuzzer are absent (g++ only): the same
// LLVMFuzzerTestOneInput targets, linked to this driver, replay every input of the committed
// corpus and then run a bounded number of random mutations of it. No coverage feedback, so it
// finds less than libFuzzer does (CI runs that with clang); what it keeps is every target built,
// every seed run under ASan/UBSan and a few thousand nearby inputs tried, on any machine.
//
//   <target> [dir or file ...] [-runs=N] [-max_total_time=S] [-seed=N] [-max_len=N]
//            [-artifact_prefix=P]
//
// Directories are read in name order; their files are the corpus. Given files only, it runs just
// those (reproducing a crash, as libFuzzer does). Mutations stop after -runs (default 100000) or
// -max_total_time seconds (default 10), whichever comes first; -seed (default 1) fixes their
// sequence. Flags libFuzzer takes and this driver does not (-timeout, -rss_limit_mb, ...) are
// accepted and ignored, so scripts/fuzz.mjs passes one flag set to either. When the sanitizers or
// abort() end the process, the input that did it is written to <artifact_prefix>crash-<n>.
#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

#if defined(__SANITIZE_ADDRESS__) && __has_include(<sanitizer/common_interface_defs.h>)
#include <sanitizer/common_interface_defs.h>
#define FINESERVE_HAVE_DEATH_CALLBACK 1
#endif

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
extern "C" __attribute__((weak)) int LLVMFuzzerInitialize(int* argc, char*** argv);

namespace {

using Bytes = std::vector<uint8_t>;

// The input being run, for the crash handlers (set before each call, read only when dying).
const uint8_t* g_current = nullptr;
size_t g_current_size = 0;
char g_artifact[4096] = "crash-input";

void write_current_input() {
  if (g_current == nullptr) return;
  const int fd = ::open(g_artifact, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return;
  size_t done = 0;
  while (done < g_current_size) {
    const ssize_t n = ::write(fd, g_current + done, g_current_size - done);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  const char head[] = "\nreplay_driver: the input that failed is in ";
  (void)!::write(2, head, sizeof head - 1);
  (void)!::write(2, g_artifact, std::strlen(g_artifact));
  (void)!::write(2, "\n", 1);
  g_current = nullptr;  // once
}

extern "C" void on_signal(int sig) {
  write_current_input();
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

// xorshift64*: deterministic for a seed.
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 0x1234567ull) {}
  uint64_t next() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 0x2545F4914F6CDD1Dull;
  }
  size_t below(size_t n) { return n == 0 ? 0 : static_cast<size_t>(next() % n); }
};

bool read_file(const std::string& path, Bytes& out) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  out.clear();
  uint8_t buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.insert(out.end(), buf, buf + n);
  std::fclose(f);
  return true;
}

// Runs one input from an exactly sized heap copy, so ASan sees any read past its end.
void run_one(const Bytes& input) {
  uint8_t* copy = static_cast<uint8_t*>(std::malloc(input.empty() ? 1 : input.size()));
  if (!input.empty()) std::memcpy(copy, input.data(), input.size());
  g_current = copy;
  g_current_size = input.size();
  LLVMFuzzerTestOneInput(copy, input.size());
  g_current = nullptr;
  std::free(copy);
}

// Values that sit on parser and allocator edges: lengths, counts, offsets, signs.
const uint64_t kInteresting[] = {0, 1, 2, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xffff, 0x10000,
                                 0x7fffffff, 0x80000000, 0xffffffff, 0x100000000ull,
                                 0x7fffffffffffffffull, 0x8000000000000000ull, ~0ull};

void mutate(Bytes& b, const std::vector<Bytes>& pool, Rng& rng, size_t max_len) {
  const size_t steps = 1 + rng.below(4);
  for (size_t s = 0; s < steps; ++s) {
    switch (rng.below(7)) {
      case 0:  // flip one bit
        if (!b.empty()) b[rng.below(b.size())] ^= static_cast<uint8_t>(1u << rng.below(8));
        break;
      case 1:  // set one byte to a random value
        if (!b.empty()) b[rng.below(b.size())] = static_cast<uint8_t>(rng.next());
        break;
      case 2: {  // insert 1..8 random bytes
        const size_t at = rng.below(b.size() + 1);
        const size_t n = 1 + rng.below(8);
        Bytes ins(n);
        for (auto& c : ins) c = static_cast<uint8_t>(rng.next());
        b.insert(b.begin() + static_cast<std::ptrdiff_t>(at), ins.begin(), ins.end());
        break;
      }
      case 3:  // delete a range of 1..16 bytes
        if (!b.empty()) {
          const size_t at = rng.below(b.size());
          const size_t n = std::min(b.size() - at, 1 + rng.below(16));
          b.erase(b.begin() + static_cast<std::ptrdiff_t>(at), b.begin() + static_cast<std::ptrdiff_t>(at + n));
        }
        break;
      case 4: {  // overwrite 1, 2, 4 or 8 bytes with an edge value, little-endian
        const size_t width = size_t{1} << rng.below(4);
        if (b.size() >= width) {
          const size_t at = rng.below(b.size() - width + 1);
          uint64_t v = kInteresting[rng.below(sizeof kInteresting / sizeof kInteresting[0])];
          if (rng.below(4) == 0) v = v - 1 + rng.below(3);  // and its neighbours
          for (size_t i = 0; i < width; ++i) b[at + i] = static_cast<uint8_t>(v >> (8 * i));
        }
        break;
      }
      case 5:    // splice: a chunk of another input at a random place
      case 6: {  // (twice as likely: crossing seeds reaches the most new structure)
        const Bytes& other = pool[rng.below(pool.size())];
        if (other.empty()) break;
        const size_t from = rng.below(other.size());
        const size_t n = 1 + rng.below(std::min<size_t>(other.size() - from, 256));
        const size_t at = rng.below(b.size() + 1);
        if (rng.below(2) == 0) {
          b.insert(b.begin() + static_cast<std::ptrdiff_t>(at), other.begin() + static_cast<std::ptrdiff_t>(from),
                   other.begin() + static_cast<std::ptrdiff_t>(from + n));
        } else {  // or over what is there
          if (b.size() < at + n) b.resize(at + n);
          std::copy(other.begin() + static_cast<std::ptrdiff_t>(from), other.begin() + static_cast<std::ptrdiff_t>(from + n),
                    b.begin() + static_cast<std::ptrdiff_t>(at));
        }
        break;
      }
    }
  }
  if (b.size() > max_len) b.resize(max_len);
}

bool flag(const char* arg, const char* name, std::string& value) {
  const size_t n = std::strlen(name);
  if (std::strncmp(arg, name, n) != 0 || arg[n] != '=') return false;
  value = arg + n + 1;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
  uint64_t runs = 100000;
  double max_seconds = 10;
  uint64_t seed = 1;
  size_t max_len = 4096;
  std::string artifact_prefix;
  std::vector<std::string> dirs, files;
  for (int i = 1; i < argc; ++i) {
    const char* a = argv[i];
    std::string v;
    if (flag(a, "-runs", v)) runs = std::strtoull(v.c_str(), nullptr, 10);
    else if (flag(a, "-max_total_time", v)) max_seconds = std::atof(v.c_str());
    else if (flag(a, "-seed", v)) seed = std::strtoull(v.c_str(), nullptr, 10);
    else if (flag(a, "-max_len", v)) max_len = std::max<size_t>(1, std::strtoull(v.c_str(), nullptr, 10));
    else if (flag(a, "-artifact_prefix", v)) artifact_prefix = v;
    else if (a[0] == '-') continue;  // a libFuzzer flag this driver has no use for
    else {
      struct stat st {};
      if (::stat(a, &st) != 0) {
        std::fprintf(stderr, "replay_driver: %s: not found\n", a);
        return 2;
      }
      (S_ISDIR(st.st_mode) ? dirs : files).push_back(a);
    }
  }

  // The corpus: files given, then each directory's files in name order.
  std::vector<std::pair<std::string, Bytes>> corpus;
  for (const auto& f : files) {
    Bytes b;
    if (!read_file(f, b)) {
      std::fprintf(stderr, "replay_driver: cannot read %s\n", f.c_str());
      return 2;
    }
    corpus.emplace_back(f, std::move(b));
  }
  for (const auto& d : dirs) {
    std::vector<std::string> names;
    if (DIR* dir = ::opendir(d.c_str())) {
      while (dirent* e = ::readdir(dir)) {
        const std::string path = d + "/" + e->d_name;
        struct stat st {};
        if (e->d_name[0] != '.' && ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode)) names.push_back(path);
      }
      ::closedir(dir);
    }
    std::sort(names.begin(), names.end());
    for (const auto& n : names) {
      Bytes b;
      if (read_file(n, b)) corpus.emplace_back(n, std::move(b));
    }
  }

  std::signal(SIGABRT, on_signal);  // assert(); the sanitizers leave it alone
#ifdef FINESERVE_HAVE_DEATH_CALLBACK
  __sanitizer_set_death_callback(write_current_input);  // ASan's own SEGV etc. handlers stay
#else
  std::signal(SIGSEGV, on_signal);
  std::signal(SIGFPE, on_signal);
  std::signal(SIGILL, on_signal);
  std::signal(SIGBUS, on_signal);
#endif

  const auto t0 = std::chrono::steady_clock::now();
  const auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  std::snprintf(g_artifact, sizeof g_artifact, "%scrash-replay", artifact_prefix.c_str());
  for (const auto& [name, bytes] : corpus) run_one(bytes);
  std::fprintf(stderr, "replay_driver: replayed %zu corpus input(s) in %.2f s\n", corpus.size(), elapsed());
  if (!files.empty() && dirs.empty()) return 0;  // reproducing given inputs only

  // Mutants of the corpus, and of earlier mutants (a bounded pool), so changes can stack.
  std::vector<Bytes> pool;
  for (const auto& c : corpus) pool.push_back(c.second);
  if (pool.empty()) pool.emplace_back();
  const size_t seeds = pool.size();
  Rng rng(seed);
  uint64_t done = 0;
  Bytes input;
  while (done < runs && (done % 64 != 0 || elapsed() < max_seconds)) {
    input = pool[rng.below(pool.size())];
    mutate(input, pool, rng, max_len);
    std::snprintf(g_artifact, sizeof g_artifact, "%scrash-seed%llu-run%llu", artifact_prefix.c_str(),
                  static_cast<unsigned long long>(seed), static_cast<unsigned long long>(done));
    run_one(input);
    ++done;
    if (done % 16 == 0) {  // keep some mutants as parents; replace old ones once the pool is full
      if (pool.size() < seeds + 512) pool.push_back(input);
      else pool[seeds + rng.below(512)] = input;
    }
  }
  std::fprintf(stderr, "replay_driver: %llu mutated run(s) in %.2f s (seed %llu, corpus %zu), no failure\n",
               static_cast<unsigned long long>(done), elapsed(), static_cast<unsigned long long>(seed), corpus.size());
  return 0;
}
