// AdamW on the GPU: the math of kernels/cpu/adamw.h (PyTorch semantics), fp32 throughout, over the
// segments of the flat parameter / gradient / moment buffers in one launch, which also writes
// the updated weights' compute copy (bf16, or fp32 on the debugging path).
//
// The launch is a grid over the segments' elements cut into fixed blocks: a table on the device
// (AdamWBlocks, one entry per segment with the index of its first block) lets each block find
// its segment by a binary search, so no block straddles two segments.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>
#include <vector>

#include "kernels/cuda/act_type.h"
#include "kernels/ops.h"

namespace mamba::cuda {

// One entry of the device-side table. Plain int64s: the table compares bytewise.
struct AdamWBlockSegment {
  int64_t offset, packed, count, first_block, weight_decay;
};

// The table for these segments; its last entry's first_block + blocks is the grid size, returned
// in blocks.
std::vector<AdamWBlockSegment> adamw_block_table(const AdamWSegment* segments, int count,
                                                 int64_t& blocks);

// table: the device copy of adamw_block_table's result (entries of it), blocks: its grid size.
// copy: null or aliasing params means no compute copy is written. packed_params: params indexed
// as m and v are (AdamWStep::packed_params).
template <typename T>
void adamw_step(float* params, const float* grads, float* m, float* v, T* copy,
                const AdamWBlockSegment* table, int entries, int64_t blocks, const AdamWHyper& h,
                bool packed_params, cudaStream_t stream);

}  // namespace mamba::cuda
