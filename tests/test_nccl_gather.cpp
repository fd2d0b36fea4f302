// ZeRO-1's weight gather on two GPUs (NcclReducer::gather_weights): each rank's slices of a bf16
// compute copy reach the other rank in place, the padded tail bucket included, and the fp32
// exact buffer, where each value is one rank's and zero on the other, comes out with the bits of
// its owner, -0 and NaN payloads included (the 32-bit integer sum). Two ranks run in two threads
// of this process, one per GPU. Needs 2 GPUs and NCCL; skips otherwise.
#include <gtest/gtest.h>

#include <string>

#ifdef MAMBA_HAVE_NCCL
#include <cuda_runtime_api.h>

#include <cstdint>
#include <cstring>
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
constexpr int64_t kFloats = 10007;  // odd: the last bucket is the padded tail
constexpr int64_t kBucketFloats = 1000;
constexpr int64_t kExact = 515;

// The bits every rank must end with: any pattern will do, the gather does no arithmetic.
uint16_t copy_bits(int64_t i) {
  return uint16_t(i * 2654435761u >> 7);
}
uint32_t exact_bits(int64_t i) {
  if (i == 3) return 0x80000000u;  // -0.0f
  if (i == 4) return 0x7fc01234u;  // a NaN with a payload
  return uint32_t(i) * 2654435761u;
}

struct Rank {
  std::unique_ptr<Backend> backend;
  float* grads = nullptr;
  void* copy = nullptr;
  float* exact = nullptr;
  std::vector<uint16_t> copy_after;
  std::vector<uint32_t> exact_after;
};

// Rank r holds its own slices of the copy (the other's poisoned) and the exact values i with
// i % kWorld == r (zero elsewhere), and gathers.
void gather(int r, const std::string& id, Rank& rank) {
  if (cudaSetDevice(r) != cudaSuccess) throw_error("cudaSetDevice failed");
  Backend& be = *rank.backend;
  const ShardMap map(kFloats, kWorld, r, kBucketFloats);
  std::vector<uint16_t> copy(kFloats, 0xffff);
  for (const ShardRange& s : map.ranges()) {
    for (int64_t i = s.begin; i < s.begin + s.count; ++i) copy[i] = copy_bits(i);
  }
  std::vector<uint32_t> exact(kExact, 0);
  for (int64_t i = r; i < kExact; i += kWorld) exact[i] = exact_bits(i);
  be.upload(rank.copy, copy.data(), copy.size() * sizeof(uint16_t));
  be.upload(rank.exact, exact.data(), exact.size() * sizeof(uint32_t));
  be.synchronize();
  {
    NcclReducer reducer(id, r, kWorld, be, rank.grads, kFloats, kBucketFloats * sizeof(float),
                        120.0, false);
    reducer.shard(map, Act{rank.copy, ActType::BF16}, rank.exact, kExact);
    reducer.gather_weights();
    rank.copy_after.resize(kFloats);
    rank.exact_after.resize(kExact);
    be.download(rank.copy_after.data(), rank.copy, kFloats * sizeof(uint16_t));
    be.download(rank.exact_after.data(), rank.exact, kExact * sizeof(uint32_t));
    be.synchronize();
  }
  rank.backend.reset();  // on its device's thread, after the reducer that uses it
}

#endif

TEST(NcclGather, ComputeCopyAndFp32BitsReachEveryRank) {
#ifndef MAMBA_HAVE_NCCL
  GTEST_SKIP() << "built without NCCL (or CUDA): nothing to gather";
#else
  static_assert(kWorld == 2);
  if (const std::string why = test::two_gpus_missing(); !why.empty()) GTEST_SKIP() << why;
  ASSERT_NE(kFloats % kWorld, 0);  // a tail bucket
  Rank ranks[kWorld];
  for (int r = 0; r < kWorld; ++r) {
    Rank& rank = ranks[r];
    rank.backend = make_cuda_backend(r, true);
    rank.grads = static_cast<float*>(rank.backend->allocate(kFloats * sizeof(float)));
    rank.copy = rank.backend->allocate(kFloats * sizeof(uint16_t));
    rank.exact = static_cast<float*>(rank.backend->allocate(kExact * sizeof(float)));
  }
  const std::string id = nccl_unique_id();
  const std::vector<std::string> errors =
      test::on_threads(kWorld, [&](int r) { gather(r, id, ranks[r]); });
  for (int r = 0; r < kWorld; ++r) {
    const Rank& x = ranks[r];
    ASSERT_EQ(errors[r], "") << "rank " << r;
    for (int64_t i = 0; i < kFloats; ++i) {
      ASSERT_EQ(x.copy_after[i], copy_bits(i)) << "rank " << r << ", compute copy element " << i;
    }
    for (int64_t i = 0; i < kExact; ++i) {
      ASSERT_EQ(x.exact_after[i], exact_bits(i)) << "rank " << r << ", exact element " << i;
    }
  }
#endif
}

}  // namespace
}  // namespace mamba
