// ZeRO-1 (dist.shard_optimizer): the shard map covers the buffer once, a sharded AdamW is the
// whole AdamW cut in pieces, and 2-rank sharded runs (MPI on CPUs; NCCL on 2 GPUs) equal
// unsharded ones, step by step and in their checkpoints, which resume across sharding and
// process counts in both directions.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "cli_runner.h"
#include "dist/shard_map.h"
#include "kernels/backend.h"
#include "model/params.h"
#include "mpi_run_fixture.h"
#include "train/device.h"
#include "train/optimizer.h"
#include "util/rng.h"

namespace mamba {
namespace {

namespace fs = std::filesystem;
using test::contains;
using test::run_mamba;
using test::two_gpus_missing;

TEST(ShardMap, EveryFloatHasOneOwnerAndShardsAreEven) {
  for (int64_t n : {7, 1000, 1001, 1003, 123457}) {
    for (int world : {1, 2, 3, 4}) {
      for (int64_t bucket : {1, 8, 64, 1 << 20}) {
        if (n < world) continue;
        const std::string where = "n " + std::to_string(n) + " world " + std::to_string(world) +
                                  " bucket " + std::to_string(bucket);
        std::vector<int> owners(n, 0);
        const ShardMap map(n, world, 0, bucket);
        for (int q = 0; q < world; ++q) {
          int64_t packed = 0, last_end = 0;
          for (const ShardRange& r : map.ranges(q)) {
            ASSERT_GE(r.begin, last_end) << where;  // buffer order
            ASSERT_EQ(r.packed, packed) << where;   // packed one after another
            for (int64_t i = r.begin; i < r.begin + r.count; ++i) ++owners[i];
            packed += r.count;
            last_end = r.begin + r.count;
          }
          EXPECT_EQ(packed, map.size(q)) << where;
          // Only the tail is uneven: one float at most.
          EXPECT_LE(map.size(0) - map.size(q), 1) << where;
        }
        for (int64_t i = 0; i < n; ++i) ASSERT_EQ(owners[i], 1) << where << " float " << i;
        for (const ShardBucket& b : map.buckets()) {
          const bool tail = b.end == n && n % world != 0;
          if (!tail) {
            EXPECT_EQ(b.end - b.begin, b.slice * world) << where;
          }
          EXPECT_LE(b.slice, std::max<int64_t>(1, bucket / world)) << where;
        }
      }
    }
  }
}

TEST(ShardMap, TooSmallABufferIsRefused) {
  EXPECT_THROW(ShardMap(3, 4, 0, 64), Error);
}

// Three optimizers over the shards of 3 ranks, cut across tensor boundaries, each with its own
// packed fp32 master (a third of the weights), update the weights exactly as one AdamW over the
// whole buffer, writing them into the compute copy, and hold its moments; moments streamed in as
// a checkpoint load gives them land in the right shard.
TEST(ShardedAdamW, ShardsTogetherEqualTheWholeOptimizer) {
  ModelConfig config;
  config.d_model = 16;
  config.n_layer = 2;
  config.vocab_size = 257;
  config.d_state = 4;
  const ParamLayout layout(config);
  const int64_t n = layout.total();
  const auto be = make_cpu_backend();
  std::vector<float> params(n), grads(n);
  Rng rng(7);
  for (float& p : params) p = float(rng.normal());
  const AdamWSettings settings{0.9f, 0.95f, 1e-8f, 0.1f};

  std::vector<float> whole = params;
  AdamW full(layout, *be, settings);
  const int world = 3;
  std::vector<ShardMap> maps;
  std::vector<std::unique_ptr<AdamW>> shards;
  for (int q = 0; q < world; ++q) maps.emplace_back(n, world, q, 300);
  for (int q = 0; q < world; ++q) {
    shards.push_back(std::make_unique<AdamW>(layout, *be, settings, maps[q].ranges()));
    shards.back()->take_master(params.data());
    ASSERT_NE(shards.back()->master(), nullptr);
    EXPECT_EQ(int64_t(shards.back()->download_master().size()), maps[q].size(q));
    EXPECT_LE(maps[q].size(q), n / world + 1);
  }
  EXPECT_EQ(full.master(), nullptr);
  std::vector<float> sharded(n, 0.0f);  // the compute copy the shards write
  for (int step = 0; step < 3; ++step) {
    for (float& g : grads) g = float(rng.normal());
    full.step(whole.data(), grads.data(), 1e-2f);
    for (auto& s : shards) s->step(nullptr, grads.data(), 1e-2f, f32_act(sharded.data()));
  }
  ASSERT_EQ(sharded, whole);
  const std::vector<float> m = full.download_m();
  for (int q = 0; q < world; ++q) {
    const std::vector<float> packed = shards[q]->download_m();
    ASSERT_EQ(int64_t(packed.size()), maps[q].size(q));
    for (const ShardRange& r : maps[q].ranges()) {
      for (int64_t i = 0; i < r.count; ++i) ASSERT_EQ(packed[r.packed + i], m[r.begin + i]);
    }
  }

  AdamW loaded(layout, *be, settings, maps[1].ranges());
  for (int64_t at = 0; at < n; at += 1000) {
    loaded.load_moment(0, at, m.data() + at, std::min<int64_t>(1000, n - at));
  }
  EXPECT_EQ(loaded.download_m(), shards[1]->download_m());
}

using ShardedTraining = test::MpiRunFixture;

TEST_F(ShardedTraining, TwoRanksShardedEqualUnsharded) {
  ASSERT_TRUE(train("plain", "train.micro_batch=2")) << bytes_of(log("plain"));
  ASSERT_TRUE(train("sharded", "train.micro_batch=2 dist.shard_optimizer=true"))
      << bytes_of(log("sharded"));
  EXPECT_TRUE(contains(bytes_of(log("sharded")), "optimizer state sharded over 2 ranks"));
  // Rank 0 holds the fp32 master and the moments of its half of the parameters only.
  ModelConfig config;  // the fixture's model
  config.d_model = 16;
  config.n_layer = 2;
  config.vocab_size = 257;
  config.d_state = 4;
  const int64_t n = ParamLayout(config).total();
  const ShardMap map(n, 2, 0, int64_t(25 * (1 << 20) / sizeof(float)));  // dist.bucket_mb = 25
  EXPECT_LE(map.size(0), n / 2 + 1);
  EXPECT_TRUE(contains(bytes_of(log("sharded")), "fp32 master and moments of " +
                                                     std::to_string(map.size(0)) + " of " +
                                                     std::to_string(n) + " parameters on rank 0"))
      << bytes_of(log("sharded"));
  expect_same_steps("sharded", "plain", 1e-6);
  expect_same_state("sharded", "plain", 1e-6);
}

// Tiny buckets (many reduce-scatters and all-gathers, shards cut inside tensors), gradient
// accumulation, and 3 ranks, whose tail bucket is padded.
TEST_F(ShardedTraining, SmallBucketsAccumulationAndThreeRanksChangeNothing) {
  ModelConfig config;  // the fixture's model, with as many layers as give 3 ranks a tail
  config.d_model = 16;
  config.vocab_size = 257;
  config.d_state = 4;
  for (config.n_layer = 1; ParamLayout(config).total() % 3 == 0; ++config.n_layer) {
  }
  const std::string small = "train.micro_batch=1 dist.bucket_mb=0.0001 ";
  ASSERT_TRUE(train("plain_small", small)) << bytes_of(log("plain_small"));
  ASSERT_TRUE(train("sharded_small", small + "dist.shard_optimizer=true"))
      << bytes_of(log("sharded_small"));
  expect_same_steps("sharded_small", "plain_small", 1e-6);
  expect_same_state("sharded_small", "plain_small", 1e-6);
  const std::string three =
      "train.micro_batch=2 train.global_batch=6 model.n_layer=" + std::to_string(config.n_layer) +
      " ";
  ASSERT_TRUE(train("plain_three", three, "", 3)) << bytes_of(log("plain_three"));
  ASSERT_TRUE(train("sharded_three", three + "dist.shard_optimizer=true", "", 3))
      << bytes_of(log("sharded_three"));
  expect_same_steps("sharded_three", "plain_three", 1e-6);
  expect_same_state("sharded_three", "plain_three", 1e-6);
}

// A checkpoint holds the whole state whatever the sharding: a run stopped at step 4 and resumed
// with the other setting (or rank count) reaches the state of a run never interrupted.
TEST_F(ShardedTraining, CheckpointsMoveBetweenShardedAndUnsharded) {
  ASSERT_EQ(run_mamba("train " + config("one_rank")).status, 0);
  ASSERT_TRUE(train("two_ranks", "train.micro_batch=2")) << bytes_of(log("two_ranks"));
  struct Case {
    const char* name;
    bool first_sharded;
    int resume_ranks;  // 1 or 2
    bool resume_sharded;
    const char* reference;
  };
  const Case cases[] = {
      {"sharded_to_one_rank", true, 1, false, "one_rank"},
      {"sharded_to_sharded", true, 2, true, "two_ranks"},
      {"sharded_to_two_ranks", true, 2, false, "two_ranks"},
      {"unsharded_to_sharded", false, 2, true, "two_ranks"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string shard = " dist.shard_optimizer=";
    ASSERT_TRUE(train(
        c.name, std::string("train.micro_batch=2") + shard + (c.first_sharded ? "true" : "false")))
        << bytes_of(log(c.name));
    fs::remove_all(dir(c.name) + "/step_00000008");
    const std::string resume = shard + (c.resume_sharded ? "true" : "false");
    if (c.resume_ranks == 1) {
      const auto r = run_mamba("train " + config_of(c.name) + resume);
      ASSERT_EQ(r.status, 0) << r.output;
      EXPECT_TRUE(contains(r.output, "resumed from")) << r.output;
    } else {
      ASSERT_TRUE(train(c.name, "train.micro_batch=2" + resume)) << bytes_of(log(c.name));
      EXPECT_TRUE(contains(bytes_of(log(c.name)), "resumed from")) << bytes_of(log(c.name));
    }
    expect_same_steps(c.name, c.reference, 1e-6);
    expect_same_state(c.name, c.reference, 1e-6);
  }
}

// A sharded checkpoint of 2 ranks resumes sharded on 3 (another shard map: every rank takes its
// master and moment slices from the file) and reaches the state of an uninterrupted run; the global
// batch is fixed, so the data are the same.
TEST_F(ShardedTraining, ShardedCheckpointsResumeOnAnotherRankCount) {
  const std::string args = "train.micro_batch=2 train.global_batch=12 ";
  ASSERT_TRUE(train("count_reference", args)) << bytes_of(log("count_reference"));
  const std::string sharded = args + "dist.shard_optimizer=true";
  ASSERT_TRUE(train("two_then_three", sharded)) << bytes_of(log("two_then_three"));
  fs::remove_all(dir("two_then_three") + "/step_00000008");
  ASSERT_TRUE(train("two_then_three", sharded, "", 3)) << bytes_of(log("two_then_three"));
  EXPECT_TRUE(contains(bytes_of(log("two_then_three")), "resumed from"))
      << bytes_of(log("two_then_three"));
  EXPECT_TRUE(contains(bytes_of(log("two_then_three")), "sharded over 3 ranks"));
  expect_same_steps("two_then_three", "count_reference", 1e-5);
  expect_same_state("two_then_three", "count_reference", 1e-5);
}

// The non-finite guard: rank 0's gradients get a NaN at step 3; the reduce-scatter carries it
// into one rank's shard only, the all-reduced norm to every rank, and all of them skip.
TEST_F(ShardedTraining, RanksAgreeToSkipANonFiniteStep) {
  const std::string nan = "MAMBA_TEST_NAN_STEPS=3 ";
  ASSERT_TRUE(train("skip_plain", "train.micro_batch=2", nan)) << bytes_of(log("skip_plain"));
  ASSERT_TRUE(train("skip_sharded", "train.micro_batch=2 dist.shard_optimizer=true", nan))
      << bytes_of(log("skip_sharded"));
  EXPECT_TRUE(contains(bytes_of(log("skip_sharded")), "step 3: loss")) << log("skip_sharded");
  EXPECT_TRUE(all_finite(tensors(dir("skip_sharded") + "/step_00000008/model.safetensors")));
  expect_same_state("skip_sharded", "skip_plain", 1e-6);
}

// Every rank writes its own part of a checkpoint (train/parallel_checkpoint.h): sharded, its
// slices of the moments; unsharded, an even share of each file, synchronously or in the
// background (checkpoint.async). Rank 1 killed in the middle of its part of step 6's save: the
// job ends, step 6 has no visible checkpoint, and the run resumed from step 4 ends with the bytes
// of an uninterrupted run. Rank 1 failing there: the job ends with its error, step 6 invisible.
TEST_F(ShardedTraining, RankKilledMidSaveLeavesNoCheckpointAndResumesExactly) {
  struct Case {
    const char* name;
    const char* args;
    const char* written;
  };
  const Case cases[] = {
      {"sharded", "dist.shard_optimizer=true", "(written by 2 ranks)"},
      {"split", "dist.shard_optimizer=false", "(written by 2 ranks)"},
      {"background", "checkpoint.async=true", "(written in the background by 2 ranks"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string args = std::string("train.micro_batch=2 checkpoint.interval=2 ") + c.args;
    const std::string whole = std::string("whole_") + c.name,
                      killed = std::string("killed_") + c.name,
                      failed = std::string("failed_") + c.name;
    ASSERT_TRUE(train(whole, args)) << bytes_of(log(whole));
    EXPECT_TRUE(contains(bytes_of(log(whole)), std::string("step_00000008 ") + c.written))
        << bytes_of(log(whole));
    EXPECT_FALSE(train(killed, args, "MAMBA_TEST_SAVE_FAULT=kill:1:6 ")) << bytes_of(log(killed));
    EXPECT_TRUE(fs::exists(dir(killed) + "/step_00000004/trainer.json"));
    EXPECT_FALSE(fs::exists(dir(killed) + "/step_00000006"));
    EXPECT_TRUE(fs::exists(dir(killed) + "/step_00000006.tmp"));
    ASSERT_TRUE(train(killed, args)) << bytes_of(log(killed));
    EXPECT_TRUE(contains(bytes_of(log(killed)), "resumed from " + dir(killed) + "/step_00000004"))
        << bytes_of(log(killed));
    EXPECT_FALSE(fs::exists(dir(killed) + "/step_00000006.tmp"));
    expect_same_checkpoint_bytes(killed, whole, 8);
    EXPECT_FALSE(train(failed, args, "MAMBA_TEST_SAVE_FAULT=fail:1:6 ")) << bytes_of(log(failed));
    EXPECT_TRUE(contains(bytes_of(log(failed)), "rank 1 fails in the middle of the save of step 6"))
        << bytes_of(log(failed));
    EXPECT_FALSE(fs::exists(dir(failed) + "/step_00000006"));
    EXPECT_FALSE(fs::exists(dir(failed) + "/step_00000008"));
  }
  // The background writers write what the ranks write synchronously.
  expect_same_checkpoint_bytes("whole_background", "whole_split", 8);
}

TEST_F(ShardedTraining, UnsupportedCombinationsGetOneLineErrors) {
  const std::string cfg = config("bad");
  for (const std::string& args :
       {std::string(" dist.bf16_grads=true"), std::string(" checkpoint.async=true")}) {
    const auto r = run_mamba("train " + cfg + " dist.shard_optimizer=true" + args);
    EXPECT_NE(r.status, 0) << args;
    EXPECT_TRUE(contains(r.output, "dist.shard_optimizer")) << r.output;
    EXPECT_EQ(r.output.find('\n'), r.output.size() - 1) << r.output;
  }
}

// The GPU twins' run: the fixture's model, widened to the CUDA scan's d_state, saving
// synchronously (the asynchronous writer's snapshot would count in the unsharded peak only).
const std::string kGpuRun =
    "train.micro_batch=2 train.device=cuda model.d_model=256 model.d_state=16 "
    "checkpoint.async=false ";

// The GPU twin: NCCL reduce-scatter and all-gather (of the bf16 compute copy, and of the fp32-read
// tensors) on 2 GPUs give the losses and weights of the all-reduce, within bf16 tolerance, and a
// peak memory lower by the half of the fp32 master and moments each GPU no longer holds, less its
// exact buffer (both save synchronously: the asynchronous writer's snapshot would count in the
// unsharded peak only). In bf16, as GPU runs train: in fp32 the unsharded compute copy is the
// master itself, which the sharded model then holds apart, so only 12 x (1 - 1/N) - 4 bytes per
// parameter are saved (this model in fp32 on two H200s: 24.5 MiB, as that predicts). In bf16 it
// saved 78.0 MiB of the whole peak, 76.5 MiB of the framework's own (as predicted). d_model 1024:
// 13.6 M parameters.
TEST_F(ShardedTraining, TwoGpusShardedEqualUnsharded) {
  if (const std::string why = two_gpus_missing(); !why.empty()) GTEST_SKIP() << why;
  const std::string gpu =
      "train.micro_batch=2 train.device=cuda train.precision=bf16 model.d_model=1024 "
      "model.d_state=16 checkpoint.async=false ";
  ASSERT_TRUE(train("gpu_plain", gpu)) << bytes_of(log("gpu_plain"));
  ASSERT_TRUE(train("gpu_sharded", gpu + "dist.shard_optimizer=true"))
      << bytes_of(log("gpu_sharded"));
  expect_same_steps("gpu_sharded", "gpu_plain", 2e-3);
  expect_same_state("gpu_sharded", "gpu_plain", 2e-3);
  ModelConfig config;
  config.d_model = 1024;
  config.n_layer = 2;
  config.vocab_size = 257;
  config.d_state = 16;
  const ParamLayout layout(config);
  double fp32_read = 0.0;
  for (const ParamTensor& t : layout.tensors()) fp32_read += t.fp32_read ? double(t.numel) : 0.0;
  const double saved_gib =
      (12.0 * double(layout.total()) * (1.0 - 1.0 / 2) - 4.0 * fp32_read) / double(1 << 30);
  const std::vector<double> plain = metric("gpu_plain", "mem_gib");
  const std::vector<double> sharded = metric("gpu_sharded", "mem_gib");
  const std::vector<double> plain_own = metric("gpu_plain", "mem_alloc_gib");
  const std::vector<double> sharded_own = metric("gpu_sharded", "mem_alloc_gib");
  ASSERT_FALSE(plain.empty());
  ASSERT_FALSE(sharded.empty());
  ASSERT_FALSE(plain_own.empty());
  ASSERT_FALSE(sharded_own.empty());
  std::printf(
      "[info] peak GiB, whole / the framework's own: unsharded %.4f / %.4f, sharded %.4f / "
      "%.4f; predicted saving %.4f\n",
      plain.back(), plain_own.back(), sharded.back(), sharded_own.back(), saved_gib);
  EXPECT_GT(plain.back() - sharded.back(), 0.9 * saved_gib);
  // The framework's own share of the peak drops by the same bytes: NCCL's buffers are apart.
  EXPECT_GT(plain_own.back() - sharded_own.back(), 0.9 * saved_gib);
}

// The GPU twin of CheckpointsMoveBetweenShardedAndUnsharded: a sharded run on two GPUs stopped at
// step 4 and resumed unsharded reaches the state of an unsharded run never interrupted, and the
// reverse.
TEST_F(ShardedTraining, TwoGpusCheckpointsMoveBetweenShardedAndUnsharded) {
  if (const std::string why = two_gpus_missing(); !why.empty()) GTEST_SKIP() << why;
  const std::string gpu = kGpuRun + "dist.bucket_mb=0.5 dist.shard_optimizer=";
  ASSERT_TRUE(train("gpu_reference", gpu + "false")) << bytes_of(log("gpu_reference"));
  for (const bool first_sharded : {true, false}) {
    const std::string name = first_sharded ? "gpu_sharded_then_not" : "gpu_unsharded_then_sharded";
    SCOPED_TRACE(name);
    ASSERT_TRUE(train(name, gpu + (first_sharded ? "true" : "false"))) << bytes_of(log(name));
    fs::remove_all(dir(name) + "/step_00000008");
    ASSERT_TRUE(train(name, gpu + (first_sharded ? "false" : "true"))) << bytes_of(log(name));
    EXPECT_TRUE(contains(bytes_of(log(name)), "resumed from")) << bytes_of(log(name));
    expect_same_steps(name, "gpu_reference", 2e-3);
    expect_same_state(name, "gpu_reference", 2e-3);
  }
}

}  // namespace
}  // namespace mamba
