// Training-step benchmark: forward + backward + clip + AdamW on random tokens held in memory (so
// data loading cannot stall the step). Prints one JSON line per run with ms/step, tokens/s, peak
// memory and MFU (6 * params * tokens/s over the device's dense bf16 peak, where known).
//   bench_train [--model tiny|cpu-baseline|130m|370m|790m|1.4b|2.8b] [--batch B] [--seqlen L]
//               [--device cpu|cuda] [--precision fp32|bf16] [--steps N] [--recompute 0|1]
//               [--comm 1|0] [--bf16-grads 0|1]
// Under mpirun every rank runs the step on its own batch and gradients are averaged as in
// training (NCCL buckets overlapped with backward on GPUs); --comm 0 skips the reduction, to
// measure how much of it the overlap hides. tokens_per_s counts all ranks.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "model/mamba_lm.h"
#include "train/device.h"
#include "train/distributed.h"
#include "train/gradient_reducer.h"
#include "train/optimizer.h"
#include "util/error.h"
#include "util/rng.h"

namespace {

struct Preset {
  int d_model, n_layer, vocab;
};

// The published sizes use GPT-NeoX's vocab; the CPU baseline of the CPU issue uses GPT-2's.
const std::map<std::string, Preset> kPresets = {
    {"tiny", {128, 4, 50257}},   {"cpu-baseline", {256, 4, 50257}}, {"130m", {768, 24, 50277}},
    {"370m", {1024, 48, 50277}}, {"790m", {1536, 48, 50277}},       {"1.4b", {2048, 48, 50277}},
    {"2.8b", {2560, 64, 50277}},
};

std::string flag(int argc, char** argv, const char* name, const std::string& fallback) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (!std::strcmp(argv[i], name)) return argv[i + 1];
  }
  return fallback;
}

}  // namespace

int main(int argc, char** argv) try {
  const std::string model_name = flag(argc, argv, "--model", "cpu-baseline");
  const auto preset = kPresets.find(model_name);
  if (preset == kPresets.end()) mamba::throw_error("bench_train: unknown --model ", model_name);
  const int batch = std::stoi(flag(argc, argv, "--batch", "4"));
  const int seqlen = std::stoi(flag(argc, argv, "--seqlen", "256"));
  const int steps = std::stoi(flag(argc, argv, "--steps", "5"));
  mamba::ExperimentConfig run;
  run.source = "bench_train";
  const std::string device = flag(argc, argv, "--device", "cpu");
  run.train.device = device == "cuda" ? mamba::Device::Cuda : mamba::Device::Cpu;
  run.train.precision =
      flag(argc, argv, "--precision", device == "cuda" ? "bf16" : "fp32") == "bf16"
          ? mamba::Precision::Bf16
          : mamba::Precision::Fp32;
  run.dist.bf16_grads = flag(argc, argv, "--bf16-grads", "0") == "1";
  mamba::Communicator& comm = mamba::mpi_world();
  const auto backend = mamba::make_backend(run, comm.local_rank());
  const bool communicate = flag(argc, argv, "--comm", "1") == "1";

  mamba::ModelConfig c;
  c.d_model = preset->second.d_model;
  c.n_layer = preset->second.n_layer;
  c.vocab_size = preset->second.vocab;
  const bool recompute = flag(argc, argv, "--recompute", "0") == "1";
  mamba::MambaLM model(c, *backend, recompute);
  std::vector<float> params(model.layout().total());
  mamba::init_params(model.layout(), params.data(), 0);
  model.upload_params(params);
  mamba::AdamW opt(model.layout(), *backend, mamba::AdamWSettings{});
  const auto reducer = mamba::make_gradient_reducer(run, comm, model);
  mamba::Rng rng(1 + comm.rank());
  std::vector<int32_t> inputs(int64_t(batch) * seqlen), targets(inputs.size());
  for (auto& t : inputs) t = int32_t(rng.below(c.vocab_size));
  for (auto& t : targets) t = int32_t(rng.below(c.vocab_size));

  std::vector<double> ms;
  for (int s = 0; s < steps + 2; ++s) {
    backend->synchronize();
    const auto t0 = std::chrono::steady_clock::now();
    model.zero_grads();
    model.forward_backward(inputs.data(), targets.data(), batch, seqlen, 1.0f,
                           communicate ? reducer.get() : nullptr);
    if (communicate) reducer->finish();
    mamba::clip_grad_norm(*backend, model.grads(), model.layout().total(), 1.0f);
    opt.step(model.params(), model.grads(), 1e-4f);
    model.params_updated();
    backend->synchronize();
    const auto t1 = std::chrono::steady_clock::now();
    if (s >= 2) ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  const double median = ms[ms.size() / 2];
  const double tokens_per_s = double(batch) * seqlen * comm.world() / (median / 1000.0);
  if (comm.rank() != 0) return 0;
  const double peak = backend->peak_flops();
  const double mfu =
      peak > 0 ? 6.0 * double(model.layout().total()) * tokens_per_s / comm.world() / peak : -1.0;
  std::printf(
      "{\"bench\": \"train_step\", \"model\": \"%s\", \"device\": \"%s\", \"world\": %d, "
      "\"comm\": %d, \"bf16_grads\": %d, \"act_bytes\": %zu, "
      "\"params\": %ld, \"batch\": %d, \"seqlen\": %d, \"recompute\": %d, \"ms_per_step\": %.2f, "
      "\"tokens_per_s\": %.0f, \"peak_gib\": %.2f, \"mfu\": %.4f}\n",
      model_name.c_str(), backend->name().c_str(), comm.world(), int(communicate),
      int(run.dist.bf16_grads), backend->act_bytes(), long(model.layout().total()), batch, seqlen,
      int(recompute), median, tokens_per_s, backend->peak_memory() / double(1ull << 30), mfu);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "%s\n", e.what());
  return 2;
}
