// Ranks of a test as threads of its process: work(r) for each rank r < world on a thread of its
// own (ranks whose collectives wait for each other, ncclCommInitRank first), all joined; returns
// each rank's error message ("" when none).
#pragma once
#include <exception>
#include <functional>
#include <string>
#include <thread>
#include <vector>

namespace mamba::test {

inline std::vector<std::string> on_threads(int world, const std::function<void(int)>& work) {
  std::vector<std::string> errors(static_cast<size_t>(world));
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      try {
        work(r);
      } catch (const std::exception& e) {
        errors[size_t(r)] = e.what();
      }
    });
  }
  for (std::thread& t : threads) t.join();
  return errors;
}

}  // namespace mamba::test
