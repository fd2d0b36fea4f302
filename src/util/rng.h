// A small, fully specified random number generator (splitmix64 seeding + xoshiro256**), so that
// shuffling and sampling give the same numbers on every compiler and machine (std::
// distributions are implementation-defined). Its state is four words: easy to checkpoint.
// Initialisation draws from the counter-based numbers of util/counter_rng.h instead.
#pragma once
#include <array>
#include <cstdint>

#include "util/splitmix.h"

namespace mamba {

class Rng {
 public:
  explicit Rng(uint64_t seed = 0);
  uint64_t next_u64();
  // Uniform in [0, 1) with 24 random bits, as a float would hold them.
  double uniform();
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  // Standard normal (Box-Muller on two fresh uniforms).
  double normal();
  // Uniform integer in [0, n) without modulo bias.
  uint64_t below(uint64_t n);

  std::array<uint64_t, 4> state() const { return s_; }
  void set_state(const std::array<uint64_t, 4>& s) { s_ = s; }

 private:
  std::array<uint64_t, 4> s_;
};

}  // namespace mamba
