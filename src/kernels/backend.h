// One op interface, two backends: the model drives every kernel through this class, and the CPU
// backend (fp32, the oracle) and the CUDA backend (bf16 activations, fp32 accumulation) implement
// it. Each CUDA op has its CPU twin behind the same signature, so one test can run an op on both.
//
// Types of the tensors an op touches:
//   float*        fp32 on the backend's device: the residual stream and its gradient, norms'
//                 rstd, parameters (master weights), gradients, optimizer moments, scan states.
//   void* (Act)   activations in the backend's activation type: fp32 on the CPU, bf16 on CUDA
//                 (fp32 too when the CUDA backend runs in fp32, the debugging path). GEMM
//                 inputs and outputs, the scan's inputs and outputs, and their gradients.
//   weights       GEMM weights are the compute copy (compute_weights): activation type, same
//                 layout as the parameters; refreshed from the fp32 master after each update.
// Layouts are token-major ([tokens, features]) with explicit row strides, as in kernels/cpu/*.h,
// whose comments define the math of each op.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "kernels/cpu/adamw.h"
#include "kernels/cpu/scan.h"

namespace mamba {

using Act = void*;
using ConstAct = const void*;

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;              // "cpu", "cuda:0 (NVIDIA H200)"
  virtual size_t act_bytes() const = 0;              // 4 (fp32) or 2 (bf16)
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
  // Bytes of device memory at their peak since start (0 where not tracked).
  virtual size_t peak_memory() const { return 0; }

  // ---- conversions ----
  // dst[i] = src[i] in the activation type (rounded to bf16 on CUDA; a copy on the CPU).
  virtual void to_act(Act dst, const float* src, int64_t n) = 0;

  // ---- layer ops (math in kernels/cpu/<name>.h) ----
  virtual void embedding_forward(float* out, const int32_t* ids, const float* table, int64_t T,
                                 int C) = 0;
  virtual void embedding_backward(float* dtable, const float* dout, const int32_t* ids, int64_t T,
                                  int C) = 0;
  virtual void residual_rmsnorm_forward(float* residual_out, Act normed, float* rstd,
                                        const float* hidden, const float* residual_in,
                                        const float* weight, int64_t T, int C, float eps) = 0;
  virtual void rmsnorm_backward(float* dresidual, float* dweight, ConstAct dnormed,
                                const float* residual_out, const float* rstd, const float* weight,
                                int64_t T, int C) = 0;
  // out = inp @ weight^T, out in the activation type (linear_forward_f32: fp32 out).
  virtual void linear_forward(Act out, int64_t ld_out, ConstAct inp, int64_t ld_inp,
                              ConstAct weight, int64_t T, int in_dim, int out_dim) = 0;
  virtual void linear_forward_f32(float* out, int64_t ld_out, ConstAct inp, int64_t ld_inp,
                                  ConstAct weight, int64_t T, int in_dim, int out_dim) = 0;
  // dinp (=, or += when accumulate_dinp) dout @ weight; dweight (fp32) += dout^T @ inp.
  virtual void linear_backward(Act dinp, int64_t ld_dinp, bool accumulate_dinp, float* dweight,
                               ConstAct dout, int64_t ld_dout, ConstAct inp, int64_t ld_inp,
                               ConstAct weight, int64_t T, int in_dim, int out_dim) = 0;
  virtual void conv1d_silu_forward(Act out, ConstAct x, int64_t ld_x, const float* weight,
                                   const float* bias, int batch, int64_t seqlen, int D, int K) = 0;
  virtual void conv1d_silu_backward(Act dx, float* dweight, float* dbias, ConstAct dout, ConstAct x,
                                    int64_t ld_x, const float* weight, const float* bias, int batch,
                                    int64_t seqlen, int D, int K) = 0;

  // The selective scan. Forward stores in `saved` (scan_saved_bytes, may be 0) what backward
  // needs beyond the inputs (chunk-boundary states on CUDA; nothing on the CPU, which
  // recomputes). last_state may be null.
  virtual size_t scan_saved_bytes(const cpu::ScanShape& s) const = 0;
  virtual void selective_scan_forward(Act out, float* last_state, void* saved, ConstAct u,
                                      ConstAct delta, const float* A, ConstAct B, ConstAct C,
                                      const float* D, const float* delta_bias, ConstAct z,
                                      const cpu::ScanShape& s) = 0;
  virtual void selective_scan_backward(Act du, Act ddelta, float* dA, Act dB, Act dC, float* dD,
                                       float* ddelta_bias, Act dz, ConstAct dout, const void* saved,
                                       ConstAct u, ConstAct delta, const float* A, ConstAct B,
                                       ConstAct C, const float* D, const float* delta_bias,
                                       ConstAct z, const cpu::ScanShape& s) = 0;

  // LM head + mean cross-entropy over T tokens, chunked over tokens so that the logits of the
  // whole batch never exist: logits = normed @ E^T over the padded vocab Vp. Returns the mean
  // loss. When dnormed is non-null it also writes dnormed (= grad_scale * dloss/dnormed) and adds
  // grad_scale * dloss/dE to dE (fp32). logits_out (fp32 [T, Vp], device) receives all logits
  // when non-null (golden checks; forward only).
  virtual double lm_head_loss(ConstAct normed, ConstAct E, const int32_t* targets, int64_t T, int C,
                              int Vp, float grad_scale, Act dnormed, float* dE,
                              float* logits_out) = 0;

  // ---- small elementwise ops and the optimizer ----
  virtual void negative_exp(float* out, const float* in, int64_t n) = 0;  // out = -exp(in)
  virtual void mul_accumulate(float* dst, const float* a, const float* b, int64_t n) = 0;
  virtual double sum_of_squares(const float* x, int64_t n) = 0;  // accumulated in double
  virtual void scale(float* x, int64_t n, float s) = 0;
  virtual void adamw_update(float* param, const float* grad, float* m, float* v, int64_t n,
                            const cpu::AdamWHyper& h) = 0;
};

// The fp32 CPU backend (OpenMP + OpenBLAS), the correctness oracle.
std::unique_ptr<Backend> make_cpu_backend();

}  // namespace mamba
