// The Mamba language model (DESIGN §1) with a hand-written backward pass, on the CPU kernels.
// Data flow of one training step, every saved tensor named in Activations:
//   residual_0 = embed(inputs)
//   layer i:  residual_i = hidden_{i-1} + residual_{i-1};  normed = RMSNorm(residual_i) * w
//             xz = normed @ W_in^T;  xc = SiLU(conv(x));  xdbl = xc @ W_x^T = [dt | B | C]
//             delta = dt @ W_dt^T;  y = scan(xc, delta + b_dt, A, B, C, D, z);  hidden_i = y @ W_out^T
//   head:     residual_f = hidden + residual;  normed_f = RMSNorm(residual_f) * w_f;
//             logits = normed_f @ E^T (tied embedding), cross-entropy, in chunks of tokens so the
//             logits of the whole batch never exist at once.
// Backward runs the same steps in reverse. Because residual_i feeds both the next layer's add and
// its own norm, one gradient stream dres carries d(residual) == d(hidden) between layers.
#pragma once
#include <cstdint>
#include <vector>

#include "model/params.h"

namespace mamba {

// What forward saves for backward, for one (batch, seqlen).
struct Activations {
  struct Layer {
    std::vector<float> residual;  // [T, d_model] input of this layer's norm (fp32 stream)
    std::vector<float> normed;    // [T, d_model]
    std::vector<float> rstd;      // [T]
    std::vector<float> xz;        // [T, 2 * d_inner] in_proj output, x then z
    std::vector<float> xc;        // [T, d_inner] SiLU(conv(x)), the scan's u
    std::vector<float> xdbl;      // [T, rank + 2 * d_state] x_proj output: dt | B | C
    std::vector<float> delta;     // [T, d_inner] dt_proj output before bias and softplus
    std::vector<float> y;         // [T, d_inner] gated scan output, out_proj's input
  };
  Activations(const ModelConfig& c, int batch, int seqlen);

  int batch, seqlen;
  int64_t T;
  std::vector<Layer> layers;
  std::vector<float> residual_f, normed_f, rstd_f;  // the final norm
  std::vector<float> hidden;                       // [T, d_model] output of the latest layer
  std::vector<float> last_state;                   // [batch, d_inner, d_state] scratch
};

class MambaLM {
 public:
  explicit MambaLM(const ModelConfig& config);

  const ModelConfig& config() const { return layout_.config(); }
  const ParamLayout& layout() const { return layout_; }

  // Mean cross-entropy of targets given inputs (both [batch, seqlen] token ids), no gradients.
  // When logits_out is given it receives all logits [batch * seqlen, padded_vocab].
  double evaluate(const int32_t* inputs, const int32_t* targets, int batch, int seqlen,
                  float* logits_out = nullptr);
  // Forward and backward: returns the mean loss and ADDS grad_scale * d(loss)/d(params) to grads
  // (so micro-batches of gradient accumulation sum into one buffer; zero it between steps).
  double forward_backward(const int32_t* inputs, const int32_t* targets, int batch, int seqlen,
                          float grad_scale);

  std::vector<float> params;  // ParamLayout order
  std::vector<float> grads;   // same layout

 private:
  Activations& activations(int batch, int seqlen);
  void forward_layers(Activations& a, const int32_t* inputs);
  void backward_layers(Activations& a, const int32_t* inputs, std::vector<float>& dres);

  ParamLayout layout_;
  std::vector<Activations> acts_;  // at most one per (batch, seqlen) shape seen
};

}  // namespace mamba
