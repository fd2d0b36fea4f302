// CPU baseline: one training step (forward + backward + clip + AdamW) of a d_model 256, 4-layer,
// GPT-2-vocab model at batch 4 x seqlen 256. Prints one JSON line.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "model/mamba_lm.h"
#include "train/optimizer.h"
#include "util/rng.h"

int main() {
  mamba::ModelConfig c;
  c.d_model = 256;
  c.n_layer = 4;
  c.vocab_size = 50257;
  const int batch = 4, seqlen = 256, steps = 5;
  const auto backend = mamba::make_cpu_backend();
  mamba::MambaLM model(c, *backend);
  std::vector<float> params(model.layout().total());
  mamba::init_params(model.layout(), params.data(), 0);
  model.upload_params(params);
  mamba::AdamW opt(model.layout(), *backend, mamba::AdamWSettings{});
  mamba::Rng rng(1);
  std::vector<int32_t> tokens(batch * (seqlen + 1));
  for (auto& t : tokens) t = int32_t(rng.below(c.vocab_size));
  std::vector<int32_t> inputs, targets;
  for (int b = 0; b < batch; ++b) {
    const int32_t* row = tokens.data() + b * (seqlen + 1);
    inputs.insert(inputs.end(), row, row + seqlen);
    targets.insert(targets.end(), row + 1, row + seqlen + 1);
  }
  std::vector<double> ms;
  for (int s = 0; s < steps + 1; ++s) {
    const auto t0 = std::chrono::steady_clock::now();
    model.zero_grads();
    model.forward_backward(inputs.data(), targets.data(), batch, seqlen, 1.0f);
    mamba::clip_grad_norm(*backend, model.grads(), model.layout().total(), 1.0f);
    opt.step(model.params(), model.grads(), 1e-3f);
    model.params_updated();
    const auto t1 = std::chrono::steady_clock::now();
    if (s > 0) ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  const double median = ms[ms.size() / 2];
  std::printf(
      "{\"bench\": \"cpu_train_step\", \"d_model\": %d, \"n_layer\": %d, \"vocab\": %d, "
      "\"batch\": %d, \"seqlen\": %d, \"threads\": %d, \"params\": %ld, \"ms_per_step\": %.1f, "
      "\"tokens_per_s\": %.0f}\n",
      c.d_model, c.n_layer, c.padded_vocab(), batch, seqlen, omp_get_max_threads(),
      long(model.layout().total()), median, batch * seqlen / (median / 1000.0));
  return 0;
}
