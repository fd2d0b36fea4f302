// The main() of the MPI check programs of this folder: runs check() and, when it fails or throws,
// ends the whole job, since the other ranks would wait in their next collective.
#pragma once
#include <cstdio>

#include "dist/communicator.h"
#include "util/error.h"

namespace mamba::test {

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
