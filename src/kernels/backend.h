// One op interface, two backends: the model drives every kernel through this class, and the CPU
// backend (fp32, the oracle) and the CUDA backend (bf16 activations, fp32 accumulation) implement
// it. Each CUDA op has its CPU twin behind the same signature, so one test can run an op on both.
// The ops' arguments, their types and layouts are in kernels/ops.h; the math of each op is in
// kernels/cpu/<name>.h.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "kernels/ops.h"

namespace mamba {

// Runs a step of queued device work (one decoded token) again and again. A backend may record the
// work the first time and replay the recording after (a CUDA graph), which saves the launch cost
// of its many small kernels: while `key` stays the same, step must queue the same ops on the same
// buffers every time, and queue no upload, download, allocation or synchronization. A new key
// (another batch, hence other buffers) records anew. This base class just calls step.
class StepRecorder {
 public:
  virtual ~StepRecorder() = default;
  virtual void run(int64_t key, const std::function<void()>& step) {
    (void)key;
    step();
  }
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;  // "cpu", "cuda:0 (NVIDIA H200)"
  virtual ActType act_type() const = 0;  // fp32, or bf16
  size_t act_bytes() const { return type_bytes(act_type()); }
  virtual double peak_flops() const { return 0.0; }  // dense bf16 peak for MFU; 0 if unknown
  // True when device pointers are host pointers (the CPU backend): MPI can reduce them in place.
  virtual bool host_accessible() const { return false; }
  // The queue the backend orders its work on (a cudaStream_t on CUDA; null on the CPU), so that
  // collectives can be ordered with it.
  virtual void* native_stream() const { return nullptr; }

  // Throws mamba::Error, naming the config key to change, when the layer ops cannot run this
  // state size or convolution width.
  virtual void check_layer_shape(int d_state, int d_conv) const {
    (void)d_state;
    (void)d_conv;
  }

  // ---- memory on the backend's device ----
  virtual void* allocate(size_t bytes) = 0;  // throws mamba::Error when out of memory
  virtual void release(void* p) = 0;
  virtual void upload(void* dst, const void* host_src, size_t bytes) = 0;
  virtual void download(void* host_dst, const void* src, size_t bytes) = 0;
  virtual void fill_zero(void* dst, size_t bytes) = 0;
  // Device-to-device, ordered after the work queued so far (checkpoint snapshots).
  virtual void copy(void* dst, const void* src, size_t bytes) = 0;
  // A download for a background thread (the checkpoint writer): on a queue of its own, so that
  // it overlaps the training kernels, and returns when the bytes are on the host. src must not
  // be written by queued work (synchronize() after filling it). One such caller at a time.
  virtual void download_concurrent(void* host_dst, const void* src, size_t bytes) = 0;
  virtual void synchronize() = 0;
  // Bytes of the device's memory this process held at their peak (0 where not tracked). On CUDA,
  // since the backend started: its allocations and what the process took on the device outside
  // them (outside_memory()). On the CPU, whose device is the host: the process's peak resident
  // memory since it started.
  virtual size_t peak_memory() const { return 0; }
  // The part of the device's memory the process holds outside allocate(), measured now: on CUDA,
  // NCCL's communicators and their buffers (NCCL allocates them at the first collective of each
  // kind), the runtime's lazily loaded kernels, cuBLASLt's handle, allocations' rounding up to
  // whole pages. Counted in peak_memory() from the moment it is measured (at every allocate()
  // and every peak_memory()). 0 where not measured.
  virtual size_t outside_memory() const { return 0; }
  // The peak of the backend's own allocations (allocate()) alone, without outside_memory(): what
  // the framework itself held at most. 0 where not tracked.
  virtual size_t peak_allocated() const { return 0; }

  // ---- conversions ----
  // dst[i] = src[i] in the activation type (rounded to bf16 on CUDA; a copy on the CPU).
  virtual void to_act(Act dst, const float* src, int64_t n) = 0;

  // ---- initialisation ----
  // Fills op.dst (fp32, on the device) per kernels/init_element.h: bit-identical on every backend.
  virtual void init_fill(const InitFill& op) = 0;

  // ---- layer ops ----
  virtual void embedding_forward(const EmbeddingForward& op) = 0;
  virtual void embedding_backward(const EmbeddingBackward& op) = 0;
  virtual void residual_rmsnorm_forward(const RmsNormForward& op) = 0;
  virtual void rmsnorm_backward(const RmsNormBackward& op) = 0;
  virtual void linear_forward(const LinearForward& op) = 0;
  virtual void linear_backward(const LinearBackward& op) = 0;
  virtual void conv1d_silu_forward(const Conv1dShape& s, const Conv1dForward& op) = 0;
  virtual void conv1d_silu_backward(const Conv1dShape& s, const Conv1dBackward& op) = 0;
  // Whether conv1d_silu_backward takes op.lowrank (its shape, types and alignment) rather than
  // have the caller accumulate that term into dout first.
  virtual bool conv_backward_takes_lowrank(const Conv1dShape& s,
                                           const Conv1dBackward& op) const = 0;

  // The selective scan. Forward writes out and stores in `saved` (scan_saved_bytes, may be 0)
  // what backward needs beyond the inputs (chunk-boundary states on CUDA; nothing on the CPU,
  // which recomputes). last_state ([batch, d_inner, d_state]) may be null.
  virtual size_t scan_saved_bytes(const ScanShape& s) const = 0;
  virtual void selective_scan_forward(const ScanShape& s, const ScanInputs& in, Act out,
                                      float* last_state, void* saved) = 0;
  virtual void selective_scan_backward(const ScanShape& s, const ScanInputs& in, ConstAct dout,
                                       const void* saved, const ScanGrads& grads) = 0;

  // Recurrent mode (generation, kernels/cpu/recurrent.h): the conv and the scan for one new token
  // of each of s.batch sequences (s.seqlen is 1), carrying their states from call to call.
  virtual void conv1d_silu_step(const Conv1dShape& s, const Conv1dStep& op) = 0;
  virtual void selective_scan_step(const ScanShape& s, const ScanInputs& in, Act out,
                                   float* ssm_state) = 0;
  virtual void argmax_rows(const ArgmaxRows& op) = 0;
  // Owned by the caller, whose buffers the recording names; must not outlive this backend.
  virtual std::unique_ptr<StepRecorder> make_step_recorder() {
    return std::make_unique<StepRecorder>();
  }

  // Chunked over tokens so that the logits of the whole batch never exist. Returns the mean loss.
  virtual double lm_head_loss(const LmHeadLoss& op) = 0;

  // The algorithms the backend chose by timing (kernels/cuda/gemm.h), as text; "" when it chose
  // none. Adopted elsewhere, they make that process compute as this one does, to the bit. Adopting
  // returns false, changing nothing, for text written with other libraries or another kind of
  // device; a backend that times nothing has nothing to adopt.
  virtual std::string gemm_algorithms() const { return {}; }
  virtual bool adopt_gemm_algorithms(const std::string& /*text*/) { return true; }

  // ---- small elementwise ops and the optimizer ----
  virtual void negative_exp(float* out, const float* in, int64_t n) = 0;  // out = -exp(in)
  virtual void mul_accumulate(float* dst, const float* a, const float* b, int64_t n) = 0;
  // The sum of x[i]^2 over the elements of spans[0..count), accumulated in double: each span's
  // sum as sum_of_squares gives it, the spans' sums added in their order. One host
  // synchronisation for all spans (the norm of a ZeRO-1 rank's slices of the gradients).
  virtual double sum_of_squares_of_spans(const float* x, const Span* spans, int count) = 0;
  double sum_of_squares(const float* x, int64_t n) {  // accumulated in double
    const Span all{0, n};
    return sum_of_squares_of_spans(x, &all, 1);
  }
  // AdamW over op's segments (kernels/cpu/adamw.h), with h.weight_decay on the segments marked
  // for it and none elsewhere; also refreshes those elements of op.compute_copy.
  virtual void adamw_step(const AdamWStep& op, const AdamWHyper& h) = 0;
};

// The fp32 CPU backend (OpenMP + OpenBLAS), the correctness oracle.
std::unique_ptr<Backend> make_cpu_backend();

}  // namespace mamba
