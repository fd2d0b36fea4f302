#include "train/run_log.h"

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "data/progress.h"
#include "util/error.h"

namespace mamba {

std::string format_step_line(const StepStats& s) {
  char rate[32];
  if (s.tokens_per_s >= 1e6) {
    std::snprintf(rate, sizeof rate, "%.2fM", s.tokens_per_s / 1e6);
  } else if (s.tokens_per_s >= 1e3) {
    std::snprintf(rate, sizeof rate, "%.1fk", s.tokens_per_s / 1e3);
  } else {
    std::snprintf(rate, sizeof rate, "%.0f", s.tokens_per_s);
  }
  char line[256];
  int n = std::snprintf(
      line, sizeof line, "step %lld/%lld | loss %.4f | lr %.2e | gnorm %.2f | %s tok/s",
      (long long)s.step, (long long)s.total_steps, s.loss, s.lr, s.grad_norm, rate);
  if (s.mfu >= 0.0) n += std::snprintf(line + n, sizeof line - n, " | MFU %.1f%%", 100.0 * s.mfu);
  std::snprintf(line + n, sizeof line - n, " | mem %.2f GiB | eta %s", s.mem_gib,
                format_duration(s.eta_s).c_str());
  return line;
}

double resident_memory_gib() {
  long pages = 0, resident = 0;
  if (std::FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return double(resident) * double(sysconf(_SC_PAGESIZE)) / double(1ull << 30);
}

MetricsFile::MetricsFile(const std::string& path) {
  if (path.empty()) return;
  std::error_code ec;
  const auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  file_ = std::fopen(path.c_str(), "a");
  if (!file_) {
    throw_error("log error: cannot open log.metrics = ", path,
                " for appending: choose a writable path");
  }
}

MetricsFile::~MetricsFile() {
  if (file_) std::fclose(file_);
}

void MetricsFile::write_train(const StepStats& s) {
  if (!file_) return;
  nlohmann::json j{
      {"step", s.step},           {"loss", s.loss},          {"lr", s.lr},
      {"grad_norm", s.grad_norm}, {"tokens", s.tokens_seen}, {"tokens_per_s", s.tokens_per_s},
      {"mem_gib", s.mem_gib}};
  if (s.mfu >= 0.0) j["mfu"] = s.mfu;
  std::fprintf(file_, "%s\n", j.dump().c_str());
  std::fflush(file_);
}

void MetricsFile::write_eval(int64_t step, double val_loss) {
  if (!file_) return;
  const nlohmann::json j{{"step", step}, {"val_loss", val_loss}, {"val_ppl", std::exp(val_loss)}};
  std::fprintf(file_, "%s\n", j.dump().c_str());
  std::fflush(file_);
}

}  // namespace mamba
