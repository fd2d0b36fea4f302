// Generation benchmark: the recurrent mode (model/recurrent.h) on a model from configs/ with
// random weights (design.md §1 initialisation), as `mamba generate` and the trainer's samples run
// it. A batch of random prompts is prefilled (one parallel forward that keeps the final states),
// then new tokens are decoded greedily on the device (argmax fed back without a host round trip; on
// CUDA each token's step is one CUDA graph replay). Prints one JSON line: prefill ms, decode
// tokens/s (batch x new tokens / decode seconds) and ms per decoded token, each the median of
// --repeats runs after one warm-up run.
//   bench_generate [--model tiny|130m|370m|790m|1.4b|2.8b | --config FILE] [key=value ...]
//                  [--batch B] [--prompt 128] [--tokens 256] [--device auto|cpu|cuda]
//                  [--precision fp32|bf16] [--repeats 3] [--graphs 1|0] [--profile 0|1]
// --device auto takes the GPU when one is visible; --precision defaults to bf16 on the GPU and
// fp32 on the CPU. --graphs 0 launches each step's kernels one by one instead of replaying a
// CUDA graph, to measure what the graph gains. --profile 1 then times each op of one decode step
// on its own (bench/op_profile.h: medians over 5 steps) and prints a second JSON line, "bench":
// "generate_profile", with each op's label, calls per step, median microseconds a call and
// milliseconds per step.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "bench_setup.h"
#include "model/mamba_lm.h"
#include "model/recurrent.h"
#include "op_profile.h"
#include "train/device.h"
#include "train/experiment_config.h"
#include "util/rng.h"

namespace fs = std::filesystem;

using bench::median;
using bench::seconds_since;

namespace {

// Times each op of one decode step (greedy: argmax, then the forward), ops run one by one, over
// kSteps steps after a prompt of one token.
void print_profile(bench::OpTimingBackend& timing, mamba::MambaLM& model, int batch,
                   const std::string& config) {
  constexpr int kSteps = 5;
  mamba::RecurrentLM rec(model, batch, false);
  const std::vector<int32_t> first(batch, 0);
  rec.prefill(first.data(), 1);
  rec.step_greedy(1, nullptr);  // warm-up: the GEMMs' plans
  timing.profile(true);
  for (int s = 0; s < kSteps; ++s) rec.step_greedy(1, nullptr);
  timing.profile(false);
  const bench::OpsSummary ops = bench::summarize_ops(timing, kSteps);
  std::printf(
      "{\"bench\": \"generate_profile\", \"config\": \"%s\", \"batch\": %d, \"ops_ms_per_step\": "
      "%.4f, \"ops\": %s}\n",
      config.c_str(), batch, ops.ms_per_step, ops.json.c_str());
}

}  // namespace

int main(int argc, char** argv) try {
  const int batch = std::stoi(bench::flag(argc, argv, "--batch", "1"));
  const int prompt_len = std::stoi(bench::flag(argc, argv, "--prompt", "128"));
  const int new_tokens = std::stoi(bench::flag(argc, argv, "--tokens", "256"));
  const int repeats = std::stoi(bench::flag(argc, argv, "--repeats", "3"));
  if (batch < 1 || prompt_len < 1 || new_tokens < 1 || repeats < 1) {
    mamba::throw_error("bench_generate: --batch, --prompt, --tokens and --repeats must be >= 1");
  }
  const std::string device = bench::flag(argc, argv, "--device", "auto");
  const bool gpu = device == "cuda" || (device == "auto" && mamba::cuda_available());
  std::vector<std::string> overrides = bench::overrides(argc, argv);
  overrides.insert(overrides.begin(), {"train.device=" + device,
                                       "train.precision=" + bench::flag(argc, argv, "--precision",
                                                                        gpu ? "bf16" : "fp32")});
  const mamba::ExperimentConfig cfg =
      mamba::load_experiment_config(bench::config_path(argc, argv, "bench_generate"), overrides);
  const std::unique_ptr<mamba::Backend> device_backend = mamba::make_backend(cfg, 0);
  // Forwards every call to the device's backend; times the step's ops only while profiling.
  bench::OpTimingBackend timing(*device_backend);
  mamba::Backend* backend = &timing;
  mamba::MambaLM model(cfg.model, *backend);
  {
    std::vector<float> params(model.layout().total());
    mamba::init_params(model.layout(), params.data(), 1);
    model.upload_params(params);
  }
  std::vector<int32_t> prompts(int64_t(batch) * prompt_len);
  mamba::Rng rng(2);
  for (int32_t& t : prompts) t = int32_t(rng.below(uint64_t(cfg.model.vocab_size)));

  const bool graphs = bench::flag(argc, argv, "--graphs", "1") == "1";
  mamba::RecurrentLM rec(model, batch, graphs);
  std::vector<int32_t> out(int64_t(new_tokens) * batch);
  std::vector<double> prefill_s, decode_s;
  for (int r = 0; r <= repeats; ++r) {  // run 0 warms up (and records the CUDA graphs)
    rec.reset(batch);
    backend->synchronize();
    auto t0 = std::chrono::steady_clock::now();
    rec.prefill(prompts.data(), prompt_len);
    backend->synchronize();
    const double prefill = seconds_since(t0);
    t0 = std::chrono::steady_clock::now();
    rec.step_greedy(new_tokens, out.data());  // returns with the tokens on the host
    const double decode = seconds_since(t0);
    if (r == 0) continue;
    prefill_s.push_back(prefill);
    decode_s.push_back(decode);
  }
  const double decode = median(decode_s);
  std::printf(
      "{\"bench\": \"generate\", \"config\": \"%s\", \"device\": \"%s\", \"act_bytes\": %zu, "
      "\"params\": %lld, \"graphs\": %d, \"batch\": %d, \"prompt\": %d, \"new_tokens\": %d, "
      "\"prefill_ms\": "
      "%.2f, \"decode_tokens_per_s\": %.1f, \"ms_per_token\": %.3f, \"peak_gib\": %.2f}\n",
      fs::path(cfg.source).stem().c_str(), backend->name().c_str(), backend->act_bytes(),
      (long long)model.layout().total(), int(graphs), batch, prompt_len, new_tokens,
      1000.0 * median(prefill_s), double(batch) * new_tokens / decode, 1000.0 * decode / new_tokens,
      backend->peak_memory() / double(1ull << 30));
  if (bench::flag(argc, argv, "--profile", "0") == "1") {
    print_profile(timing, model, batch, fs::path(cfg.source).stem().string());
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "%s\n", e.what());
  return 2;
}
