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
// are in the backend's activation type (fp32 on the CPU, bf16 on CUDA). The GEMMs read their
// weights from the compute copy (activation type); every other tensor (ParamTensor::fp32_read)
// is read in fp32. A model built without an fp32 master (ZeRO-1, whose master is sharded among
// the optimizers of the ranks) keeps those fp32 tensors alone, packed in its exact buffer, and
// its owner keeps them and the compute copy current.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/backend.h"
#include "model/params.h"

namespace mamba {

// How much of a layer forward keeps for backward; the rest backward rebuilds.
//   Rebuild (default): residual, rstd, xz, xdbl and the scan's checkpoints. Backward rebuilds
//     the normed input, the conv output and delta (a norm, a depthwise conv, a rank-r GEMM), and
//     the scan backward re-forms the gated output while it recomputes the states, as the
//     reference does; those four live in one set of buffers that every layer shares.
//   KeepInputs: those four as well, each layer its own (more memory, no rebuilding).
//   Recompute: only the residual; backward runs the layer's forward again, and every layer's
//     buffers but residual are one shared set (least memory, ~1/3 more compute).
enum class ActivationMemory { Rebuild, KeepInputs, Recompute };

// What forward saves for backward (and the working buffers both passes share), for one
// (batch, seqlen), carved out of one allocation planned up front. Which buffers a layer shares
// with the others is decided once, where they are planned (MambaLM::activations).
struct Activations {
  struct Layer {
    float* residual;   // [T, d_model] input of this layer's norm (fp32 stream)
    float* rstd;       // [T]
    Act xz;            // [T, 2 * d_inner] in_proj output, x then z
    Act xdbl;          // [T, rank + 2 * d_state] x_proj output: dt | B | C
    void* scan_saved;  // what the backend's scan forward keeps for its backward
    // Written by the layer's forward; read by its backward as kept, or after a rebuild.
    Act normed;  // [T, d_model]
    Act xc;      // [T, d_inner] SiLU(conv(x)), the scan's u
    Act delta;   // [T, d_inner] dt_proj output before bias and softplus
    Act y;       // [T, d_inner] gated scan output, out_proj's input
  };
  int batch = 0, seqlen = 0;
  int64_t T = 0;
  std::vector<Layer> layers;
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

// Layer i's weights as the model reads them: the fp32 tensors as they are, the GEMMs' weights as
// their compute copies.
struct LayerWeights {
  const float *A_log, *D, *conv_w, *conv_b, *dt_proj_b, *norm;  // fp32
  ConstAct in_proj, x_proj, dt_proj_w, out_proj;                // compute copies
};

// A run of fp32-read tensors: floats [offset, offset + count) of the parameter layout, kept at
// [exact, exact + count) of the exact buffer.
struct ExactSpan {
  int64_t offset = 0, exact = 0, count = 0;
};

// The scan's inputs in a layer: u and delta, B and C from x_proj's output [dt | B | C], z the
// second half of in_proj's output [x | z], A = -exp(A_log) of that layer.
ScanInputs layer_scan_inputs(ConstAct u, ConstAct delta, ConstAct xdbl, ConstAct xz, const float* A,
                             const LayerWeights& w, const ModelConfig& c);

class MambaLM {
 public:
  // memory: what forward keeps for backward (ActivationMemory).
  // fp32_master false: no fp32 copy of all the weights (params() is null), only the compute copy
  // and the exact buffer; set_weights() fills them, the owner keeps them current after that.
  MambaLM(const ModelConfig& config, Backend& backend,
          ActivationMemory memory = ActivationMemory::Rebuild, bool fp32_master = true);
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

  // Device buffers with the ParamLayout: fp32 master weights (null without one) and gradients.
  float* params() { return params_; }
  float* grads() { return grads_; }
  void zero_grads();
  // After params change (optimizer step, load): refresh the activation-type compute copy.
  void params_updated();
  // The compute copy itself (parameter layout), for an optimizer that writes it as it updates
  // params (AdamW::step), in place of params_updated. Aliases params() when activations are fp32
  // and the model has an fp32 master.
  Act compute_copy() const { return weights_; }
  // Without an fp32 master: the exact buffer (fp32) and where each fp32-read tensor sits in it,
  // in buffer order. With one they are read from params(): no spans, null.
  float* exact() { return exact_; }
  const std::vector<ExactSpan>& exact_spans() const { return exact_spans_; }
  int64_t exact_floats() const { return exact_floats_; }  // 0 with a master
  // All the weights from a parameter-layout fp32 buffer on the device: into params() (and the
  // compute copy), or without a master into the compute copy and the exact buffer.
  void set_weights(const float* weights);
  // Device bytes of the weights the model holds: master, compute copy (when separate) and exact
  // buffer.
  size_t weight_bytes() const;
  // What the forward reads: layer i's weights, the embedding rows (fp32) and norm_f's weight.
  const LayerWeights& layer_weights(int i) const { return layers_[i]; }
  const float* embedding_fp32() const { return embedding_; }
  const float* norm_f_fp32() const { return norm_f_; }
  // The compute copy of the tied embedding, the LM head's weight.
  ConstAct head_weight() const { return weights_; }
  // out = inp @ weight^T over T rows; weight is a compute copy ([out_dim, in_dim]).
  void linear_forward(Act out, int64_t ld_out, ConstAct inp, int64_t ld_inp, ConstAct weight,
                      int in_dim, int out_dim, int64_t T) const;
  // Host copies, for checkpoints and golden checks.
  std::vector<float> download(const float* device_buffer) const;
  // All the weights from the host (set_weights).
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
  // input for backward (and stops before out_proj).
  void forward_layer(Activations& a, int i, bool refill);
  // Rebuilds layer i's normed, xc and delta (not y, which the scan backward re-forms) from what
  // forward saved: the norm of its residual, the conv of x, delta from xdbl.
  void rebuild_layer_inputs(Activations& a, int i);
  void norm_forward(Activations& a, int i, bool refill);
  void conv_forward(Activations& a, int i);
  void delta_forward(Activations& a, int i);

  void backward_layers(Activations& a, GradientReadyHook* hook);
  LmHeadLoss lm_head(const Activations& a) const;  // forward only, grad_scale 1
  // Points layers_, embedding_ and norm_f_ at the buffers.
  void place_weights();

  ParamLayout layout_;
  Backend& be_;
  ActivationMemory memory_;
  float* params_ = nullptr;
  float* grads_ = nullptr;
  Act weights_;  // compute copy; aliases params_ when activations are fp32 and there is a master
  float* exact_ = nullptr;  // without a master only
  std::vector<ExactSpan> exact_spans_;
  int64_t exact_floats_ = 0;
  std::vector<LayerWeights> layers_;
  const float* embedding_ = nullptr;
  const float* norm_f_ = nullptr;
  std::vector<std::unique_ptr<Activations>> acts_;  // one per (batch, seqlen) seen
};

}  // namespace mamba
