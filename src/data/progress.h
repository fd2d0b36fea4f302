// Progress of a long job measured in bytes: a redrawn bar with bytes/s and ETA on a terminal,
// otherwise a plain line every few seconds (logs and pipes get no carriage returns).
#pragma once
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace mamba {

class Progress {
 public:
  // Writes to `out`; `terminal` picks the bar (callers pass isatty(fileno(out))).
  Progress(std::string label, uint64_t total_bytes, std::FILE* out, bool terminal);
  void update(uint64_t done_bytes);  // cheap to call often: draws at most a few times a second
  void finish(uint64_t done_bytes);  // the final line
  double seconds() const;

 private:
  void draw(uint64_t done, bool final);

  std::string label_;
  uint64_t total_;
  std::FILE* out_;
  bool terminal_;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

// "1.5 MB", "12.0 GB": decimal units, as download tools use.
std::string format_bytes(double bytes);
// "45s", "3m12s", "2h05m".
std::string format_duration(double seconds);

}  // namespace mamba
