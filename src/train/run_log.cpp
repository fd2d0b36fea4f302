#include "train/run_log.h"

#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
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

namespace {

// Bytes at the start of an existing metrics file that hold the records of steps up to
// `last_step` (records are in step order; a torn last line of a killed run ends them too).
long bytes_through(std::FILE* f, int64_t last_step) {
  std::rewind(f);
  long kept = 0;
  std::string line;
  for (int c = std::fgetc(f); c != EOF; c = std::fgetc(f)) {
    if (c != '\n') {
      line += char(c);
      continue;
    }
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.contains("step") || !j["step"].is_number_integer() ||
        j["step"].get<int64_t>() > last_step) {
      break;
    }
    kept = std::ftell(f);
    line.clear();
  }
  return kept;
}

}  // namespace

MetricsFile::MetricsFile(const std::string& path, int64_t resumed_step) : path_(path) {
  if (path.empty()) return;
  std::error_code ec;
  const auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  file_ = std::fopen(path.c_str(), "a+");
  if (!file_) {
    throw_error("log error: cannot open log.metrics = ", path, " (", std::strerror(errno),
                "): choose a writable path");
  }
  // Cut in place rather than rewrite and rename: the path may be a device or a pipe.
  if (std::filesystem::is_regular_file(path, ec)) {
    const long keep = resumed_step > 0 ? bytes_through(file_, resumed_step) : 0;
    if (::ftruncate(::fileno(file_), keep) != 0) {
      throw_error("log error: cannot truncate log.metrics = ", path, " (", std::strerror(errno),
                  "): choose a writable path");
    }
  }
}

MetricsFile::~MetricsFile() {
  if (file_) std::fclose(file_);
}

void MetricsFile::write(const std::string& line) {
  if (!file_) return;
  if (std::fprintf(file_, "%s\n", line.c_str()) < 0 || std::fflush(file_) != 0) {
    throw_error("log error: cannot write to log.metrics = ", path_, " (", std::strerror(errno),
                "): check free space; the run stops so that no metrics are lost silently");
  }
}

void MetricsFile::write_train(const StepStats& s) {
  nlohmann::json j{{"step", s.step},
                   {"loss", s.loss},
                   {"lr", s.lr},
                   {"grad_norm", s.grad_norm},
                   {"tokens", s.tokens_seen},
                   {"tokens_per_s", s.tokens_per_s},
                   {"mem_gib", s.mem_gib},
                   {"skipped_steps", s.skipped_steps}};
  if (s.mem_alloc_gib > 0.0) j["mem_alloc_gib"] = s.mem_alloc_gib;
  if (s.mfu >= 0.0) j["mfu"] = s.mfu;
  for (const auto& [name, tokens] : s.source_tokens) j["source_tokens"][name] = tokens;
  write(j.dump());
}

void MetricsFile::write_eval(int64_t step, double val_loss, const SourceLosses& per_source) {
  nlohmann::json j{{"step", step}, {"val_loss", val_loss}, {"val_ppl", std::exp(val_loss)}};
  for (const auto& [name, loss] : per_source) j["val_loss_" + name] = loss;
  write(j.dump());
}

void MetricsFile::write_skipped(int64_t step, double loss, double grad_norm,
                                int64_t skipped_steps) {
  write(nlohmann::json{{"step", step},
                       {"skipped", true},
                       {"loss", loss},
                       {"grad_norm", grad_norm},
                       {"skipped_steps", skipped_steps}}
            .dump());
}

}  // namespace mamba
