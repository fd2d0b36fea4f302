// Where the compute time of one training step goes, for the scaling projection
// (scripts/project_scaling.py): forward, the time until the first gradient is final, and the
// backward time of every gradient slice in the order the model hands slices to the gradient
// reducer. Measured on a model of its own (same config and shapes as the run, freed before the
// Trainer is built), with a synchronisation after every slice: a profiling pass, apart from the
// timed steps, whose synchronisations would otherwise break the overlap being measured. With
// peers it also times forward+backward with the gradient reduction running beside it, to the end
// of the compute work only: how much the collectives slow the compute they overlap.
#pragma once
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "bench_setup.h"
#include "dist/communicator.h"
#include "dist/gradient_reducer.h"
#include "model/mamba_lm.h"
#include "step_model.h"
#include "train/device.h"
#include "train/experiment_config.h"
#include "train/reducer_settings.h"

namespace bench {

struct SliceTime {
  int64_t begin = 0, end = 0;  // floats of the gradient buffer
  double ms = 0;               // backward time since the previous slice was final
};

struct LayerProfile {
  double forward_ms = 0;        // forward and loss, no gradients (MambaLM::evaluate)
  double fwd_bwd_ms = 0;        // forward_backward without a hook: no synchronisation inside
  double head_ms = 0;           // from the start of forward_backward until the first slice is final
  double fwd_bwd_comm_ms = -1;  // forward_backward with the reducer, to the end of its compute
  std::vector<SliceTime> slices;
};

// Records when each slice becomes final, synchronising the backend first so that the time is
// the device's, not the host's.
class SliceTimer final : public mamba::GradientReadyHook {
 public:
  explicit SliceTimer(mamba::Backend& backend) : be_(backend) {}
  void start() {
    be_.synchronize();
    last_ = Clock::now();
    slices.clear();
  }
  void ready(int64_t begin, int64_t end) override {
    be_.synchronize();
    slices.push_back({begin, end, since_last()});
  }
  double since_last() {
    const auto now = Clock::now();
    const double ms = std::chrono::duration<double, std::milli>(now - last_).count();
    last_ = now;
    return ms;
  }
  std::vector<SliceTime> slices;

 private:
  using Clock = std::chrono::steady_clock;
  mamba::Backend& be_;
  Clock::time_point last_;
};

// Medians over `repeats` passes after two warm-up steps.
inline LayerProfile profile_layers(const mamba::ExperimentConfig& cfg, mamba::Communicator& comm,
                                   int repeats) {
  std::unique_ptr<mamba::Backend> backend = mamba::make_backend(cfg, comm.local_rank());
  StepModel m(cfg, *backend);
  mamba::MambaLM& model = m.model;
  const auto step = [&](mamba::GradientReadyHook* hook) {
    model.zero_grads();
    m.forward_backward(hook);
  };
  step(nullptr);
  step(nullptr);
  std::unique_ptr<mamba::GradientReducer> reducer;
  if (comm.world() > 1) {
    reducer = mamba::make_gradient_reducer(mamba::reducer_settings(cfg.dist), comm, model);
    step(reducer.get());
    reducer->finish();
  }

  SliceTimer timer(*backend);
  std::vector<double> forward, fwd_bwd, fwd_bwd_comm;
  std::vector<std::vector<double>> slice_ms;
  std::vector<SliceTime> slices;
  for (int r = 0; r < repeats; ++r) {
    timer.start();
    model.evaluate(m.inputs.data(), m.targets.data(), m.batch, m.seqlen);
    backend->synchronize();
    forward.push_back(timer.since_last());

    model.zero_grads();
    timer.start();
    m.forward_backward();
    backend->synchronize();
    fwd_bwd.push_back(timer.since_last());

    model.zero_grads();
    timer.start();
    // The first slice's time is the forward plus the LM head's forward and backward.
    m.forward_backward(&timer);
    slices = timer.slices;
    slice_ms.resize(slices.size());
    for (size_t i = 0; i < slices.size(); ++i) slice_ms[i].push_back(slices[i].ms);

    if (reducer) {
      model.zero_grads();
      timer.start();
      // synchronize() waits for the compute stream only; the reduction finishes after.
      m.forward_backward(reducer.get());
      backend->synchronize();
      fwd_bwd_comm.push_back(timer.since_last());
      reducer->finish();
    }
  }
  LayerProfile p;
  p.forward_ms = bench::median(forward);
  p.fwd_bwd_ms = bench::median(fwd_bwd);
  if (reducer) p.fwd_bwd_comm_ms = bench::median(fwd_bwd_comm);
  p.slices = slices;
  for (size_t i = 0; i < p.slices.size(); ++i) p.slices[i].ms = bench::median(slice_ms[i]);
  p.head_ms = p.slices.front().ms;
  p.slices.front().ms = 0;
  return p;
}

// The profile as the members of a JSON object (no braces).
inline std::string profile_json(const LayerProfile& p) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "\"forward_ms\": %.3f, \"fwd_bwd_ms\": %.3f, \"head_ms\": %.3f, ",
                p.forward_ms, p.fwd_bwd_ms, p.head_ms);
  std::string out = buf;
  if (p.fwd_bwd_comm_ms >= 0) {
    std::snprintf(buf, sizeof buf, "\"fwd_bwd_comm_ms\": %.3f, ", p.fwd_bwd_comm_ms);
    out += buf;
  }
  out += "\"slices\": [";
  for (size_t i = 0; i < p.slices.size(); ++i) {
    std::snprintf(buf, sizeof buf, "%s{\"begin\": %lld, \"end\": %lld, \"ms\": %.4f}",
                  i ? ", " : "", (long long)p.slices[i].begin, (long long)p.slices[i].end,
                  p.slices[i].ms);
    out += buf;
  }
  return out + "]";
}

}  // namespace bench
