// splitmix64, the mixer under both random number generators (util/rng.h, util/counter_rng.h).
#pragma once
#include <cstdint>

#include "util/host_device.h"

namespace mamba {

constexpr uint64_t kSplitmixGamma = 0x9e3779b97f4a7c15ull;

// One splitmix64 step: a good 64-bit mixer for deriving independent seeds (seed ^ epoch, ...).
MAMBA_HOST_DEVICE constexpr uint64_t splitmix64(uint64_t x) {
  x += kSplitmixGamma;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

}  // namespace mamba
