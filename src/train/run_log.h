// What a training run tells its user: the scannable log line of DESIGN §4 and the metrics file
// (one JSON object per line, for scripts/plot_metrics.py and dashboards).
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>

namespace mamba {

struct StepStats {
  int64_t step = 0, total_steps = 0;
  double loss = 0.0, lr = 0.0, grad_norm = 0.0;
  double tokens_per_s = 0.0;
  double mfu = -1.0;  // fraction of the device's peak; < 0 when the peak is unknown
  double mem_gib = 0.0;
  double eta_s = 0.0;
  int64_t tokens_seen = 0;
};

// "step 120/5000 | loss 3.412 | lr 1.20e-03 | gnorm 0.83 | 412.3k tok/s | MFU 41.2% | mem 21.3 GiB
// | eta 1h12m"
std::string format_step_line(const StepStats& s);
// Resident memory of this process, GiB.
double resident_memory_gib();

// Appends JSON lines; opened once, flushed after every record so a killed run loses nothing.
class MetricsFile {
 public:
  explicit MetricsFile(const std::string& path);  // "" disables it
  ~MetricsFile();
  MetricsFile(const MetricsFile&) = delete;
  MetricsFile& operator=(const MetricsFile&) = delete;
  void write_train(const StepStats& s);
  void write_eval(int64_t step, double val_loss);

 private:
  std::FILE* file_ = nullptr;
};

}  // namespace mamba
