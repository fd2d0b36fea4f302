#include "train/stop_signal.h"

#include <csignal>

namespace mamba {

namespace {

volatile std::sig_atomic_t g_stop = 0;

void on_signal(int sig) {
  if (g_stop && sig == SIGINT) {
    std::signal(SIGINT, SIG_DFL);
    std::raise(SIGINT);
  }
  g_stop = 1;
}

}  // namespace

void install_stop_handlers() {
  std::signal(SIGTERM, on_signal);
  std::signal(SIGINT, on_signal);
}

bool stop_requested() {
  return g_stop != 0;
}

}  // namespace mamba
