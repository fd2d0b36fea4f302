// A model of its own for bench_train's profiling passes: the run's config and shapes, weights
// initialised from the run's seed, and one batch of random tokens, on the backend given.
#pragma once
#include <cstdint>
#include <vector>

#include "model/mamba_lm.h"
#include "model/params.h"
#include "train/experiment_config.h"
#include "train/trainer.h"
#include "util/rng.h"

namespace bench {

struct StepModel {
  StepModel(const mamba::ExperimentConfig& cfg, mamba::Backend& backend)
      : model(cfg.model, backend, mamba::activation_memory(cfg.train)),
        batch(cfg.train.micro_batch),
        seqlen(cfg.data.seq_len),
        inputs(size_t(batch) * seqlen),
        targets(inputs.size()) {
    std::vector<float> params(model.layout().total());
    mamba::init_params(model.layout(), params.data(), uint64_t(cfg.train.seed));
    model.upload_params(params);
    mamba::Rng rng(2);
    for (int32_t& t : inputs) t = int32_t(rng.below(uint64_t(cfg.model.vocab_size)));
    for (int32_t& t : targets) t = int32_t(rng.below(uint64_t(cfg.model.vocab_size)));
  }

  // Forward and backward of the batch, adding to the gradients.
  void forward_backward(mamba::GradientReadyHook* hook = nullptr) {
    model.forward_backward(inputs.data(), targets.data(), batch, seqlen, 1.0f, hook);
  }

  mamba::MambaLM model;
  int batch, seqlen;
  std::vector<int32_t> inputs, targets;
};

}  // namespace bench
