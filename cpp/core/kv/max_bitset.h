// A set of small integers with O(log64 n) insert, erase and smallest / largest member: a hierarchy of
// 64-bit words where each bit of a level says whether the word below it is non-zero. With
// n <= 2^18 that is at most three word operations, which keeps slab selection O(1) in practice.
#pragma once

#include <cstdint>
#include <vector>

namespace fineserve::kv {

class MaxBitset {
 public:
  MaxBitset() = default;
  explicit MaxBitset(uint64_t size) { resize(size); }

  void resize(uint64_t size) {
    levels_.clear();
    uint64_t words = (size + 63) / 64;
    do {
      levels_.emplace_back(words == 0 ? 1 : words, 0);
      words = (words + 63) / 64;
    } while (levels_.back().size() > 1);
  }

  void insert(uint64_t i) {
    for (auto& level : levels_) {
      level[i >> 6] |= uint64_t{1} << (i & 63);
      i >>= 6;
    }
  }

  void erase(uint64_t i) {
    for (auto& level : levels_) {
      uint64_t& word = level[i >> 6];
      word &= ~(uint64_t{1} << (i & 63));
      if (word != 0) return;  // the parent bit stays: this word still has members
      i >>= 6;
    }
  }

  bool contains(uint64_t i) const { return (levels_[0][i >> 6] >> (i & 63)) & 1; }
  bool empty() const { return levels_.back()[0] == 0; }

  // Smallest member; the set must not be empty.
  uint64_t min() const {
    uint64_t i = 0;
    for (size_t l = levels_.size(); l-- > 0;) {
      i = i * 64 + static_cast<uint64_t>(__builtin_ctzll(levels_[l][i]));
    }
    return i;
  }

  // Largest member; the set must not be empty.
  uint64_t max() const {
    uint64_t i = 0;
    for (size_t l = levels_.size(); l-- > 0;) {
      uint64_t word = levels_[l][i];
      i = i * 64 + (63 - static_cast<uint64_t>(__builtin_clzll(word)));
    }
    return i;
  }

 private:
  std::vector<std::vector<uint64_t>> levels_;
};

}  // namespace fineserve::kv
