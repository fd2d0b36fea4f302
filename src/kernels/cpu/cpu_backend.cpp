// The CPU backend: Backend's ops on the fp32 kernels of this folder. "Device" memory is host
// memory, activations are fp32, and the compute copy of the weights can alias the parameters.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "kernels/backend.h"
#include "kernels/cpu/adamw.h"
#include "kernels/cpu/conv1d.h"
#include "kernels/cpu/cross_entropy.h"
#include "kernels/cpu/embedding.h"
#include "kernels/cpu/init_fill.h"
#include "kernels/cpu/linear.h"
#include "kernels/cpu/recurrent.h"
#include "kernels/cpu/rmsnorm.h"
#include "kernels/cpu/scan.h"
#include "util/error.h"
#include "util/host_memory.h"

namespace mamba {

namespace {

// Tokens per LM-head chunk: bounds the logits buffer to kHeadChunk x Vp floats.
constexpr int64_t kHeadChunk = 256;

class CpuBackend final : public Backend {
 public:
  std::string name() const override { return "cpu"; }
  ActType act_type() const override { return ActType::F32; }
  bool host_accessible() const override { return true; }
  // The device is the host: all the process holds there counts.
  size_t peak_memory() const override { return peak_resident_memory(); }

  void* allocate(size_t bytes) override {
    const size_t available = available_host_memory();
    if (bytes > available) {
      throw_error("out of memory: cannot allocate ", bytes / double(1 << 30),
                  " GiB on the CPU, which has ", available / double(1 << 30),
                  " GiB available; reduce train.micro_batch, data.seq_len or the model size");
    }
    // 64-byte alignment for vector loads; aligned_alloc wants a multiple of the alignment.
    void* p = std::aligned_alloc(64, std::max<size_t>(64, (bytes + 63) / 64 * 64));
    if (!p)
      throw_error("out of memory: cannot allocate ", bytes / double(1 << 30), " GiB on the CPU");
    return p;
  }
  void release(void* p) override { std::free(p); }
  void upload(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void download(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void fill_zero(void* dst, size_t bytes) override { std::memset(dst, 0, bytes); }
  void copy(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void download_concurrent(void* dst, const void* src, size_t bytes) override {
    std::memcpy(dst, src, bytes);
  }
  void synchronize() override {}

  void to_act(Act dst, const float* src, int64_t n) override {
    float* out = ActCast<float>{"to_act"}(dst, "dst");
    if (out != src) std::memcpy(out, src, n * sizeof(float));
  }

  void init_fill(const InitFill& op) override { cpu::init_fill(op); }

  void embedding_forward(const EmbeddingForward& op) override {
    cpu::embedding_forward(op.out, op.ids, op.table, op.T, op.C);
  }
  void embedding_backward(const EmbeddingBackward& op) override {
    cpu::embedding_backward(op.dtable, op.dout, op.ids, op.T, op.C);
  }
  void residual_rmsnorm_forward(const RmsNormForward& op) override {
    const ActCast<float> f32{"residual_rmsnorm_forward"};
    cpu::residual_rmsnorm_forward(op.residual_out, f32(op.normed, "normed"), op.rstd, op.hidden,
                                  op.residual_in, op.weight, op.T, op.C, op.eps);
  }
  void rmsnorm_backward(const RmsNormBackward& op) override {
    const ActCast<float> f32{"rmsnorm_backward"};
    cpu::rmsnorm_backward(op.dresidual, op.dweight, f32(op.dnormed, "dnormed"), op.residual_out,
                          op.rstd, op.weight, op.T, op.C);
    float* copy = f32(op.dresidual_act, "dresidual_act");
    if (copy && copy != op.dresidual) std::copy_n(op.dresidual, op.T * op.C, copy);
  }
  void linear_forward(const LinearForward& op) override {
    const ActCast<float> f32{"linear_forward"};
    cpu::linear_forward(f32(op.out, "out"), op.ld_out, f32(op.inp, "inp"), op.ld_inp,
                        f32(op.weight, "weight"), op.T, op.in_dim, op.out_dim);
  }
  void linear_backward(const LinearBackward& op) override {
    const ActCast<float> f32{"linear_backward"};
    cpu::linear_backward(f32(op.dinp, "dinp"), op.ld_dinp, op.accumulate_dinp, op.dweight,
                         f32(op.dout, "dout"), op.ld_dout, f32(op.inp, "inp"), op.ld_inp,
                         f32(op.weight, "weight"), op.T, op.in_dim, op.out_dim);
  }
  void conv1d_silu_forward(const Conv1dShape& s, const Conv1dForward& op) override {
    const ActCast<float> f32{"conv1d_silu_forward"};
    cpu::conv1d_silu_forward(f32(op.out, "out"), f32(op.x, "x"), s.ld_x, op.weight, op.bias,
                             s.batch, s.seqlen, s.D, s.K);
  }
  // The low-rank term is added to a copy of dout by the linear layer's own kernel: the same sums
  // as accumulating it into dout before the op.
  void conv1d_silu_backward(const Conv1dShape& s, const Conv1dBackward& op) override {
    check_dx_apart(s, op);
    const ActCast<float> f32{"conv1d_silu_backward"};
    const float* dout = f32(op.dout, "dout");
    if (op.lowrank.rank > 0) {
      const int64_t T = int64_t(s.batch) * s.seqlen;
      lowrank_scratch_.assign(dout, dout + T * s.D);
      cpu::linear_backward(lowrank_scratch_.data(), s.D, true, nullptr,
                           f32(op.lowrank.a, "lowrank.a"), op.lowrank.ld_a, nullptr, 0,
                           f32(op.lowrank.weight, "lowrank.weight"), T, s.D, op.lowrank.rank);
      dout = lowrank_scratch_.data();
    }
    cpu::conv1d_silu_backward(f32(op.dx, "dx"), op.dweight, op.dbias, dout, f32(op.x, "x"), s.ld_x,
                              op.weight, op.bias, s.batch, s.seqlen, s.D, s.K);
  }
  bool conv_backward_takes_lowrank(const Conv1dShape&, const Conv1dBackward&) const override {
    return true;
  }

  size_t scan_saved_bytes(const ScanShape&) const override { return 0; }
  void selective_scan_forward(const ScanShape& s, const ScanInputs& in, Act out, float* last_state,
                              void*) override {
    if (!last_state) {
      state_scratch_.resize(int64_t(s.batch) * s.d_inner * s.d_state);
      last_state = state_scratch_.data();
    }
    cpu::selective_scan_forward(s, in, out, last_state);
  }
  void selective_scan_backward(const ScanShape& s, const ScanInputs& in, ConstAct dout, const void*,
                               const ScanGrads& grads) override {
    cpu::selective_scan_backward(s, in, dout, grads);
  }

  void conv1d_silu_step(const Conv1dShape& s, const Conv1dStep& op) override {
    cpu::conv1d_silu_step(s, op);
  }
  void selective_scan_step(const ScanShape& s, const ScanInputs& in, Act out,
                           float* ssm_state) override {
    cpu::selective_scan_step(s, in, out, ssm_state);
  }
  void argmax_rows(const ArgmaxRows& op) override { cpu::argmax_rows(op); }

  double lm_head_loss(const LmHeadLoss& op) override {
    const ActCast<float> f32{"lm_head_loss"};
    const float *normed = f32(op.normed, "normed"), *E = f32(op.E, "E");
    float* dnormed = f32(op.dnormed, "dnormed");
    const int64_t T = op.T;
    const int C = op.C, Vp = op.Vp;
    logits_.resize(std::min(T, kHeadChunk) * Vp);
    double loss_sum = 0.0;
    for (int64_t t0 = 0; t0 < T; t0 += kHeadChunk) {
      const int64_t rows = std::min(kHeadChunk, T - t0);
      const float* x = normed + t0 * C;
      float* logits = op.logits_out && !dnormed ? op.logits_out + t0 * Vp : logits_.data();
      cpu::linear_forward(logits, Vp, x, C, E, rows, C, Vp);
      if (!dnormed) {
        loss_sum += cpu::cross_entropy_forward(logits, op.targets + t0, rows, Vp) * rows;
        continue;
      }
      // The kernel's gradient is of its own chunk mean; rescale to the mean over all T tokens.
      const float chunk_scale = op.grad_scale * float(rows) / float(T);
      loss_sum +=
          cpu::cross_entropy_forward_backward(logits, op.targets + t0, rows, Vp, chunk_scale) *
          rows;
      cpu::linear_backward(dnormed + t0 * C, C, false, op.dE, logits, Vp, x, C, E, rows, C, Vp);
    }
    return loss_sum / T;
  }

  void negative_exp(float* out, const float* in, int64_t n) override {
    for (int64_t i = 0; i < n; ++i) out[i] = -std::exp(in[i]);
  }
  void mul_accumulate(float* dst, const float* a, const float* b, int64_t n) override {
    for (int64_t i = 0; i < n; ++i) dst[i] += a[i] * b[i];
  }
  double sum_of_squares_of_spans(const float* x, const Span* spans, int count) override {
    return cpu::sum_of_squares(x, spans, count);
  }
  void adamw_step(const AdamWStep& op, const AdamWHyper& h) override { cpu::adamw_step(op, h); }

 private:
  std::vector<float> state_scratch_, logits_, lowrank_scratch_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend() {
  return std::make_unique<CpuBackend>();
}

}  // namespace mamba
