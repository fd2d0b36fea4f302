// The CPU backend: Backend's ops on the fp32 kernels of this folder. "Device" memory is host
// memory, activations are fp32, and the compute copy of the weights can alias the parameters.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "kernels/backend.h"
#include "kernels/cpu/conv1d.h"
#include "kernels/cpu/cross_entropy.h"
#include "kernels/cpu/embedding.h"
#include "kernels/cpu/linear.h"
#include "kernels/cpu/rmsnorm.h"
#include "kernels/cpu/scan.h"
#include "util/error.h"
#include "util/host_memory.h"

namespace mamba {

namespace {

float* f(Act p) {
  return static_cast<float*>(p);
}
const float* f(ConstAct p) {
  return static_cast<const float*>(p);
}

// Tokens per LM-head chunk: bounds the logits buffer to kHeadChunk x Vp floats.
constexpr int64_t kHeadChunk = 256;

class CpuBackend final : public Backend {
 public:
  std::string name() const override { return "cpu"; }
  size_t act_bytes() const override { return sizeof(float); }
  bool host_accessible() const override { return true; }

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
    if (dst != src) std::memcpy(dst, src, n * sizeof(float));
  }

  void embedding_forward(float* out, const int32_t* ids, const float* table, int64_t T,
                         int C) override {
    cpu::embedding_forward(out, ids, table, T, C);
  }
  void embedding_backward(float* dtable, const float* dout, const int32_t* ids, int64_t T,
                          int C) override {
    cpu::embedding_backward(dtable, dout, ids, T, C);
  }
  void residual_rmsnorm_forward(float* residual_out, Act normed, float* rstd, const float* hidden,
                                const float* residual_in, const float* weight, int64_t T, int C,
                                float eps) override {
    cpu::residual_rmsnorm_forward(residual_out, f(normed), rstd, hidden, residual_in, weight, T, C,
                                  eps);
  }
  void rmsnorm_backward(float* dresidual, float* dweight, ConstAct dnormed,
                        const float* residual_out, const float* rstd, const float* weight,
                        int64_t T, int C) override {
    cpu::rmsnorm_backward(dresidual, dweight, f(dnormed), residual_out, rstd, weight, T, C);
  }
  void linear_forward(Act out, int64_t ld_out, ConstAct inp, int64_t ld_inp, ConstAct weight,
                      int64_t T, int in_dim, int out_dim) override {
    cpu::linear_forward(f(out), ld_out, f(inp), ld_inp, f(weight), T, in_dim, out_dim);
  }
  void linear_forward_f32(float* out, int64_t ld_out, ConstAct inp, int64_t ld_inp, ConstAct weight,
                          int64_t T, int in_dim, int out_dim) override {
    cpu::linear_forward(out, ld_out, f(inp), ld_inp, f(weight), T, in_dim, out_dim);
  }
  void linear_backward(Act dinp, int64_t ld_dinp, bool accumulate_dinp, float* dweight,
                       ConstAct dout, int64_t ld_dout, ConstAct inp, int64_t ld_inp,
                       ConstAct weight, int64_t T, int in_dim, int out_dim) override {
    cpu::linear_backward(f(dinp), ld_dinp, accumulate_dinp, dweight, f(dout), ld_dout, f(inp),
                         ld_inp, f(weight), T, in_dim, out_dim);
  }
  void conv1d_silu_forward(Act out, ConstAct x, int64_t ld_x, const float* weight,
                           const float* bias, int batch, int64_t seqlen, int D, int K) override {
    cpu::conv1d_silu_forward(f(out), f(x), ld_x, weight, bias, batch, seqlen, D, K);
  }
  void conv1d_silu_backward(Act dx, float* dweight, float* dbias, ConstAct dout, ConstAct x,
                            int64_t ld_x, const float* weight, const float* bias, int batch,
                            int64_t seqlen, int D, int K) override {
    cpu::conv1d_silu_backward(f(dx), dweight, dbias, f(dout), f(x), ld_x, weight, bias, batch,
                              seqlen, D, K);
  }

  size_t scan_saved_bytes(const cpu::ScanShape&) const override { return 0; }
  void selective_scan_forward(Act out, float* last_state, void*, ConstAct u, ConstAct delta,
                              const float* A, ConstAct B, ConstAct C, const float* D,
                              const float* delta_bias, ConstAct z,
                              const cpu::ScanShape& s) override {
    if (!last_state) {
      state_scratch_.resize(int64_t(s.batch) * s.d_inner * s.d_state);
      last_state = state_scratch_.data();
    }
    cpu::selective_scan_forward(f(out), last_state, f(u), f(delta), A, f(B), f(C), D, delta_bias,
                                f(z), s);
  }
  void selective_scan_backward(Act du, Act ddelta, float* dA, Act dB, Act dC, float* dD,
                               float* ddelta_bias, Act dz, ConstAct dout, const void*, ConstAct u,
                               ConstAct delta, const float* A, ConstAct B, ConstAct C,
                               const float* D, const float* delta_bias, ConstAct z,
                               const cpu::ScanShape& s) override {
    cpu::selective_scan_backward(f(du), f(ddelta), dA, f(dB), f(dC), dD, ddelta_bias, f(dz),
                                 f(dout), f(u), f(delta), A, f(B), f(C), D, delta_bias, f(z), s);
  }

  double lm_head_loss(ConstAct normed, ConstAct E, const int32_t* targets, int64_t T, int C, int Vp,
                      float grad_scale, Act dnormed, float* dE, float* logits_out) override {
    logits_.resize(std::min(T, kHeadChunk) * Vp);
    double loss_sum = 0.0;
    for (int64_t t0 = 0; t0 < T; t0 += kHeadChunk) {
      const int64_t rows = std::min(kHeadChunk, T - t0);
      const float* x = f(normed) + t0 * C;
      float* logits = logits_out && !dnormed ? logits_out + t0 * Vp : logits_.data();
      cpu::linear_forward(logits, Vp, x, C, f(E), rows, C, Vp);
      if (!dnormed) {
        loss_sum += cpu::cross_entropy_forward(logits, targets + t0, rows, Vp) * rows;
        continue;
      }
      // The kernel's gradient is of its own chunk mean; rescale to the mean over all T tokens.
      const float chunk_scale = grad_scale * float(rows) / float(T);
      loss_sum +=
          cpu::cross_entropy_forward_backward(logits, targets + t0, rows, Vp, chunk_scale) * rows;
      cpu::linear_backward(f(dnormed) + t0 * C, C, false, dE, logits, Vp, x, C, f(E), rows, C, Vp);
    }
    return loss_sum / T;
  }

  void negative_exp(float* out, const float* in, int64_t n) override {
    for (int64_t i = 0; i < n; ++i) out[i] = -std::exp(in[i]);
  }
  void mul_accumulate(float* dst, const float* a, const float* b, int64_t n) override {
    for (int64_t i = 0; i < n; ++i) dst[i] += a[i] * b[i];
  }
  double sum_of_squares(const float* x, int64_t n) override { return cpu::sum_of_squares(x, n); }
  void scale(float* x, int64_t n, float s) override { cpu::scale_inplace(x, n, s); }
  void adamw_update(float* param, const float* grad, float* m, float* v, int64_t n,
                    const cpu::AdamWHyper& h) override {
    cpu::adamw_update(param, grad, m, v, n, h);
  }

 private:
  std::vector<float> state_scratch_, logits_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend() {
  return std::make_unique<CpuBackend>();
}

}  // namespace mamba
