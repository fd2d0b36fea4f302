// The Mamba language model (design.md §1) with a hand-written backward pass, driving any Backend.
// Data flow of one training step, every saved tensor named in Activations:
//   residual_0 = embed(inputs)
//   layer i:  residual_i = hidden_{i-1} + residual_{i-1};  normed = RMSNorm(residual_i) * w
//             xz = normed @ W_in^T;  xc = SiLU(conv(x));  xdbl = xc @ W_x^T = [dt | B | C]
//             delta = dt @ W_dt^T;  y = scan(xc, delta + b_dt, A, B, C, D, z);  hidden_i = y @
//             W_out^T
//   head:     residual_f = hidden + residual;  normed_f = RMSNorm(residual_f) * w_f;
//             logits = normed_f @ E^T (tied embedding), cross-entropy, chunked over tokens by the
//             backend so the logits of the whole batch never exist at once.
// Backward runs the same steps in reverse. Because residual_i feeds both the next layer's add and
// its own norm, one gradient stream dres carries d(residual) == d(hidden) between layers.
// Precision: the residual stream, its gradient, parameters and gradients are fp32; activations
// are in the backend's activation type (fp32 on the CPU, bf16 on CUDA).
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/backend.h"
#include "model/params.h"

namespace mamba {

// What forward saves for backward (and the working buffers both passes share), for one
// (batch, seqlen), carved out of one allocation planned up front. A layer keeps only what is
// costly to recompute; its normed input, conv output, delta and gated scan output are rebuilt in
// backward into the shared working buffers (a norm, a depthwise conv, a rank-r GEMM, and the
// scan backward, which re-forms the output while it recomputes the states), as the reference
// does. With recomputation every layer's buffers except residual are one shared set.
struct Activations {
  struct Layer {
    float* residual;   // [T, d_model] input of this layer's norm (fp32 stream)
    float* rstd;       // [T]
    Act xz;            // [T, 2 * d_inner] in_proj output, x then z
    Act xdbl;          // [T, rank + 2 * d_state] x_proj output: dt | B | C
    void* scan_saved;  // what the backend's scan forward keeps for its backward
  };
  int batch = 0, seqlen = 0;
  int64_t T = 0;
  std::vector<Layer> layers;
  // The current layer's working buffers, written by its forward and rebuilt by its backward.
  Act normed;                           // [T, d_model]
  Act xc;                               // [T, d_inner] SiLU(conv(x)), the scan's u
  Act delta;                            // [T, d_inner] dt_proj output before bias and softplus
  Act y;                                // [T, d_inner] gated scan output, out_proj's input
  float *residual_f, *rstd_f, *hidden;  // final norm input, its rstd; latest layer output
  Act normed_f;
  int32_t *inputs, *targets;  // token ids on the device
  // Backward scratch, reused by every layer.
  float *dres, *A, *dA;
  Act dres_act, dnormed, dxz, dxc, dxdbl, ddelta, dy;
  void* memory = nullptr;  // the one allocation everything above points into
  size_t bytes = 0;
};

// Told during backward when a slice of the gradient buffer holds its final value, so that its
// all-reduce across processes can start while backward goes on. Slices [begin, end) (in floats)
// arrive in the order backward completes them: norm_f, layer n-1, ..., layer 0, the embedding.
class GradientReadyHook {
 public:
  virtual ~GradientReadyHook() = default;
  virtual void ready(int64_t begin, int64_t end) = 0;
};

// The scan's inputs in a layer: u and delta, B and C from x_proj's output [dt | B | C], z the
// second half of in_proj's output [x | z], A = -exp(A_log) of that layer.
ScanInputs layer_scan_inputs(ConstAct u, ConstAct delta, ConstAct xdbl, ConstAct xz, const float* A,
                             const LayerView& w, const ModelConfig& c);

class MambaLM {
 public:
  // recompute: keep only each layer's residual input from forward and recompute the rest of the
  // layer in backward (one layer's activations live at a time): less memory, ~1/3 more compute.
  MambaLM(const ModelConfig& config, Backend& backend, bool recompute = false);
  ~MambaLM();
  MambaLM(const MambaLM&) = delete;
  MambaLM& operator=(const MambaLM&) = delete;

  const ModelConfig& config() const { return layout_.config(); }
  const ParamLayout& layout() const { return layout_; }
  Backend& backend() const { return be_; }

  // Mean cross-entropy of targets given inputs (host arrays [batch, seqlen]), no gradients.
  // When logits_out (host) is given it receives all logits [batch * seqlen, padded_vocab].
  double evaluate(const int32_t* inputs, const int32_t* targets, int batch, int seqlen,
                  float* logits_out = nullptr);
  // Forward and backward: returns the mean loss and ADDS grad_scale * d(loss)/d(params) to grads
  // (so micro-batches of gradient accumulation sum into one buffer; zero_grads between steps).
  // With gradient accumulation, pass the hook on the last micro-batch only.
  double forward_backward(const int32_t* inputs, const int32_t* targets, int batch, int seqlen,
                          float grad_scale, GradientReadyHook* hook = nullptr);

  // Device buffers with the ParamLayout: fp32 master weights and gradients.
  float* params() { return params_; }
  float* grads() { return grads_; }
  // The activation-type compute copy of a weight (the GEMMs' operand), given its fp32 master in
  // params().
  ConstAct compute_weight(const float* master) const;
  void zero_grads();
  // After params change (optimizer step, load): refresh the activation-type compute copy.
  void params_updated();
  // The compute copy itself (parameter layout), for an optimizer that writes it as it updates
  // params (AdamW::step), in place of params_updated. Aliases params() when activations are fp32.
  Act compute_copy() const { return weights_; }
  // out = inp @ weight^T over T rows, with the compute copy of the fp32 master weight (any of
  // params()'s tensors).
  void linear_forward(Act out, int64_t ld_out, ConstAct inp, int64_t ld_inp, const float* weight,
                      int in_dim, int out_dim, int64_t T) const;
  // Host copies, for checkpoints and golden checks.
  std::vector<float> download(const float* device_buffer) const;
  void upload_params(const std::vector<float>& host);
  // Bytes of the activation arena for the largest shape planned so far.
  size_t activation_bytes() const;
  // Allocates the activations of this shape now, so that a shape too large for the device
  // fails before any work (and not at the first step).
  void plan(int batch, int seqlen) { activations(batch, seqlen); }

 private:
  Activations& activations(int batch, int seqlen);
  void forward_layers(Activations& a);
  // Layer i's forward. With refill, re-creates its saved activations from its saved residual
  // input for backward (and stops before the scan, which backward runs itself).
  void forward_layer(Activations& a, int i, bool refill);
  // Rebuilds layer i's working buffers but y (which the scan backward re-forms) from what forward
  // saved: the norm of its residual, the conv of x, delta from xdbl.
  void rebuild_layer_inputs(Activations& a, int i);
  void norm_forward(Activations& a, int i, bool refill);
  void conv_forward(Activations& a, int i);
  void delta_forward(Activations& a, int i);

  void backward_layers(Activations& a, GradientReadyHook* hook);
  LmHeadLoss lm_head(const Activations& a) const;  // forward only, grad_scale 1

  ParamLayout layout_;
  Backend& be_;
  bool recompute_;
  float* params_ = nullptr;
  float* grads_ = nullptr;
  Act weights_;  // compute copy; aliases params_ when activations are fp32
  std::vector<std::unique_ptr<Activations>> acts_;  // one per (batch, seqlen) seen
};

}  // namespace mamba
