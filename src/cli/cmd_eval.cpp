// `mamba eval CHECKPOINT`: validation loss and perplexity of a trained model.
#include <cmath>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/args.h"
#include "cli/commands.h"
#include "data/loader.h"
#include "model/mamba_lm.h"
#include "train/checkpoint.h"
#include "train/device.h"
#include "train/evaluate.h"
#include "train/experiment_config.h"

namespace mamba::cli {

const char* const kUsage =
    "usage: mamba eval CHECKPOINT [--data GLOB] [--batches N] [--micro-batch B] "
    "[--seq-len L]\n"
    "Mean cross-entropy and perplexity over the first N micro-batches of the validation\n"
    "split (default: the checkpoint's data.val, log.eval_batches, train.micro_batch and\n"
    "data.seq_len).\n";

int eval(int argc, char** argv) {
  const Args a = parse_args("eval", argc, argv, {"data", "batches", "micro-batch", "seq-len"});
  if (const auto status = usage_exit(a, 1, kUsage)) return *status;
  const std::string ckpt = resolve_checkpoint(a.positional[0]);
  ExperimentConfig cfg = checkpoint_experiment_config(ckpt);
  // Evaluate where this machine can, not where the checkpoint was trained.
  cfg.train.device = Device::Auto;
  if (!cuda_available()) cfg.train.precision = Precision::Fp32;
  const int micro = a.get_int("micro-batch", cfg.train.micro_batch, 1, 1 << 20);
  const int L = a.get_int("seq-len", cfg.data.seq_len, 1, 1 << 24);
  const int batches = a.get_int("batches", cfg.log.eval_batches, 1, 1 << 30);
  const std::unique_ptr<Backend> backend = make_backend(cfg, 0);
  MambaLM model(cfg.model, *backend);
  std::vector<float> params(model.layout().total());
  load_checkpoint_weights(ckpt, model.layout(), params.data());
  model.upload_params(params);
  TokenLoader val(a.get("data", cfg.data.val), L, cfg.model.vocab_size, micro, 0, 1, 0, false);
  const double loss = mean_loss(model, val, micro, L, batches).value();
  // JSON has no NaN: a non-finite loss prints as null.
  const nlohmann::json result{{"checkpoint", ckpt},
                              {"val_loss", loss},
                              {"val_ppl", std::exp(loss)},
                              {"tokens", int64_t(batches) * micro * L}};
  std::printf("%s\n", result.dump().c_str());
  return 0;
}

}  // namespace mamba::cli
