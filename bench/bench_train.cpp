// Training-step benchmark: Trainer::train_step() (forward + backward + all-reduce + clip + AdamW),
// the step a training run takes, on a model from configs/, fed by a shard of random tokens
// written to a temporary folder. Prints one JSON line with ms/step, tokens/s, peak memory and MFU
// (6 * params * tokens/s over the device's dense bf16 peak, where known). peak_gib is rank 0's
// Backend::peak_memory(): on a GPU everything the process took on it, NCCL's buffers included
// (outside_gib: the part taken outside the backend's allocations, NCCL's above all;
// activation_gib: the activation arena's part); on the CPU the process's peak resident memory.
//   bench_train [--model tiny|130m|370m|790m|1.4b|2.8b | --config FILE] [key=value ...]
//               [--batch B] [--seqlen L] [--device cpu|cuda] [--precision fp32|bf16]
//               [--steps N] [--recompute 0|1] [--keep-inputs 0|1] [--comm 1|0] [--bf16-grads 0|1]
//               [--hierarchical 0|1] [--shard-optimizer 0|1] [--peer-copies 0|1] [--tune-gemms 0|1]
//               [--profile-layers 0|1] [--profile-ops 0|1]
// --model NAME reads configs/mamba-NAME.yaml (or configs/NAME.yaml); key=value overrides any key
// (e.g. model.d_model=256 for the CPU baseline: --model tiny model.d_model=256). Under mpirun
// every rank runs the step on its own rows; --comm 0 skips the reduction, to measure how much of
// it the overlap hides; --hierarchical 1 reduces by node (dist.hierarchical); --shard-optimizer 1
// splits the AdamW state among the ranks (ZeRO-1) and peak_gib shows what that saves;
// --peer-copies 1 averages the gradients by the GPUs' copy engines (dist.peer_copies); --tune-gemms
// 1 times the GEMM algorithms (train.tune_gemms) in the warm-up steps. tokens_per_s
// counts all ranks. --profile-layers 1 adds what scripts/project_scaling.py needs
// (bench/layer_profile.h): a profile of forward and of every gradient slice's backward, the bucket
// size, and the step time measured again without the reduction. The profile runs first, on a
// model of its own that it frees; on the CPU, where the peak is the process's resident high-water
// mark, peak_gib then includes that model too. --profile-ops 1 adds where the time of a step goes,
// op by op (bench/op_profile.h: each op timed on its own, so launch gaps and the reduction are
// not in it), also measured first on a model of its own: "ops" (label, calls per step, median
// microseconds a call, milliseconds per step) and their sum, "ops_ms_per_step".
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "bench_setup.h"
#include "dist/communicator.h"
#include "layer_profile.h"
#include "op_profile.h"
#include "step_model.h"
#include "train/device.h"
#include "train/optimizer.h"
#include "train/trainer.h"
#include "util/error.h"

namespace fs = std::filesystem;

namespace {

// Each op of a training step on one process timed on its own: forward and backward, the
// gradient norm, AdamW (which clips as it reads the gradients) writing the compute copy. Medians
// over kSteps steps after two warm-up steps, as the members of a JSON object.
std::string profile_ops(const mamba::ExperimentConfig& cfg, mamba::Communicator& comm) {
  constexpr int kSteps = 3;
  std::unique_ptr<mamba::Backend> device = mamba::make_backend(cfg, comm.local_rank());
  bench::OpTimingBackend timing(*device);
  bench::StepModel m(cfg, timing);
  mamba::AdamW adamw(m.model.layout(), timing,
                     mamba::AdamWSettings{float(cfg.optim.beta1), float(cfg.optim.beta2),
                                          float(cfg.optim.eps), float(cfg.optim.weight_decay)});
  const auto step = [&] {
    m.model.zero_grads();
    m.forward_backward();
    const double norm = mamba::grad_norm(timing, m.model.grads(), m.model.layout().total());
    adamw.step(m.model.params(), m.model.grads(), float(cfg.optim.lr), m.model.compute_copy(),
               mamba::clip_coefficient(norm, float(cfg.optim.clip)));
  };
  step();
  step();
  timing.profile(true);
  for (int s = 0; s < kSteps; ++s) step();
  timing.profile(false);
  const bench::OpsSummary ops = bench::summarize_ops(timing, kSteps);
  char buf[64];
  std::snprintf(buf, sizeof buf, "\"ops_ms_per_step\": %.3f, \"ops\": ", ops.ms_per_step);
  return buf + ops.json;
}

}  // namespace

int main(int argc, char** argv) try {
  mamba::Communicator& comm = mamba::mpi_world();
  const int steps = std::stoi(bench::flag(argc, argv, "--steps", "5"));
  std::vector<std::string> overrides = bench::overrides(argc, argv);
  const std::string device = bench::flag(argc, argv, "--device", "cpu");
  const fs::path scratch = fs::temp_directory_path() / "mamba_bench_train";
  const std::string shard = (scratch / "random-0000.h5").string();
  // A 0|1 flag (default 0) as the config key it sets.
  const auto switch_key = [&](const char* flag, const std::string& key) {
    return key + "=" + (bench::flag(argc, argv, flag, "0") == "1" ? "true" : "false");
  };
  overrides.insert(
      overrides.begin(),
      {"train.micro_batch=" + bench::flag(argc, argv, "--batch", "4"),
       "data.seq_len=" + bench::flag(argc, argv, "--seqlen", "256"),
       "train.device=" + device,
       "train.precision=" +
           bench::flag(argc, argv, "--precision", device == "cuda" ? "bf16" : "fp32"),
       switch_key("--recompute", "train.recompute"),
       switch_key("--keep-inputs", "train.keep_layer_inputs"),
       switch_key("--tune-gemms", "train.tune_gemms"),
       switch_key("--bf16-grads", "dist.bf16_grads"),
       switch_key("--hierarchical", "dist.hierarchical"),
       switch_key("--shard-optimizer", "dist.shard_optimizer"),
       switch_key("--peer-copies", "dist.peer_copies"),
       "train.global_batch=null",
       "train.grad_accum=1",
       "train.tokens=null",
       "train.steps=" + std::to_string(steps + 2),
       "optim.warmup=0",
       "data.train=" + shard,
       "data.val=" + shard,
       "data.tokenizer=",
       "log.eval_interval=0",
       "log.sample_interval=0",
       "checkpoint.interval=0",
       "checkpoint.resume=none",
       "checkpoint.dir=" + (scratch / ("run" + std::to_string(comm.rank()))).string()});
  const mamba::ExperimentConfig cfg =
      mamba::load_experiment_config(bench::config_path(argc, argv, "bench_train"), overrides);
  if (comm.rank() == 0) {
    fs::create_directories(scratch);
    const int64_t rows = cfg.global_batch(comm.world()) * int64_t(steps + 3);
    bench::write_random_shard(shard, cfg.model.vocab_size, rows * (cfg.data.seq_len + 1));
  }
  double ready = 0;
  comm.allreduce_sum(ready);  // the shard exists before any rank opens it

  const bool profile = bench::flag(argc, argv, "--profile-layers", "0") == "1";
  std::string extra;
  if (profile) extra = ", " + bench::profile_json(bench::profile_layers(cfg, comm, 3));
  if (bench::flag(argc, argv, "--profile-ops", "0") == "1") extra += ", " + profile_ops(cfg, comm);

  mamba::Trainer trainer(cfg, comm);
  auto median_step_ms = [&](bool communicate) {
    trainer.set_communication(communicate);
    std::vector<double> ms;
    for (int s = 0; s < steps + 2; ++s) {
      const mamba::StepResult r = trainer.train_step();
      if (s >= 2) ms.push_back(1000.0 * r.seconds);  // the first two warm up
    }
    return bench::median(ms);
  };
  const double median = median_step_ms(bench::flag(argc, argv, "--comm", "1") == "1");
  if (profile) {
    char buf[96];
    std::snprintf(buf, sizeof buf, ", \"bucket_mb\": %g, \"ms_per_step_no_comm\": %.2f",
                  cfg.dist.bucket_mb, median_step_ms(false));
    extra = buf + extra;
  }
  const double tokens_per_s = double(trainer.tokens_per_step()) / (median / 1000.0);
  if (comm.rank() != 0) return 0;
  mamba::Backend& backend = trainer.backend();
  const double params = double(trainer.model().layout().total());
  const double peak = backend.peak_flops();
  const double mfu = peak > 0 ? 6.0 * params * tokens_per_s / comm.world() / peak : -1.0;
  std::printf(
      "{\"bench\": \"train_step\", \"config\": \"%s\", \"device\": \"%s\", \"world\": %d, "
      "\"comm\": %d, \"bf16_grads\": %d, \"hierarchical\": %d, \"shard_optimizer\": %d, "
      "\"peer_copies\": %d, \"act_bytes\": %zu, \"params\": "
      "%.0f, \"batch\": %d, "
      "\"seqlen\": %d, \"recompute\": %d, \"keep_inputs\": %d, \"tune_gemms\": %d, "
      "\"ms_per_step\": %.2f, "
      "\"tokens_per_s\": %.0f, "
      "\"peak_gib\": %.2f, \"outside_gib\": %.2f, \"activation_gib\": %.2f, \"mfu\": %.4f%s}\n",
      fs::path(cfg.source).stem().c_str(), backend.name().c_str(), comm.world(),
      bench::flag(argc, argv, "--comm", "1") == "1", int(cfg.dist.bf16_grads),
      int(cfg.dist.hierarchical), int(cfg.dist.shard_optimizer), int(cfg.dist.peer_copies),
      backend.act_bytes(), params, cfg.train.micro_batch, cfg.data.seq_len,
      int(cfg.train.recompute), int(cfg.train.keep_layer_inputs), int(cfg.train.tune_gemms), median,
      tokens_per_s, backend.peak_memory() / double(1ull << 30),
      backend.outside_memory() / double(1ull << 30),
      trainer.model().activation_bytes() / double(1ull << 30), mfu, extra.c_str());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "%s\n", e.what());
  // Under mpirun the other ranks would wait in their next collective until its timeout.
  mamba::mpi_world().abort(2);
}
