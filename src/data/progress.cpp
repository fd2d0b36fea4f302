#include "data/progress.h"

#include <algorithm>

namespace mamba {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

}  // namespace

std::string format_bytes(double bytes) {
  const char* units[] = {"B", "kB", "MB", "GB", "TB"};
  int u = 0;
  while (bytes >= 1000 && u < 4) {
    bytes /= 1000;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", bytes, units[u]);
  return buf;
}

std::string format_duration(double seconds) {
  const long s = long(seconds + 0.5);
  char buf[32];
  if (s < 60) {
    std::snprintf(buf, sizeof buf, "%lds", s);
  } else if (s < 3600) {
    std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, s / 60 % 60);
  }
  return buf;
}

Progress::Progress(std::string label, uint64_t total_bytes, std::FILE* out, bool terminal)
    : label_(std::move(label)),
      total_(total_bytes),
      out_(out),
      terminal_(terminal),
      start_(Clock::now()),
      last_draw_(start_) {}

double Progress::seconds() const {
  return seconds_between(start_, Clock::now());
}

void Progress::update(uint64_t done_bytes) {
  const double since = seconds_between(last_draw_, Clock::now());
  if (since >= (terminal_ ? 0.2 : 5.0)) draw(done_bytes, false);
}

void Progress::finish(uint64_t done_bytes) {
  draw(done_bytes, true);
}

void Progress::draw(uint64_t done, bool final) {
  last_draw_ = Clock::now();
  const double elapsed = std::max(seconds_between(start_, last_draw_), 1e-9);
  const double rate = done / elapsed;
  const double fraction = total_ ? std::min(1.0, double(done) / total_) : 1.0;
  const std::string eta =
      final ? "done in " + format_duration(elapsed)
            : "eta " + (rate > 0 ? format_duration((total_ - std::min(done, total_)) / rate) : "?");
  const std::string numbers =
      format_bytes(done) + "/" + format_bytes(total_) + " | " + format_bytes(rate) + "/s | " + eta;
  if (terminal_) {
    constexpr int kWidth = 30;
    const int filled = int(fraction * kWidth);
    std::string bar(filled, '#');
    bar.resize(kWidth, '.');
    // \033[K clears what a longer previous line left behind.
    std::fprintf(out_, "\r%s [%s] %5.1f%% %s\033[K%s", label_.c_str(), bar.c_str(), 100 * fraction,
                 numbers.c_str(), final ? "\n" : "");
  } else {
    std::fprintf(out_, "%s: %5.1f%% %s\n", label_.c_str(), 100 * fraction, numbers.c_str());
  }
  std::fflush(out_);
}

}  // namespace mamba
