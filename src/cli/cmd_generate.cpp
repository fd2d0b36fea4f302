// `mamba generate CHECKPOINT`: continue a prompt with the recurrent mode of a trained model, on
// the GPU when one is visible.
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "cli/args.h"
#include "cli/commands.h"
#include "data/tokenizer.h"
#include "model/recurrent.h"
#include "train/checkpoint.h"
#include "train/device.h"
#include "train/experiment_config.h"
#include "util/error.h"
#include "util/rng.h"

namespace mamba::cli {

const char* const kUsage =
    "usage: mamba generate CHECKPOINT [--prompt TEXT] [--tokens N] [--temperature T]\n"
    "                      [--top-k K] [--seed S] [--tokenizer SPEC]\n"
    "CHECKPOINT is a checkpoint directory or a run directory (its newest checkpoint).\n"
    "Temperature 0 is greedy; top-k 0 samples from the whole vocabulary. The tokenizer\n"
    "defaults to the one in the checkpoint's config (data.tokenizer). Runs on the GPU when\n"
    "one is visible (in the checkpoint's train.precision), else on the CPU.\n";

int generate(int argc, char** argv) {
  const Args a = parse_args("generate", argc, argv,
                            {"prompt", "tokens", "temperature", "top-k", "seed", "tokenizer"});
  if (const auto status = usage_exit(a, 1, kUsage)) return *status;
  const std::string ckpt = resolve_checkpoint(a.positional[0]);
  ExperimentConfig cfg = checkpoint_experiment_config(ckpt);
  // Generate where this machine can, not where the checkpoint was trained.
  cfg.train.device = Device::Auto;
  if (!cuda_available()) cfg.train.precision = Precision::Fp32;
  const std::string spec = a.get("tokenizer", cfg.data.tokenizer);
  if (spec.empty()) {
    throw_error("mamba generate: ", ckpt, " names no tokenizer (data.tokenizer): pass --tokenizer");
  }
  const auto tok = load_tokenizer(spec);
  const std::unique_ptr<Backend> backend = make_backend(cfg, 0);
  MambaLM model(cfg.model, *backend);
  std::vector<float> params(model.layout().total());
  load_checkpoint_weights(ckpt, model.layout(), params.data());
  model.upload_params(params);

  const std::string prompt = a.get("prompt", "");
  std::vector<int32_t> ids;
  tok->encode(prompt, ids);
  if (ids.empty()) ids.push_back(tok->eot_id());
  const SamplerSettings sampling{float(a.get_double("temperature", 0.8, 0.0, 100.0)),
                                 a.get_int("top-k", 40, 0, cfg.model.padded_vocab())};
  Rng rng(uint64_t(a.get_int("seed", 0, 0, INT32_MAX)));
  const std::vector<int32_t> out =
      generate(model, ids, a.get_int("tokens", 200, 1, 1 << 20), tok->eot_id(), sampling, rng);
  std::printf("%s%s\n", prompt.c_str(), tok->decode(out).c_str());
  return 0;
}

}  // namespace mamba::cli
