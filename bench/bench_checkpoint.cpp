// Checkpoint benchmark: what checkpoints cost a run, through the Trainer a run uses. Prints one
// JSON line with
//   first_step_fresh_s    construction (backend, model, init, data) to the end of the first step,
//                         of which construct_fresh_s is the construction
//   init_s                the weights' initialisation alone, on the backend's device
//   stall_s               how long each save() held training (median), and save_write_s, the
//                         time each checkpoint took to be complete on disk (median)
//   step_s, step_during_write_s  median step time without a write in flight and with one
//   load_s, load_gb_per_s the checkpoint's verified load into device buffers, as a resume does
//   first_step_resumed_s  construction resuming from that checkpoint to the end of the first step
//   peak_rss_gib_*        the host's peak resident memory during start, saves, load and resume
//                         (the peak is reset between phases through /proc/self/clear_refs)
//   bench_checkpoint [--model tiny|130m|370m|790m|1.4b|2.8b | --config FILE] [key=value ...]
//                    [--device cpu|cuda] [--async auto|true|false] [--saves N] [--between K]
//                    [--dir DIR]
// The device defaults to the GPU when there is one; --dir holds the checkpoints (default: a
// folder in the temporary directory, removed at the end). Under mpirun every process takes part in
// each save and load (each writes its share; with dist.shard_optimizer=true each loads its own
// slices of the moments) and rank 0 prints the line, with its own peak memory.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "bench_setup.h"
#include "dist/communicator.h"
#include "train/device.h"
#include "train/parallel_checkpoint.h"
#include "train/trainer.h"
#include "util/error.h"
#include "util/host_memory.h"
#include "util/rng.h"

using bench::median;
using bench::seconds_since;

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// The process's peak resident memory since the last reset_peak_rss(), in GiB (VmHWM).
double peak_rss_gib() {
  return double(mamba::peak_resident_memory()) / double(1ull << 30);
}

void reset_peak_rss() {
  std::ofstream("/proc/self/clear_refs") << "5";
}

uint64_t bytes_under(const fs::path& dir) {
  uint64_t total = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) total += e.file_size();
  }
  return total;
}

}  // namespace

int main(int argc, char** argv) try {
  mamba::Communicator& comm = mamba::mpi_world();
  const int saves = std::stoi(bench::flag(argc, argv, "--saves", "3"));
  const int between = std::stoi(bench::flag(argc, argv, "--between", "3"));
  if (saves < 1 || between < 1) mamba::throw_error("bench_checkpoint: --saves and --between >= 1");
  std::vector<std::string> overrides = bench::overrides(argc, argv);
  const std::string device =
      bench::flag(argc, argv, "--device", mamba::cuda_available() ? "cuda" : "cpu");
  const fs::path scratch = bench::flag(
      argc, argv, "--dir", (fs::temp_directory_path() / "mamba_bench_checkpoint").string());
  const bool own_scratch = bench::flag(argc, argv, "--dir", "").empty();
  const std::string shard = (scratch / "data" / "random-0000.h5").string();
  const fs::path ckpt = scratch / "ckpt";
  const int steps = 1 + saves * between + 2;
  overrides.insert(
      overrides.begin(),
      {"train.device=" + device,
       "train.precision=" + std::string(device == "cuda" ? "bf16" : "fp32"),
       "train.global_batch=null", "train.grad_accum=1", "train.tokens=null",
       "train.steps=" + std::to_string(steps + 1), "optim.warmup=0", "data.train=" + shard,
       "data.val=" + shard, "data.tokenizer=", "log.eval_interval=0", "log.sample_interval=0",
       "checkpoint.interval=0", "checkpoint.keep_last=1",
       "checkpoint.async=" + bench::flag(argc, argv, "--async", "auto"),
       "checkpoint.dir=" + ckpt.string()});
  std::vector<std::string> fresh = overrides, resumed = overrides;
  fresh.push_back("checkpoint.resume=none");
  resumed.push_back("checkpoint.resume=auto");
  const mamba::ExperimentConfig fresh_cfg =
      mamba::load_experiment_config(bench::config_path(argc, argv, "bench_checkpoint"), fresh);
  const mamba::ExperimentConfig resumed_cfg =
      mamba::load_experiment_config(bench::config_path(argc, argv, "bench_checkpoint"), resumed);
  const bool leader = comm.rank() == 0;
  // Rank 0 prepares the folder and the data; the others wait for it.
  if (leader) {
    fs::remove_all(ckpt);
    fs::create_directories(fs::path(shard).parent_path());
    bench::write_random_shard(
        shard, fresh_cfg.model.vocab_size,
        fresh_cfg.global_batch(comm.world()) * int64_t(steps + 2) * (fresh_cfg.data.seq_len + 1));
  }
  comm.allreduce_sum(0.0);

  reset_peak_rss();
  auto t0 = Clock::now();
  std::vector<double> stall, write, step, step_during_write;
  std::string backend_name;
  bool async = false;
  int64_t params = 0;
  double fresh_s = 0, construct_s = 0, rss_start = 0, rss_save = 0;
  {
    mamba::Trainer trainer(fresh_cfg, comm);
    construct_s = seconds_since(t0);
    trainer.train_step();
    fresh_s = seconds_since(t0);
    rss_start = peak_rss_gib();
    backend_name = trainer.backend().name();
    params = trainer.model().layout().total();
    async = trainer.async_saves();
    reset_peak_rss();
    for (int s = 0; s < saves; ++s) {
      // Each save finds no write in flight, so stall_s is the snapshot alone; a run whose
      // checkpoint interval is shorter than save_write_s would also wait for the previous write.
      // One checkpoint on disk at a time (2.8B's is 34 GB).
      for (const auto& e : fs::directory_iterator(ckpt)) {
        if (leader && e.path().filename().string().rfind("step_", 0) == 0) {
          fs::remove_all(e.path());
        }
      }
      trainer.save();
      stall.push_back(trainer.last_save_stall_seconds());
      for (int k = 0; k < between; ++k) step_during_write.push_back(trainer.train_step().seconds);
      trainer.wait_for_saves();
      write.push_back(trainer.last_save_write_seconds());
      step.push_back(trainer.train_step().seconds);
    }
    rss_save = peak_rss_gib();
  }
  const std::string path = mamba::latest_checkpoint(ckpt.string());
  const double gb = double(bytes_under(path)) / 1e9;

  reset_peak_rss();
  double load_s = 0, init_s = 0;
  {
    // As a resume loads: streamed into three device buffers.
    const auto backend = mamba::make_backend(resumed_cfg, 0);
    const mamba::ParamLayout layout(resumed_cfg.model);
    const size_t bytes = size_t(layout.total()) * sizeof(float);
    float* buffers[] = {static_cast<float*>(backend->allocate(bytes)),
                        static_cast<float*>(backend->allocate(bytes)),
                        static_cast<float*>(backend->allocate(bytes))};
    t0 = Clock::now();
    mamba::init_params(layout, buffers[0], uint64_t(resumed_cfg.train.seed), *backend);
    backend->synchronize();
    init_s = seconds_since(t0);
    mamba::TrainerState state;
    const mamba::CheckpointSink upload = [&](int tensor, int64_t at, const float* values,
                                             int64_t n) {
      backend->upload(buffers[tensor] + at, values, size_t(n) * sizeof(float));
    };
    comm.allreduce_sum(0.0);
    t0 = Clock::now();
    if (comm.world() > 1 && resumed_cfg.dist.shard_optimizer) {
      const mamba::ShardMap map(layout.total(), comm.world(), comm.rank(),
                                int64_t(resumed_cfg.dist.bucket_mb * (1 << 20) / sizeof(float)));
      mamba::load_checkpoint_sharded(comm, path, layout, map, upload, state);
    } else {
      mamba::load_checkpoint(path, layout, upload, state);
    }
    backend->synchronize();
    load_s = seconds_since(t0);
    for (float* b : buffers) backend->release(b);
  }
  const double rss_load = peak_rss_gib();

  reset_peak_rss();
  t0 = Clock::now();
  {
    mamba::Trainer trainer(resumed_cfg, comm);
    trainer.train_step();
  }
  const double resumed_s = seconds_since(t0);
  const double rss_resume = peak_rss_gib();
  comm.allreduce_sum(0.0);
  if (own_scratch && leader) fs::remove_all(scratch);
  if (!leader) return 0;

  std::printf(
      "{\"bench\": \"checkpoint\", \"config\": \"%s\", \"device\": \"%s\", \"world\": %d, "
      "\"params\": %lld, "
      "\"async\": %s, \"checkpoint_gb\": %.3f, \"first_step_fresh_s\": %.3f, "
      "\"construct_fresh_s\": %.3f, \"init_s\": %.3f, "
      "\"stall_s\": %.4f, \"stall_max_s\": %.4f, \"save_write_s\": %.3f, "
      "\"save_gb_per_s\": %.3f, \"step_s\": %.4f, \"step_during_write_s\": %.4f, "
      "\"load_s\": %.3f, \"load_gb_per_s\": %.3f, \"first_step_resumed_s\": %.3f, "
      "\"peak_rss_gib_start\": %.3f, \"peak_rss_gib_saving\": %.3f, \"peak_rss_gib_loading\": "
      "%.3f, \"peak_rss_gib_resume\": %.3f}\n",
      fs::path(fresh_cfg.source).stem().c_str(), backend_name.c_str(), comm.world(),
      (long long)params, async ? "true" : "false", gb, fresh_s, construct_s, init_s, median(stall),
      *std::max_element(stall.begin(), stall.end()), median(write), gb / median(write),
      median(step), median(step_during_write), load_s, gb / load_s, resumed_s, rss_start, rss_save,
      rss_load, rss_resume);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "%s\n", e.what());
  return 2;
}
