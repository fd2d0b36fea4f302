// How the tests start a command under MPI: as root in CI, and with more ranks than cores.
#pragma once
#include <string>

namespace mamba::test {

// "mpirun ... -np RANKS " (with the trailing space): the command follows.
inline std::string mpirun(int ranks) {
  return "mpirun --allow-run-as-root --oversubscribe -np " + std::to_string(ranks) + " ";
}

}  // namespace mamba::test
