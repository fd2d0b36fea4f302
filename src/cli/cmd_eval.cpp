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
    "data.seq_len). A data.val mixture also gets val_loss_<name> for each source.\n";

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
  const std::vector<DataSource> sources =
      a.flags.count("data") ? std::vector<DataSource>{{"", a.get("data", ""), 1.0}} : cfg.data.val;
  std::vector<double> losses;
  for (const auto& val :
       open_validation(sources, L, cfg.model.vocab_size, micro, 0, 1, open_file_budget())) {
    losses.push_back(mean_loss(model, *val, micro, L, batches).value());
  }
  const double loss = mixture_mean(sources, losses);
  // JSON has no NaN: a non-finite loss prints as null.
  nlohmann::json result{{"checkpoint", ckpt},
                        {"val_loss", loss},
                        {"val_ppl", std::exp(loss)},
                        {"tokens", int64_t(batches) * micro * L * int64_t(losses.size())}};
  if (is_mixture(sources)) {
    for (size_t s = 0; s < sources.size(); ++s) result["val_loss_" + sources[s].name] = losses[s];
  }
  std::printf("%s\n", result.dump().c_str());
  return 0;
}

}  // namespace mamba::cli
