// How the GPU reducers (NCCL and peer copies) cut the slices that backward finishes into buckets
// (dist/bucket_gather.h): adjacent slices merge, a bucket goes once it holds bucket_floats or when
// the next slice does not adjoin it, and flush() sends the rest. The last test checks, on random
// slices with gaps, that the buckets cover exactly the slices, once each, in backward's order.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <utility>
#include <vector>

#include "dist/bucket_gather.h"

namespace mamba {
namespace {

using Buckets = std::vector<std::pair<int64_t, int64_t>>;

// Feeds the slices [b, e) in the order given, then flushes; returns the buckets launched.
Buckets gather(int64_t bucket_floats, const Buckets& slices) {
  BucketGather g;
  g.bucket_floats = bucket_floats;
  Buckets launched;
  const auto launch = [&](int64_t b, int64_t e) { launched.emplace_back(b, e); };
  for (const auto& [b, e] : slices) g.ready(b, e, launch);
  g.flush(launch);
  return launched;
}

TEST(BucketGather, AdjacentSlicesMergeUntilTheBucketIsFull) {
  EXPECT_EQ(gather(10, {{96, 100}, {92, 96}, {88, 92}, {84, 88}}), (Buckets{{88, 100}, {84, 88}}));
}

TEST(BucketGather, ABucketGoesAsSoonAsItHoldsBucketFloats) {
  EXPECT_EQ(gather(10, {{95, 100}, {90, 95}, {85, 90}}), (Buckets{{90, 100}, {85, 90}}));
  EXPECT_EQ(gather(4, {{0, 7}}), (Buckets{{0, 7}}));
}

TEST(BucketGather, ASliceThatDoesNotAdjoinSendsTheBucketBeforeIt) {
  EXPECT_EQ(gather(100, {{50, 60}, {30, 40}, {20, 30}}), (Buckets{{50, 60}, {20, 40}}));
}

TEST(BucketGather, FlushWithNothingGatheredLaunchesNothing) {
  EXPECT_TRUE(gather(10, {}).empty());
  BucketGather g;
  g.bucket_floats = 3;
  int launches = 0;
  const auto launch = [&](int64_t, int64_t) { ++launches; };
  g.ready(0, 3, launch);
  g.flush(launch);
  EXPECT_EQ(launches, 1);
}

TEST(BucketGather, RandomSlicesAreCoveredOnceInBackwardsOrder) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    const int64_t bucket_floats = 1 + int64_t(rng() % 50);
    // Slices from the top of the buffer down, some separated by gaps.
    Buckets slices;
    int64_t top = 1000, max_slice = 0;
    while (top > 0) {
      const int64_t size = std::min<int64_t>(top, 1 + int64_t(rng() % 30));
      if (rng() % 4 != 0) slices.emplace_back(top - size, top);
      max_slice = std::max(max_slice, size);
      top -= size;
    }
    const Buckets buckets = gather(bucket_floats, slices);
    std::vector<int> covered(1000, 0), sliced(1000, 0);
    for (const auto& [b, e] : slices)
      for (int64_t i = b; i < e; ++i) sliced[i] = 1;
    int64_t previous_begin = 1001;
    for (const auto& [b, e] : buckets) {
      ASSERT_LT(b, e) << "trial " << trial;
      ASSERT_LE(e, previous_begin) << "trial " << trial << ": buckets out of order";
      // A bucket stops growing once it holds bucket_floats, so a slice at most goes past it.
      ASSERT_LT(e - b, bucket_floats + max_slice) << "trial " << trial;
      previous_begin = b;
      for (int64_t i = b; i < e; ++i) ++covered[i];
    }
    EXPECT_EQ(covered, sliced) << "trial " << trial;
  }
}

}  // namespace
}  // namespace mamba
