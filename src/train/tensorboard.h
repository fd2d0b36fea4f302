// TensorBoard event files (log.tensorboard): the run's scalars as TensorBoard reads them, one file
// per run (and per resumed run) under <checkpoint.dir>/tb/. Each file is a sequence of TFRecords
// (tfrecord.h) holding serialized Events (tensorboard_event.proto): the file version, a session
// START, then one Event per step that logs anything.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "train/run_log.h"

namespace mamba {

using Scalars = std::vector<std::pair<std::string, double>>;  // tag, value

class TensorBoardWriter {
 public:
  // Creates `dir` and the file events.out.tfevents.<unix seconds>.<hostname> in it. A run
  // resumed at `resumed_step` (0: from scratch) marks its start at the first step it logs, so
  // that TensorBoard drops the points that a killed run logged after its checkpoint and that the
  // resumed run logs again. A build without protobuf throws the config error naming
  // `config_source` instead.
  static std::unique_ptr<TensorBoardWriter> open(const std::string& dir,
                                                 const std::string& config_source,
                                                 int64_t resumed_step);
  virtual ~TensorBoardWriter() = default;
  // One Event holding the scalars of a step, flushed so that a killed run loses nothing; a failed
  // write is an error naming the file.
  virtual void write(int64_t step, const Scalars& scalars) = 0;
  virtual const std::string& path() const = 0;

  // The scalars of MetricsFile's records: train/loss, train/lr, train/grad_norm,
  // train/tokens_per_s, train/mem_gib, train/skipped_steps (and train/mfu where the device's peak
  // is known); val/loss and val/loss_<name> per source; train/skipped_steps at each skipped step.
  void write_train(const StepStats& s);
  void write_eval(int64_t step, double val_loss, const SourceLosses& per_source = {});
  void write_skipped(int64_t step, int64_t skipped_steps);
};

}  // namespace mamba
