// Gradient all-reduce across GPUs with NCCL, in buckets, overlapped with the backward pass: a
// bucket is launched on a communication stream as soon as the slices it covers are final,
// ordered after the compute stream's work with an event, with no host synchronisation. finish()
// makes the compute stream wait for the last bucket; the averaged gradients are then in place.
// Sharded (ZeRO-1), the buckets are those of the ShardMap and each is reduce-scattered.
// Split by node (dist.hierarchical), each bucket is reduce-scattered among the GPUs of the node,
// its pieces all-reduced across nodes and all-gathered in the node, on the same stream.
// A peer that fails or stalls ends the job with a clear error after a timeout instead of a hang.
// This header names no CUDA or NCCL type.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "dist/shard_map.h"
#include "kernels/backend.h"

namespace mamba {

// The bytes of a fresh ncclUniqueId, made by rank 0 and broadcast to the others (MPI_Bcast).
std::string nccl_unique_id();

class NcclReducer {
 public:
  // backend: the rank's CUDA backend (its compute stream orders the buckets). buffer: the fp32
  // gradient buffer of n floats, identical layout on every rank. timeout_s: how long finish()
  // waits for the collective before declaring a peer lost. bf16: communicate in bf16 (half the
  // bytes; each bucket is rounded before the sum and widened after).
  NcclReducer(const std::string& unique_id, int rank, int world, Backend& backend, float* buffer,
              int64_t n, size_t bucket_bytes, double timeout_s, bool bf16);
  ~NcclReducer();
  NcclReducer(const NcclReducer&) = delete;
  NcclReducer& operator=(const NcclReducer&) = delete;

  // ZeRO-1 from now on: the buckets of `map` are reduce-scattered (ncclReduceScatter, each
  // launched as soon as backward has finished all of it) instead of all-reduced, and
  // gather_weights() all-gathers the owned slices of the model's compute copy (parameter layout,
  // ncclAllGather in its own type, in place) and sums the exact buffer's exact_floats as 32-bit
  // integers. bf16 gradient communication is refused. map outlives the reducer.
  void shard(const ShardMap& map, Act compute_copy, float* exact, int64_t exact_floats);
  // Hierarchical from now on (hierarchy.h): two more communicators, split from the reducer's by
  // ncclCommSplit (collective): the ranks of `node` (this rank's node index), and the ranks at
  // this rank's place in their nodes. Every node must hold the same number of ranks (the caller
  // checks). A bucket whose size is not a multiple of the node size G goes as its largest
  // multiple of G in place plus the rest zero-padded to G floats, grouped with it; in bf16 the
  // wire buffer is padded. Not with shard().
  void split_by_node(int node);
  // [begin, end) of the buffer is final; slices become buckets as bucket_gather.h says.
  void ready(int64_t begin, int64_t end);
  // Launches what is left, makes the compute stream wait for all buckets, and checks (with the
  // timeout) that the collectives completed.
  void finish();
  // Sharded: after the optimizer's work queued on the compute stream (which wrote this rank's
  // slices of the compute copy, and its own fp32-read values into the exact buffer, zero
  // elsewhere), every rank's slices and values to every rank; the compute stream waits for it,
  // and the host checks (with the timeout) that it completed.
  void gather_weights();

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace mamba
