// Checkpoints written and read by several processes together (train/parallel_checkpoint.h). The
// ranks here are threads of one process sharing a communicator, so that every rank saves exactly
// the state one process saves: the files must come out byte for byte the same, and the sharded
// load must read back each rank's slices. The runs of whole jobs under mpirun are in
// tests/test_zero.cpp (ShardedTraining.*).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cli_runner.h"
#include "dist/shard_map.h"
#include "error_of.h"
#include "kernels/backend.h"
#include "rank_threads.h"
#include "scratch.h"
#include "train/checkpoint_parts.h"
#include "train/checkpoint_writer.h"
#include "train/parallel_checkpoint.h"
#include "util/rng.h"

namespace mamba {
namespace {

namespace fs = std::filesystem;
using test::contains;

// What the ranks of one group share.
struct Group {
  explicit Group(int world) : world(world) {}
  const int world;
  std::mutex mutex;
  std::condition_variable changed;
  int arrived = 0;
  int64_t generation = 0;
  std::string shared;
  double sum = 0.0;
  std::map<std::pair<int, int>, std::deque<std::string>> mail;  // (from, to) -> messages

  void barrier() {
    std::unique_lock<std::mutex> lock(mutex);
    const int64_t mine = generation;
    if (++arrived == world) {
      arrived = 0;
      ++generation;
      changed.notify_all();
    } else {
      changed.wait(lock, [&] { return generation != mine; });
    }
  }
};

// The collectives the checkpoint code uses, between threads.
class ThreadComm final : public Communicator {
 public:
  ThreadComm(Group& group, int rank) : g_(group), rank_(rank) {}
  int rank() const override { return rank_; }
  int world() const override { return g_.world; }
  int local_rank() const override { return rank_; }
  double allreduce_sum(double x) override {
    {
      std::lock_guard<std::mutex> lock(g_.mutex);
      g_.sum += x;
    }
    g_.barrier();
    const double sum = g_.sum;
    g_.barrier();
    if (rank_ == 0) g_.sum = 0.0;
    g_.barrier();
    return sum;
  }
  void broadcast(void* data, size_t bytes, int root) override {
    if (rank_ == root) g_.shared.assign(static_cast<const char*>(data), bytes);
    g_.barrier();
    if (rank_ != root) std::memcpy(data, g_.shared.data(), bytes);
    g_.barrier();
  }
  void send(const void* data, size_t bytes, int dest) override {
    std::lock_guard<std::mutex> lock(g_.mutex);
    g_.mail[{rank_, dest}].emplace_back(static_cast<const char*>(data), bytes);
    g_.changed.notify_all();
  }
  void receive(void* data, size_t bytes, int source) override {
    std::unique_lock<std::mutex> lock(g_.mutex);
    auto& box = g_.mail[{source, rank_}];
    g_.changed.wait(lock, [&] { return !box.empty(); });
    if (box.front().size() != bytes) throw_error("test: a message of the wrong size");
    std::memcpy(data, box.front().data(), bytes);
    box.pop_front();
  }
  int node() const override { return 0; }
  std::unique_ptr<Communicator> split(int, int) override { unused(); }
  void allreduce_mean(float*, int64_t) override { unused(); }
  void reduce_scatter_mean(const float*, float*, int64_t) override { unused(); }
  void allgather(float*, int64_t) override { unused(); }
  void allreduce_sum(uint32_t*, int64_t) override { unused(); }
  void set_timeout(double) override {}
  [[noreturn]] void abort(int) override { std::abort(); }

 private:
  [[noreturn]] static void unused() { throw_error("test: collective not used by checkpoints"); }
  Group& g_;
  const int rank_;
};

// Runs work(comm) on `world` threads; returns each rank's error message ("" when none).
std::vector<std::string> on_ranks(int world, const std::function<void(Communicator&)>& work) {
  Group group(world);
  return test::on_threads(world, [&](int r) {
    ThreadComm comm(group, r);
    work(comm);
  });
}

std::string bytes_of(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

const char* const kFiles[] = {"model.safetensors", "optimizer.safetensors", "trainer.json"};

class ParallelCheckpoint : public test::ScratchDirTest {
 protected:
  ParallelCheckpoint() : layout_(model()), be_(make_cpu_backend()) {
    Rng rng(3);
    for (auto* buffer : {&tensors_.params, &tensors_.exp_avg, &tensors_.exp_avg_sq}) {
      buffer->resize(size_t(layout_.total()));
      for (float& x : *buffer) x = float(rng.normal());
    }
    tensors_.optimizer_steps = 5;
    state_.step = 6;
    state_.rng = {1, 2, 3, 4};
    state_.config_yaml = "x: 1\n";
  }

  // Small enough to write fast, with a parameter count no world of 2 or 3 divides evenly.
  static ModelConfig model() {
    ModelConfig c;
    c.d_model = 16;
    c.vocab_size = 257;
    c.d_state = 4;
    for (c.n_layer = 1; ParamLayout(c).total() % 6 == 0; ++c.n_layer) {
    }
    return c;
  }

  // The shard map of rank r of world with small buckets (ranges cut inside tensors).
  ShardMap shard_map(int world, int r) const { return ShardMap(layout_.total(), world, r, 500); }

  // Rank r's packed slices of a whole buffer.
  static std::vector<float> packed(const ShardMap& map, const std::vector<float>& whole) {
    std::vector<float> out(size_t(map.size(map.rank())));
    for (const ShardRange& r : map.ranges()) {
      std::copy(whole.begin() + r.begin, whole.begin() + r.begin + r.count, out.begin() + r.packed);
    }
    return out;
  }

  // Every rank saves state_ from tensors_ (its own slices of the moments when sharded).
  std::vector<std::string> save_on(int world, bool sharded, const std::string& dir,
                                   const TrainingTensors& tensors, int64_t step) {
    TrainerState state = state_;
    state.step = step;
    return on_ranks(world, [&](Communicator& comm) {
      const ShardMap map = shard_map(world, comm.rank());
      const std::vector<float> m = sharded ? packed(map, tensors.exp_avg) : tensors.exp_avg;
      const std::vector<float> v = sharded ? packed(map, tensors.exp_avg_sq) : tensors.exp_avg_sq;
      // Sharded, a rank holds its slices of the fp32 master only, packed as the moments.
      const std::vector<float> w = sharded ? packed(map, tensors.params) : tensors.params;
      const ParallelSource source{w.data(), m.data(), v.data(), tensors.optimizer_steps};
      EXPECT_EQ(save_checkpoint_parallel(comm, *be_, dir, layout_, sharded ? &map : nullptr, source,
                                         state, 0),
                checkpoint_path(dir, step));
    });
  }

  // What a sharded load of rank r of world put where, per tensor: value by layout index.
  struct Received {
    std::vector<std::map<int64_t, float>> tensors{3};
    int64_t optimizer_steps = -1;
    TrainerState state;
  };

  std::vector<std::string> load_on(int world, const std::string& path,
                                   std::vector<Received>& received) {
    received.assign(size_t(world), {});
    return on_ranks(world, [&](Communicator& comm) {
      Received& got = received[size_t(comm.rank())];
      got.optimizer_steps = load_checkpoint_sharded(
          comm, path, layout_, shard_map(world, comm.rank()),
          [&](int tensor, int64_t at, const float* values, int64_t n) {
            for (int64_t i = 0; i < n; ++i) got.tensors[size_t(tensor)][at + i] = values[i];
          },
          got.state);
    });
  }

  void expect_same_files(const std::string& a, const std::string& b) {
    for (const char* file : kFiles) {
      EXPECT_EQ(bytes_of(a + "/" + file), bytes_of(b + "/" + file)) << a << " " << file;
    }
  }

  // Flips one byte of a file.
  static void flip(const std::string& file, uint64_t at) {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(std::streamoff(at));
    const char c = char(f.get() ^ 0x40);
    f.seekp(std::streamoff(at));
    f.put(c);
  }

  // Each rank's CheckpointDamaged message ("" when none) for a sharded load of path on world ranks.
  std::vector<std::string> sharded_load_errors(const std::string& path, int world) const {
    std::vector<std::string> errors(static_cast<size_t>(world));
    on_ranks(world, [&](Communicator& comm) {
      try {
        TrainerState state;
        load_checkpoint_sharded(
            comm, path, layout_, shard_map(world, comm.rank()),
            [](int, int64_t, const float*, int64_t) {}, state);
      } catch (const CheckpointDamaged& e) {
        errors[size_t(comm.rank())] = e.what();
      }
    });
    return errors;
  }

  // How a rank loads a checkpoint into sink.
  using RankLoad = std::function<int64_t(Communicator&, const std::string& path,
                                         const CheckpointSink& sink, TrainerState& state)>;

  // Saves step 4 (first weight 42) and step 6 into dir on 2 ranks, lets damage() spoil step 6,
  // then resumes auto on 2 ranks with load: every rank must fall back to step 4, and step 6 must
  // be set aside.
  void expect_fallback_to_older(const std::string& dir, bool sharded,
                                const std::function<void()>& damage, const RankLoad& load) {
    TrainingTensors older = tensors_;
    older.params[0] = 42.0f;
    older.optimizer_steps = 3;
    for (const std::string& e : save_on(2, sharded, dir, older, 4)) ASSERT_EQ(e, "");
    for (const std::string& e : save_on(2, sharded, dir, tensors_, 6)) ASSERT_EQ(e, "");
    damage();
    std::vector<std::string> loaded(2);
    std::vector<float> first_param(2);
    on_ranks(2, [&](Communicator& comm) {
      TrainerState state;
      int64_t steps = 0;
      const CheckpointSink sink = [&](int tensor, int64_t at, const float* values, int64_t) {
        if (tensor == 0 && at == 0) first_param[size_t(comm.rank())] = values[0];
      };
      loaded[size_t(comm.rank())] = load_newest_intact_checkpoint_together(
          comm, dir, [&](const std::string& path) { return load(comm, path, sink, state); }, steps);
    });
    for (int r = 0; r < 2; ++r) {
      EXPECT_EQ(loaded[size_t(r)], checkpoint_path(dir, 4));
      EXPECT_EQ(first_param[size_t(r)], 42.0f);
    }
    EXPECT_TRUE(fs::exists(checkpoint_path(dir, 6) + ".corrupt"));
  }

  const ParamLayout layout_;
  const std::unique_ptr<Backend> be_;
  TrainingTensors tensors_;
  TrainerState state_;
};

TEST_F(ParallelCheckpoint, ShardedAndSplitSavesWriteTheBytesOfOneProcess) {
  const std::string one = path("one");
  save_checkpoint(one, layout_, tensors_, state_, 0);
  for (const int world : {1, 2, 3}) {
    for (const bool sharded : {false, true}) {
      if (sharded && world == 1) continue;
      const std::string dir = path(std::to_string(world) + (sharded ? "_sharded" : "_split"));
      SCOPED_TRACE(dir);
      for (const std::string& e : save_on(world, sharded, dir, tensors_, state_.step)) {
        EXPECT_EQ(e, "");
      }
      expect_same_files(checkpoint_path(dir, 6), checkpoint_path(one, 6));
      EXPECT_FALSE(fs::exists(checkpoint_path(dir, 6) + ".tmp"));
    }
  }
}

// Each rank gets the whole weights and exactly its own slices of the moments, and no other
// moment value; together the ranks verify the whole optimizer file.
TEST_F(ParallelCheckpoint, ShardedLoadReadsOnlyEachRanksSlices) {
  save_checkpoint(path("one"), layout_, tensors_, state_, 0);
  const std::string ckpt = checkpoint_path(path("one"), 6);
  for (const int world : {2, 3}) {
    SCOPED_TRACE(world);
    std::vector<Received> received;
    for (const std::string& e : load_on(world, ckpt, received)) ASSERT_EQ(e, "");
    for (int r = 0; r < world; ++r) {
      const Received& got = received[size_t(r)];
      EXPECT_EQ(got.optimizer_steps, 5);
      EXPECT_EQ(got.state.step, 6);
      EXPECT_EQ(got.state.rng, state_.rng);
      ASSERT_EQ(int64_t(got.tensors[0].size()), layout_.total());
      for (const auto& [at, value] : got.tensors[0]) ASSERT_EQ(value, tensors_.params[size_t(at)]);
      const ShardMap map = shard_map(world, r);
      const std::vector<float>* moments[] = {&tensors_.exp_avg, &tensors_.exp_avg_sq};
      for (int k = 0; k < 2; ++k) {
        const std::map<int64_t, float>& values = got.tensors[size_t(k + 1)];
        EXPECT_EQ(int64_t(values.size()), map.size(r)) << "moment " << k << " of rank " << r;
        for (const ShardRange& range : map.ranges()) {
          for (int64_t i = range.begin; i < range.begin + range.count; ++i) {
            ASSERT_EQ(values.count(i), 1u) << i;
            ASSERT_EQ(values.at(i), (*moments[k])[size_t(i)]) << i;
          }
        }
      }
    }
  }
}

// A flipped byte in the moments of rank 1's slice (which rank 0 never reads), of rank 0's, or in
// the weights: every rank throws CheckpointDamaged.
TEST_F(ParallelCheckpoint, DamageAnywhereIsDetectedOnEveryRank) {
  const int world = 2;
  // The low byte of a float: the value stays finite, only the checksum can tell.
  const uint64_t moments = optimizer_file_plan(layout_, 5).header.size();
  const uint64_t rank0_float =
      moments + uint64_t(shard_map(world, 0).ranges()[1].begin + 3) * sizeof(float);
  const uint64_t rank1_float =
      moments + uint64_t(layout_.total() + shard_map(world, 1).ranges()[1].begin) * sizeof(float);
  struct Case {
    const char* file;
    uint64_t at;
  };
  const Case cases[] = {{"optimizer.safetensors", rank1_float},
                        {"optimizer.safetensors", rank0_float},
                        {"model.safetensors", model_file_plan(layout_).header.size() + 40}};
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(c.file) + " byte " + std::to_string(c.at));
    const std::string dir = path("damaged_" + std::to_string(c.at));
    save_checkpoint(dir, layout_, tensors_, state_, 0);
    flip(checkpoint_path(dir, 6) + "/" + c.file, c.at);
    for (const std::string& e : sharded_load_errors(checkpoint_path(dir, 6), world)) {
      EXPECT_TRUE(contains(e, c.file)) << e;
      EXPECT_TRUE(contains(e, "damaged")) << e;
    }
  }
  // Bytes appended to the optimizer file, which no rank reads.
  const std::string dir = path("appended");
  save_checkpoint(dir, layout_, tensors_, state_, 0);
  std::ofstream(checkpoint_path(dir, 6) + "/optimizer.safetensors",
                std::ios::binary | std::ios::app)
      << "xxxx";
  for (const std::string& e : sharded_load_errors(checkpoint_path(dir, 6), world)) {
    EXPECT_TRUE(contains(e, "optimizer.safetensors is " +
                                std::to_string(optimizer_file_plan(layout_, 5).bytes + 4) +
                                " bytes"))
        << e;
  }
}

// resume auto, sharded: the damaged newest checkpoint is set aside and the older one loaded.
TEST_F(ParallelCheckpoint, ShardedResumeFallsBackFromADamagedCheckpoint) {
  const std::string dir = path("run");
  const std::string file = checkpoint_path(dir, 6) + "/optimizer.safetensors";
  expect_fallback_to_older(
      dir, true, [&] { flip(file, fs::file_size(file) - 2); },
      [&](Communicator& comm, const std::string& path, const CheckpointSink& sink,
          TrainerState& state) {
        return load_checkpoint_sharded(comm, path, layout_, shard_map(2, comm.rank()), sink, state);
      });
}

// resume auto, unsharded: every rank loads the whole checkpoint at once, and a checkpoint that
// only one rank finds damaged (it read other bytes) is set aside for all of them.
TEST_F(ParallelCheckpoint, UnshardedRanksLoadTogetherAndAgreeOnDamage) {
  const std::string dir = path("run_plain");
  expect_fallback_to_older(
      dir, false, [] {},
      [&](Communicator& comm, const std::string& path, const CheckpointSink& sink,
          TrainerState& state) {
        if (comm.rank() == 1 && path == checkpoint_path(dir, 6)) {
          throw CheckpointDamaged("rank 1 read other bytes");
        }
        return load_checkpoint(path, layout_, sink, state);
      });
}

// A rank that fails in the middle of its part: every rank stops with its error, and the step
// has no visible checkpoint (the older one stays the newest).
TEST_F(ParallelCheckpoint, ARankFailingMidSaveLeavesNoVisibleCheckpoint) {
  const std::string dir = path("run");
  for (const std::string& e : save_on(2, true, dir, tensors_, 4)) ASSERT_EQ(e, "");
  setenv("MAMBA_TEST_SAVE_FAULT", "fail:1:6", 1);
  for (const bool sharded : {true, false}) {
    const std::vector<std::string> errors = save_on(2, sharded, dir, tensors_, 6);
    for (const std::string& e : errors) {
      EXPECT_TRUE(contains(e, "rank 1: test: rank 1 fails in the middle of the save of step 6"))
          << e;
    }
    EXPECT_FALSE(fs::exists(checkpoint_path(dir, 6)));
    EXPECT_TRUE(fs::exists(checkpoint_path(dir, 6) + ".tmp"));
    EXPECT_EQ(latest_checkpoint(dir), checkpoint_path(dir, 4));
  }
  unsetenv("MAMBA_TEST_SAVE_FAULT");
  // The next save clears the .tmp and completes.
  for (const std::string& e : save_on(2, true, dir, tensors_, 6)) EXPECT_EQ(e, "");
  EXPECT_EQ(latest_checkpoint(dir), checkpoint_path(dir, 6));
  EXPECT_FALSE(fs::exists(checkpoint_path(dir, 6) + ".tmp"));
}

// A NaN in the moments only rank 1 holds: both ranks refuse the save, nothing is written.
TEST_F(ParallelCheckpoint, NonFiniteSliceOfOneRankIsRefusedByAll) {
  const ShardMap map = shard_map(2, 1);
  TrainingTensors bad = tensors_;
  bad.exp_avg_sq[size_t(map.ranges().back().begin)] = std::nanf("");
  const std::vector<std::string> errors = save_on(2, true, path("nan"), bad, 6);
  for (const std::string& e : errors) EXPECT_TRUE(contains(e, "hold NaN or infinity")) << e;
  EXPECT_FALSE(fs::exists(checkpoint_path(path("nan"), 6)));
  EXPECT_FALSE(fs::exists(checkpoint_path(path("nan"), 6) + ".tmp"));
}

// checkpoint.async with several processes: each rank's writer snapshots and writes its share in
// the background; rank 0's collects the part files and installs the checkpoint, the bytes of one
// process's save, with only its three files.
TEST_F(ParallelCheckpoint, SharedBackgroundWritesWriteTheBytesOfOneProcess) {
  save_checkpoint(path("one"), layout_, tensors_, state_, 0);
  for (const int world : {2, 3}) {
    const std::string dir = path("async_" + std::to_string(world));
    for (const std::string& e : on_ranks(world, [&](Communicator& comm) {
           CheckpointWriter writer(*be_, layout_, dir, 0, &comm, 30.0);
           TrainingTensors live = tensors_;
           EXPECT_EQ(writer.save(live.params.data(), live.exp_avg.data(), live.exp_avg_sq.data(), 5,
                                 state_),
                     checkpoint_path(dir, 6));
           // The snapshot is taken: changing the live buffers does not change what is written.
           std::fill(live.exp_avg.begin(), live.exp_avg.end(), 0.0f);
           writer.wait();
         })) {
      EXPECT_EQ(e, "");
    }
    expect_same_files(checkpoint_path(dir, 6), checkpoint_path(path("one"), 6));
    int files = 0;
    for (const auto& entry : fs::directory_iterator(checkpoint_path(dir, 6))) {
      ++files;
      EXPECT_TRUE(contains(entry.path().filename().string(), "json") ||
                  contains(entry.path().filename().string(), "safetensors"))
          << entry.path();
    }
    EXPECT_EQ(files, 3);
  }
}

// Rank 0's background writer waits for the other ranks' parts no longer than dist.timeout_s.
TEST_F(ParallelCheckpoint, MissingPartEndsTheWaitNamingTheRank) {
  fs::create_directories(checkpoint_path(path("run"), 6) + ".tmp");
  const std::string error = test::error_of([&] { wait_for_part_file(path("run"), 6, 1, 0.2); });
  EXPECT_TRUE(contains(error, "rank 1's part of " + checkpoint_path(path("run"), 6) +
                                  ".tmp did not arrive within 0.2 s (dist.timeout_s)"))
      << error;
}

// A checkpoint directory rank 0 cannot create: every rank stops with rank 0's error.
TEST_F(ParallelCheckpoint, UnwritableDirectoryStopsEveryRank) {
  const std::string blocked = path("not_a_directory");
  std::ofstream(blocked) << "x";
  for (const std::string& e : save_on(2, true, blocked, tensors_, 6)) {
    EXPECT_TRUE(contains(e, "checkpoint error: cannot create " + blocked)) << e;
  }
}

}  // namespace
}  // namespace mamba
