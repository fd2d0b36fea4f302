// Mamba's recurrent mode for generation: per layer and sequence a conv state [d_inner, d_conv - 1]
// and an SSM state [d_inner, d_state], advanced one token at a time in O(1) work per token. It
// runs through the model's Backend on the model's device and reads the model's weights where they
// are (no copy). A batch of sequences advances together, one token each per step. Produces the
// same logits as the full (parallel) forward at every position.
//
// Each token's work is one step of queued device ops with fixed buffers, which the backend may
// record once and replay (Backend::make_step_recorder: a CUDA graph per batch size).
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/backend.h"
#include "model/mamba_lm.h"
#include "model/sampler.h"

namespace mamba {

class RecurrentLM {
 public:
  // model must outlive this object. A = -exp(A_log) is taken from the weights at reset: reset
  // after the weights change. record = false runs every step's ops one by one (no CUDA graphs),
  // to measure what recording gains.
  RecurrentLM(MambaLM& model, int batch, bool record = true);
  ~RecurrentLM();
  RecurrentLM(const RecurrentLM&) = delete;
  RecurrentLM& operator=(const RecurrentLM&) = delete;

  int batch() const { return batch_; }
  // Back to the empty prefix (all states zero) for `batch` sequences.
  void reset(int batch);
  // Feeds one token per sequence (host, [batch]); then logits() are for the next ones.
  void step(const int32_t* tokens);
  // Feeds prompts (host, [batch, length], row-major). Right after reset, by one parallel forward
  // over the prompts (the full forward's scan and conv, whose final states it keeps); else one
  // position per step.
  void prefill(const int32_t* prompts, int length);
  // Greedy decoding on the device, n steps: each feeds every sequence the argmax of its current
  // logits (ids below vocab_size). Writes the tokens fed to out (host, [n, batch]) when given,
  // downloaded once at the end.
  void step_greedy(int n, int32_t* out);
  // The current logits [batch, padded_vocab], copied to the host.
  std::vector<float> logits() const;

 private:
  void allocate(int batch);
  void release();
  void forward();  // queues one step from the token ids on the device to the logits
  void prefill_parallel(const int32_t* prompts, int length);
  void norm(float* hidden, float* residual, bool first, const float* weight, Act normed,
            float* rstd, int64_t rows);

  MambaLM& model_;
  Backend& be_;
  int batch_ = 0;
  bool fresh_ = false;         // nothing fed since reset
  std::vector<void*> memory_;  // every buffer below, released together
  int32_t* ids_ = nullptr;     // [batch] the tokens being fed
  float *hidden_ = nullptr, *residual_ = nullptr, *rstd_ = nullptr, *logits_ = nullptr;
  Act normed_, xz_, xc_, xdbl_, delta_, y_;
  float *A_ = nullptr, *conv_state_ = nullptr, *ssm_state_ = nullptr;  // all layers
  std::unique_ptr<StepRecorder> step_recorder_, greedy_recorder_;
  // prefill_parallel's activations [batch * length, ...], kept for the next prompt of that size.
  struct Prefill {
    int64_t tokens = 0;
    std::vector<void*> memory;
    int32_t* ids = nullptr;
    float *hidden = nullptr, *residual = nullptr, *rstd = nullptr;
    Act normed, xz, xc, xdbl, delta, y;
    void* scan_saved = nullptr;
  } prefill_;
};

// Continues prompt (at least one token) with up to max_tokens sampled tokens, stopping early at
// stop_token (not included); returns the new tokens only. Runs on the model's device; sampling
// with temperature > 0 reads each step's logits on the host.
std::vector<int32_t> generate(MambaLM& model, const std::vector<int32_t>& prompt, int max_tokens,
                              int32_t stop_token, const SamplerSettings& sampling, Rng& rng);

}  // namespace mamba
