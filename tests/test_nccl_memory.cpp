// The peak memory the CUDA backend reports (the log's mem, bench_train's peak_gib) counts NCCL's
// buffers, which NCCL allocates itself, out of the backend's sight: hundreds of MiB per GPU. Two
// ranks run in two threads of this process, one per GPU, each with its backend and a
// NcclReducer, through an all-reduce, a reduce-scatter and an all-gather of a 256 MiB gradient
// buffer (NCCL sets up a collective's connections and buffers at its first call); each GPU's
// reported peak must be what cudaMemGetInfo says the device gave the process since its context
// was made, within 16 MiB. Needs 2 GPUs and NCCL; skips otherwise.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#ifdef MAMBA_HAVE_NCCL
#include <cuda_runtime_api.h>

#include <exception>
#include <functional>
#include <memory>
#include <vector>

#include "dist/nccl_reducer.h"
#include "dist/shard_map.h"
#include "kernels/backend.h"
#include "kernels/cuda/cuda_backend.h"
#include "rank_threads.h"
#include "two_gpus.h"
#include "util/error.h"
#endif

namespace mamba {
namespace {

#ifdef MAMBA_HAVE_NCCL

constexpr int kWorld = 2;
constexpr int64_t kFloats = int64_t{1} << 26;      // 256 MiB of gradients
constexpr size_t kBucketBytes = size_t{25} << 20;  // about ten buckets of the 256 MiB

struct Rank {
  std::unique_ptr<Backend> backend;
  float* grads = nullptr;
  float* params = nullptr;
  size_t taken = 0;    // cudaMemGetInfo: the device's memory in use, less what it was at the start
  size_t peak = 0;     // Backend::peak_memory()
  size_t outside = 0;  // Backend::outside_memory()
  float mean = 0.0f;   // gradient 0 after the all-reduce: the mean of 1 and 2
  float gathered = 0.0f;  // the first weight of the other rank's slice after the all-gather
};

// Rank r's communication, on its own thread. Its values are r + 1 everywhere, so the mean is 1.5
// and rank q's slices hold q + 1 after the all-gather.
void communicate(int r, const std::string& id, size_t free_at_start, Rank& rank) {
  if (cudaSetDevice(r) != cudaSuccess) throw_error("cudaSetDevice failed");
  Backend& be = *rank.backend;
  {
    NcclReducer reducer(id, r, kWorld, be, rank.grads, kFloats, kBucketBytes, 120.0, false);
    reducer.ready(0, kFloats);
    reducer.finish();
    be.download(&rank.mean, rank.grads, sizeof(float));
    const ShardMap map(kFloats, kWorld, r, int64_t(kBucketBytes / sizeof(float)));
    reducer.shard(map, f32_act(rank.params), nullptr, 0);
    reducer.ready(0, kFloats);
    reducer.finish();
    reducer.gather_weights();
    const int other = 1 - r;
    be.download(&rank.gathered, rank.params + other * map.buckets().front().slice, sizeof(float));
    size_t free_now = 0, total = 0;
    if (cudaMemGetInfo(&free_now, &total) != cudaSuccess) throw_error("cudaMemGetInfo failed");
    rank.taken = free_at_start > free_now ? free_at_start - free_now : 0;
    rank.peak = be.peak_memory();
    rank.outside = be.outside_memory();
  }
  rank.backend.reset();  // on its device's thread, after the reducer that uses it
}

#endif

TEST(NcclMemory, ReportedPeakCountsTheCommunicators) {
#ifndef MAMBA_HAVE_NCCL
  GTEST_SKIP() << "built without NCCL (or CUDA): nothing to measure";
#else
  static_assert(kWorld == 2);
  if (const std::string why = test::two_gpus_missing(); !why.empty()) GTEST_SKIP() << why;
  size_t free_at_start[kWorld];
  for (int d = 0; d < kWorld; ++d) {
    ASSERT_EQ(cudaSetDevice(d), cudaSuccess);
    ASSERT_EQ(cudaFree(nullptr), cudaSuccess);  // the context exists before the first reading
    size_t total = 0;
    ASSERT_EQ(cudaMemGetInfo(&free_at_start[d], &total), cudaSuccess);
  }
  // The backends and buffers first, so that a failure there ends the test before a rank waits
  // for the other in ncclCommInitRank.
  Rank ranks[kWorld];
  for (int r = 0; r < kWorld; ++r) {
    Rank& rank = ranks[r];
    rank.backend = make_cuda_backend(r, false);
    const size_t bytes = size_t(kFloats) * sizeof(float);
    rank.grads = static_cast<float*>(rank.backend->allocate(bytes));
    rank.params = static_cast<float*>(rank.backend->allocate(bytes));
    const std::vector<float> values(kFloats, float(r + 1));
    rank.backend->upload(rank.grads, values.data(), bytes);
    rank.backend->upload(rank.params, values.data(), bytes);
    rank.backend->synchronize();
  }
  const std::string id = nccl_unique_id();
  // ncclCommInitRank returns when every rank has called it: one thread per rank.
  const std::vector<std::string> errors =
      test::on_threads(kWorld, [&](int r) { communicate(r, id, free_at_start[r], ranks[r]); });
  const double mib = 1 << 20;
  for (int r = 0; r < kWorld; ++r) {
    const Rank& x = ranks[r];
    ASSERT_EQ(errors[r], "") << "rank " << r;
    std::printf(
        "[info] rank %d: device memory taken %.1f MiB, reported peak %.1f MiB, of it "
        "outside the backend's allocations (NCCL above all) %.1f MiB\n",
        r, x.taken / mib, x.peak / mib, x.outside / mib);
    EXPECT_EQ(x.mean, 1.5f) << "rank " << r << ": the all-reduce did not run";
    EXPECT_EQ(x.gathered, float(2 - r)) << "rank " << r << ": the all-gather did not run";
    EXPECT_LE(x.peak / mib, x.taken / mib + 16)
        << "rank " << r << " counts memory it does not hold";
    EXPECT_LE(x.taken / mib, x.peak / mib + 16)
        << "rank " << r << ": device memory (NCCL's buffers?) left out of the peak";
  }
#endif
}

}  // namespace
}  // namespace mamba
