// What a training run tells its user: the scannable log line of design.md §4 and the metrics file
// (one JSON object per line, for scripts/plot_metrics.py and dashboards).
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace mamba {

struct StepStats {
  int64_t step = 0, total_steps = 0;
  double loss = 0.0, lr = 0.0, grad_norm = 0.0;
  double tokens_per_s = 0.0;
  double mfu = -1.0;           // fraction of the device's peak; < 0 when the peak is unknown
  double mem_gib = 0.0;        // Backend::peak_memory(): NCCL's buffers counted on GPUs
  double mem_alloc_gib = 0.0;  // Backend::peak_allocated(): the framework's own buffers alone
  double eta_s = 0.0;
  int64_t tokens_seen = 0;
  int64_t skipped_steps = 0;  // updates dropped so far for a non-finite loss or gradient norm
  // A mixture's tokens drawn from each source so far, all ranks (empty for a plain glob).
  std::vector<std::pair<std::string, int64_t>> source_tokens;
};

// A validation loss per source of a data.val mixture (empty for a plain glob).
using SourceLosses = std::vector<std::pair<std::string, double>>;

// "step 120/5000 | loss 3.412 | lr 1.20e-03 | gnorm 0.83 | 412.3k tok/s | MFU 41.2% | mem 21.3 GiB
// | eta 1h12m"
std::string format_step_line(const StepStats& s);

// Appends JSON lines; opened once, flushed after every record so a killed run loses nothing.
// A value that is not finite is written as null. A failed write is an error naming the file.
class MetricsFile {
 public:
  // "" disables it. A run resumed at step `resumed_step` keeps the records of steps up to it and
  // drops the later ones (which the resumed run writes again), so each step appears once; a run
  // that starts from scratch (resumed_step 0) starts an empty file.
  MetricsFile(const std::string& path, int64_t resumed_step);
  ~MetricsFile();
  MetricsFile(const MetricsFile&) = delete;
  MetricsFile& operator=(const MetricsFile&) = delete;
  void write_train(const StepStats& s);
  // val_loss (the mean), and val_loss_<name> for each source.
  void write_eval(int64_t step, double val_loss, const SourceLosses& per_source = {});
  // A step whose update was dropped: its loss and norm, and the count so far.
  void write_skipped(int64_t step, double loss, double grad_norm, int64_t skipped_steps);

 private:
  void write(const std::string& line);
  std::string path_;
  std::FILE* file_ = nullptr;
};

}  // namespace mamba
