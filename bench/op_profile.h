// Where the time of a step goes (a decode step, a training step): a Backend that forwards every
// call to another and, while profiling, times each compute op on its own. On CUDA an op is timed by
// events around it on the backend's stream, queued behind a large memset so that the host has
// queued the op before the device reaches the first event: the time is the device's alone, launch
// gaps excluded (so the ops' sum is below the step's time in a CUDA graph by about a microsecond an
// op). The memset also leaves the L2 cache cold, where in the step each op finds its inputs
// there. On the CPU the ops run synchronously and the host's clock times them.
#pragma once
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "bench_setup.h"
#include "kernels/backend.h"
#ifdef MAMBA_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace bench {

class OpTimingBackend final : public mamba::Backend {
 public:
  explicit OpTimingBackend(mamba::Backend& inner) : in_(inner) {}
  ~OpTimingBackend() override {
    if (spacer_) in_.release(spacer_);
#ifdef MAMBA_HAVE_CUDA
    if (start_) cudaEventDestroy(start_);
    if (stop_) cudaEventDestroy(stop_);
#endif
  }

  // While on, every timed op is timed and its time kept under a label (op and shape).
  void profile(bool on) {
    profiling_ = on;
  }
  // Microseconds of each call, by label, in the order of the labels' first calls.
  const std::vector<std::pair<std::string, std::vector<double>>>& times() const {
    return times_;
  }

  // ---- forwarded as they are ----
  std::string name() const override {
    return in_.name();
  }
  mamba::ActType act_type() const override {
    return in_.act_type();
  }
  double peak_flops() const override {
    return in_.peak_flops();
  }
  bool host_accessible() const override {
    return in_.host_accessible();
  }
  void* native_stream() const override {
    return in_.native_stream();
  }
  void check_layer_shape(int d_state, int d_conv) const override {
    in_.check_layer_shape(d_state, d_conv);
  }
  void* allocate(size_t bytes) override {
    return in_.allocate(bytes);
  }
  void release(void* p) override {
    in_.release(p);
  }
  void upload(void* dst, const void* src, size_t bytes) override {
    in_.upload(dst, src, bytes);
  }
  void download(void* dst, const void* src, size_t bytes) override {
    in_.download(dst, src, bytes);
  }
  void fill_zero(void* dst, size_t bytes) override {
    timed("fill_zero bytes " + std::to_string(bytes), [&] { in_.fill_zero(dst, bytes); });
  }
  void copy(void* dst, const void* src, size_t bytes) override {
    timed("copy bytes " + std::to_string(bytes), [&] { in_.copy(dst, src, bytes); });
  }
  void download_concurrent(void* dst, const void* src, size_t bytes) override {
    in_.download_concurrent(dst, src, bytes);
  }
  void synchronize() override {
    in_.synchronize();
  }
  size_t peak_memory() const override {
    return in_.peak_memory();
  }
  size_t outside_memory() const override {
    return in_.outside_memory();
  }
  void init_fill(const mamba::InitFill& op) override {
    in_.init_fill(op);
  }
  size_t scan_saved_bytes(const mamba::ScanShape& s) const override {
    return in_.scan_saved_bytes(s);
  }
  std::unique_ptr<mamba::StepRecorder> make_step_recorder() override {
    return in_.make_step_recorder();
  }

  // ---- compute ops, timed ----
  void to_act(mamba::Act dst, const float* src, int64_t n) override {
    timed("to_act n " + std::to_string(n), [&] { in_.to_act(dst, src, n); });
  }
  void embedding_backward(const mamba::EmbeddingBackward& op) override {
    timed("embedding_backward T " + std::to_string(op.T), [&] { in_.embedding_backward(op); });
  }
  void rmsnorm_backward(const mamba::RmsNormBackward& op) override {
    timed("rmsnorm_backward T " + std::to_string(op.T) + " C " + std::to_string(op.C),
          [&] { in_.rmsnorm_backward(op); });
  }
  void linear_backward(const mamba::LinearBackward& op) override {
    timed("linear_backward T " + std::to_string(op.T) + " in " + std::to_string(op.in_dim) +
              " out " + std::to_string(op.out_dim) + (op.dinp.data ? " dinp" : "") +
              (op.dweight ? " dweight" : ""),
          [&] { in_.linear_backward(op); });
  }
  void conv1d_silu_forward(const mamba::Conv1dShape& s, const mamba::Conv1dForward& op) override {
    timed("conv1d_silu_forward " + shape(s), [&] { in_.conv1d_silu_forward(s, op); });
  }
  void conv1d_silu_backward(const mamba::Conv1dShape& s, const mamba::Conv1dBackward& op) override {
    const std::string lowrank =
        op.lowrank.rank > 0 ? " lowrank " + std::to_string(op.lowrank.rank) : "";
    timed("conv1d_silu_backward " + shape(s) + lowrank, [&] { in_.conv1d_silu_backward(s, op); });
  }
  bool conv_backward_takes_lowrank(const mamba::Conv1dShape& s,
                                   const mamba::Conv1dBackward& op) const override {
    return in_.conv_backward_takes_lowrank(s, op);
  }
  void selective_scan_forward(const mamba::ScanShape& s, const mamba::ScanInputs& in,
                              mamba::Act out, float* last_state, void* saved) override {
    timed("selective_scan_forward " + shape(s),
          [&] { in_.selective_scan_forward(s, in, out, last_state, saved); });
  }
  void selective_scan_backward(const mamba::ScanShape& s, const mamba::ScanInputs& in,
                               mamba::ConstAct dout, const void* saved,
                               const mamba::ScanGrads& grads) override {
    timed("selective_scan_backward " + shape(s),
          [&] { in_.selective_scan_backward(s, in, dout, saved, grads); });
  }
  double lm_head_loss(const mamba::LmHeadLoss& op) override {
    double loss = 0;
    timed(std::string(op.dnormed.data ? "lm_head_loss_backward" : "lm_head_loss") + " T " +
              std::to_string(op.T) + " C " + std::to_string(op.C) + " Vp " + std::to_string(op.Vp),
          [&] { loss = in_.lm_head_loss(op); });
    return loss;
  }
  void negative_exp(float* out, const float* in, int64_t n) override {
    timed("negative_exp n " + std::to_string(n), [&] { in_.negative_exp(out, in, n); });
  }
  void mul_accumulate(float* dst, const float* a, const float* b, int64_t n) override {
    timed("mul_accumulate n " + std::to_string(n), [&] { in_.mul_accumulate(dst, a, b, n); });
  }
  double sum_of_squares_of_spans(const float* x, const mamba::Span* spans, int count) override {
    double sum = 0;
    timed("sum_of_squares spans " + std::to_string(count),
          [&] { sum = in_.sum_of_squares_of_spans(x, spans, count); });
    return sum;
  }
  void adamw_step(const mamba::AdamWStep& op, const mamba::AdamWHyper& h) override {
    timed("adamw_step segments " + std::to_string(op.segment_count),
          [&] { in_.adamw_step(op, h); });
  }
  void embedding_forward(const mamba::EmbeddingForward& op) override {
    timed("embedding T " + std::to_string(op.T), [&] { in_.embedding_forward(op); });
  }
  void residual_rmsnorm_forward(const mamba::RmsNormForward& op) override {
    timed("residual_rmsnorm T " + std::to_string(op.T) + " C " + std::to_string(op.C),
          [&] { in_.residual_rmsnorm_forward(op); });
  }
  void linear_forward(const mamba::LinearForward& op) override {
    timed("linear T " + std::to_string(op.T) + " in " + std::to_string(op.in_dim) + " out " +
              std::to_string(op.out_dim) + (op.out.type == mamba::ActType::F32 ? " fp32" : ""),
          [&] { in_.linear_forward(op); });
  }
  void conv1d_silu_step(const mamba::Conv1dShape& s, const mamba::Conv1dStep& op) override {
    timed("conv1d_silu_step batch " + std::to_string(s.batch) + " D " + std::to_string(s.D),
          [&] { in_.conv1d_silu_step(s, op); });
  }
  void selective_scan_step(const mamba::ScanShape& s, const mamba::ScanInputs& in, mamba::Act out,
                           float* ssm_state) override {
    timed("selective_scan_step batch " + std::to_string(s.batch) + " d_inner " +
              std::to_string(s.d_inner),
          [&] { in_.selective_scan_step(s, in, out, ssm_state); });
  }
  void argmax_rows(const mamba::ArgmaxRows& op) override {
    timed("argmax rows " + std::to_string(op.rows) + " n " + std::to_string(op.n),
          [&] { in_.argmax_rows(op); });
  }

 private:
  static std::string shape(const mamba::Conv1dShape& s) {
    return "batch " + std::to_string(s.batch) + " seqlen " + std::to_string(s.seqlen) + " D " +
           std::to_string(s.D);
  }
  static std::string shape(const mamba::ScanShape& s) {
    return "batch " + std::to_string(s.batch) + " seqlen " + std::to_string(s.seqlen) +
           " d_inner " + std::to_string(s.d_inner);
  }

  static constexpr size_t kSpacerBytes = size_t{256} << 20;

  template <typename F>
  void timed(const std::string& label, F&& op) {
    if (!profiling_) {
      op();
      return;
    }
    double us = 0;
#ifdef MAMBA_HAVE_CUDA
    if (in_.native_stream()) {
      auto stream = static_cast<cudaStream_t>(in_.native_stream());
      if (!spacer_) {
        spacer_ = in_.allocate(kSpacerBytes);
        cudaEventCreate(&start_);
        cudaEventCreate(&stop_);
      }
      in_.synchronize();
      in_.fill_zero(spacer_, kSpacerBytes);  // keeps the device busy while the op is queued
      cudaEventRecord(start_, stream);
      op();
      cudaEventRecord(stop_, stream);
      cudaEventSynchronize(stop_);
      float ms = 0;
      cudaEventElapsedTime(&ms, start_, stop_);
      us = 1000.0 * ms;
    } else
#endif
    {
      in_.synchronize();
      const auto t0 = std::chrono::steady_clock::now();
      op();
      in_.synchronize();
      us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
    }
    auto found = std::find_if(times_.begin(), times_.end(),
                              [&](const auto& entry) { return entry.first == label; });
    if (found == times_.end()) {
      times_.emplace_back(label, std::vector<double>{});
      found = times_.end() - 1;
    }
    found->second.push_back(us);
  }

  mamba::Backend& in_;
  bool profiling_ = false;
  std::vector<std::pair<std::string, std::vector<double>>> times_;
  void* spacer_ = nullptr;
#ifdef MAMBA_HAVE_CUDA
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
#endif
};

// The timed ops of `steps` profiled steps: a JSON array of each label's calls per step, median
// microseconds a call and milliseconds per step, in the order of the labels' first calls, and the
// sum of those milliseconds.
struct OpsSummary {
  std::string json;
  double ms_per_step = 0;
};

inline OpsSummary summarize_ops(const OpTimingBackend& timing, int steps) {
  OpsSummary summary;
  for (const auto& [label, us] : timing.times()) {
    const double calls = double(us.size()) / steps;
    const double each = median(us);
    summary.ms_per_step += calls * each / 1000.0;
    char buf[256];
    std::snprintf(buf, sizeof buf,
                  "%s{\"op\": \"%s\", \"calls\": %g, \"us_each\": %.2f, \"ms_per_step\": %.4f}",
                  summary.json.empty() ? "" : ", ", label.c_str(), calls, each,
                  calls * each / 1000.0);
    summary.json += buf;
  }
  summary.json = "[" + summary.json + "]";
  return summary;
}

}  // namespace bench
