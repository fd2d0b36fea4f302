// Sums over tokens whose result does not depend on the thread count: the channels are cut into
// fixed blocks of kChannelBlock, and each block has one owner that adds the tokens in order.
#pragma once
#include <algorithm>
#include <cstdint>

namespace mamba::cpu {

inline constexpr int kChannelBlock = 16;

inline int channel_blocks(int channels) {
  return (channels + kChannelBlock - 1) / kChannelBlock;
}

// Calls f(copy, block, c0, c1) for channels [c0, c1) of each block of each of `copies` (e.g. the
// batch), the (copy, block) pairs spread over the OpenMP threads.
template <typename F>
void for_each_channel_block(int channels, int64_t copies, F f) {
  const int blocks = channel_blocks(channels);
#pragma omp parallel for schedule(static)
  for (int64_t task = 0; task < copies * blocks; ++task) {
    const int block = static_cast<int>(task % blocks);
    const int c0 = block * kChannelBlock;
    f(task / blocks, block, c0, std::min(channels, c0 + kChannelBlock));
  }
}

}  // namespace mamba::cpu
