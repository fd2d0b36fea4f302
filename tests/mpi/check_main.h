// What the MPI check programs of this folder share: their main(), which runs check() and, when
// it fails or throws, ends the whole job, since the other ranks would wait in their next
// collective; and the gradients they reduce.
#pragma once
#include <cstdint>
#include <cstdio>
#include <vector>

#include "dist/communicator.h"
#include "util/error.h"
#include "util/rng.h"

namespace mamba::test {

// n standard normal floats from `seed`: any rank can make any rank's gradients.
inline std::vector<float> normal_floats(uint64_t seed, int64_t n) {
  Rng rng(seed);
  std::vector<float> g(size_t(n), 0.0f);
  for (float& x : g) x = float(rng.normal());
  return g;
}

inline int run_check(int (*check)()) {
  int status = 1;
  try {
    status = check();
  } catch (const Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
  }
  std::fflush(stdout);
  if (status != 0) mpi_world().abort(status);
  return 0;
}

}  // namespace mamba::test
