#include "dist/nccl_reducer.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <cstring>

#include "dist/bucket_gather.h"
#include "dist/stream_wait.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/elementwise.h"
#include "util/error.h"

namespace mamba {

namespace {

void check_nccl(ncclResult_t r, const char* what) {
  if (r != ncclSuccess && r != ncclInProgress) {
    throw_error("nccl error: ", what, " failed: ", ncclGetErrorString(r),
                " (set NCCL_DEBUG=WARN for details)");
  }
}

}  // namespace

std::string nccl_unique_id() {
  ncclUniqueId id;
  check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
  return std::string(id.internal, sizeof id.internal);
}

struct NcclReducer::State {
  ncclComm_t comm = nullptr;
  cudaStream_t compute = nullptr, comm_stream = nullptr;
  cudaEvent_t produced = nullptr, reduced = nullptr;
  Backend* backend = nullptr;
  float* buffer = nullptr;
  // bf16 communication: each bucket goes through this buffer in pieces of gather.bucket_floats,
  // rounded before the sum and widened back into the fp32 buffer after it. One buffer serves all
  // buckets because the communication stream runs them one after another.
  __nv_bfloat16* wire = nullptr;
  int64_t n = 0;
  BucketGather gather;
  double timeout_s = 600.0;
  // ZeRO-1: the shard map's buckets; [frontier, n) of the buffer is final, and the buckets from
  // next_bucket on are launched. scratch: the padded copy of the tail bucket (world floats).
  const ShardMap* shard = nullptr;
  Act weights;  // the compute copy
  float* exact = nullptr;
  int64_t exact_floats = 0;
  float* scratch = nullptr;
  int rank = 0, world = 1;
  int64_t frontier = 0;
  size_t next_bucket = 0;
  // Hierarchical: the ranks of this node (node_size of them, this one at node_rank) and the
  // ranks at the same place on the other nodes. pad: node_size floats for the fp32 remainder.
  ncclComm_t node_comm = nullptr, across_comm = nullptr;
  int node_rank = 0, node_size = 1;
  float* pad = nullptr;

  // Part of a bucket reduced by node: `count` elements, a multiple of node_size.
  struct Part {
    void* data;
    int64_t count;
  };

  // The compute stream's work queued up to now comes before what is queued on comm_stream next.
  void follow_compute() { follow(comm_stream, compute, produced); }

  void copy(float* dst, const float* src, int64_t count) {
    copy_bytes(dst, src, size_t(count) * sizeof(float));
  }

  void copy_bytes(void* dst, const void* src, size_t bytes) {
    cuda::check_cuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, comm_stream),
                     "cudaMemcpyAsync");
  }

  bool padded(const ShardBucket& b) const { return b.slice * world != b.end - b.begin; }

  void reduce_scatter(const ShardBucket& b) {
    if (!padded(b)) {
      check_nccl(ncclReduceScatter(buffer + b.begin, buffer + b.begin + rank * b.slice,
                                   size_t(b.slice), ncclFloat, ncclAvg, comm, comm_stream),
                 "ncclReduceScatter");
      return;
    }
    cuda::check_cuda(
        cudaMemsetAsync(scratch, 0, size_t(b.slice * world) * sizeof(float), comm_stream),
        "cudaMemsetAsync");
    copy(scratch, buffer + b.begin, b.end - b.begin);
    check_nccl(ncclReduceScatter(scratch, scratch + rank * b.slice, size_t(b.slice), ncclFloat,
                                 ncclAvg, comm, comm_stream),
               "ncclReduceScatter");
    const ShardRange mine = shard->part(b, rank);
    if (mine.count > 0) copy(buffer + mine.begin, scratch + rank * b.slice, mine.count);
  }

  // Launches, last first, the buckets that lie wholly in the final part of the buffer.
  void launch_final_buckets() {
    const std::vector<ShardBucket>& buckets = shard->buckets();
    bool followed = false;
    while (next_bucket > 0 && buckets[next_bucket - 1].begin >= frontier) {
      if (!followed) follow_compute();
      followed = true;
      reduce_scatter(buckets[--next_bucket]);
    }
  }

  // Reduce-scatter in the node, all-reduce across nodes, all-gather in the node, each phase one
  // group over the parts (a bucket and its padded remainder go as one launch per phase).
  void reduce_by_node(const Part* parts, int n_parts, ncclDataType_t type, size_t bytes) {
    check_nccl(ncclGroupStart(), "ncclGroupStart");
    for (int i = 0; i < n_parts; ++i) {
      const size_t slice = size_t(parts[i].count / node_size);
      char* data = static_cast<char*>(parts[i].data);
      check_nccl(ncclReduceScatter(data, data + node_rank * slice * bytes, slice, type, ncclAvg,
                                   node_comm, comm_stream),
                 "ncclReduceScatter (in the node)");
    }
    check_nccl(ncclGroupEnd(), "ncclGroupEnd");
    check_nccl(ncclGroupStart(), "ncclGroupStart");
    for (int i = 0; i < n_parts; ++i) {
      const size_t slice = size_t(parts[i].count / node_size);
      char* own = static_cast<char*>(parts[i].data) + node_rank * slice * bytes;
      check_nccl(ncclAllReduce(own, own, slice, type, ncclAvg, across_comm, comm_stream),
                 "ncclAllReduce (across nodes)");
    }
    check_nccl(ncclGroupEnd(), "ncclGroupEnd");
    check_nccl(ncclGroupStart(), "ncclGroupStart");
    for (int i = 0; i < n_parts; ++i) {
      const size_t slice = size_t(parts[i].count / node_size);
      char* data = static_cast<char*>(parts[i].data);
      check_nccl(ncclAllGather(data + node_rank * slice * bytes, data, slice, type, node_comm,
                               comm_stream),
                 "ncclAllGather (in the node)");
    }
    check_nccl(ncclGroupEnd(), "ncclGroupEnd");
  }

  // The mean over all ranks of buffer[begin, begin + count), fp32, through the node split.
  void reduce_by_node(int64_t begin, int64_t count) {
    const int64_t bulk = count - count % node_size, rest = count - bulk;
    Part parts[2];
    int n_parts = 0;
    if (bulk > 0) parts[n_parts++] = {buffer + begin, bulk};
    if (rest > 0) {
      cuda::check_cuda(cudaMemsetAsync(pad, 0, size_t(node_size) * sizeof(float), comm_stream),
                       "cudaMemsetAsync");
      copy(pad, buffer + begin + bulk, rest);
      parts[n_parts++] = {pad, node_size};
    }
    reduce_by_node(parts, n_parts, ncclFloat, sizeof(float));
    if (rest > 0) copy(buffer + begin + bulk, pad, rest);
  }

  // All-reduces the bucket [first, last) of the buffer.
  void launch(int64_t first, int64_t last) {
    // The bucket's gradients were written by work queued on the compute stream up to now.
    follow_compute();
    if (wire) {
      for (int64_t begin = first; begin < last; begin += gather.bucket_floats) {
        const int64_t count = std::min(gather.bucket_floats, last - begin);
        cuda::to_bf16(wire, buffer + begin, count, comm_stream);
        if (node_comm) {
          const int64_t padded = (count + node_size - 1) / node_size * node_size;
          if (padded > count) {
            cuda::check_cuda(
                cudaMemsetAsync(wire + count, 0, size_t(padded - count) * sizeof(__nv_bfloat16),
                                comm_stream),
                "cudaMemsetAsync");
          }
          const Part part{wire, padded};
          reduce_by_node(&part, 1, ncclBfloat16, sizeof(__nv_bfloat16));
        } else {
          check_nccl(
              ncclAllReduce(wire, wire, size_t(count), ncclBfloat16, ncclAvg, comm, comm_stream),
              "ncclAllReduce (bf16)");
        }
        cuda::from_bf16(buffer + begin, wire, count, comm_stream);
      }
    } else if (node_comm) {
      reduce_by_node(first, last - first);
    } else {
      check_nccl(ncclAllReduce(buffer + first, buffer + first, size_t(last - first), ncclFloat,
                               ncclAvg, comm, comm_stream),
                 "ncclAllReduce");
    }
  }

  // Every communicator is aborted when one fails, so that no collective waits on a lost peer.
  void abort_all() {
    for (ncclComm_t* c : {&comm, &node_comm, &across_comm}) {
      if (*c) ncclCommAbort(*c);
      *c = nullptr;
    }
  }

  // Waits for the collectives up to `reduced`; a communicator's error or the timeout aborts
  // them all and throws.
  void wait_reduced(const char* what) {
    const auto check_async = [&] {
      for (ncclComm_t c : {comm, node_comm, across_comm}) {
        if (!c) continue;
        ncclResult_t async = ncclSuccess;
        check_nccl(ncclCommGetAsyncError(c, &async), "ncclCommGetAsyncError");
        if (async != ncclSuccess && async != ncclInProgress) {
          abort_all();
          throw_error("nccl error: ", what, " failed: ", ncclGetErrorString(async),
                      ": another rank has probably died; see its log");
        }
      }
    };
    if (!wait_for(reduced, timeout_s, what, check_async)) {
      abort_all();
      throw_error("nccl error: ", what, " did not finish within ", timeout_s,
                  " s: a rank has stalled or died; the job stops (dist.timeout_s sets the limit)");
    }
  }
};

NcclReducer::NcclReducer(const std::string& unique_id, int rank, int world, Backend& backend,
                         float* buffer, int64_t n, size_t bucket_bytes, double timeout_s, bool bf16)
    : s_(std::make_unique<State>()) {
  ncclUniqueId id;
  if (unique_id.size() != sizeof id.internal) {
    throw_error("nccl error: unique id of ", unique_id.size(), " bytes, expected ",
                sizeof id.internal);
  }
  std::memcpy(id.internal, unique_id.data(), sizeof id.internal);
  s_->compute = static_cast<cudaStream_t>(backend.native_stream());
  if (!s_->compute) throw_error("nccl error: backend ", backend.name(), " is not a CUDA backend");
  s_->backend = &backend;
  s_->buffer = buffer;
  s_->n = n;
  s_->gather.bucket_floats = std::max<int64_t>(1, int64_t(bucket_bytes / sizeof(float)));
  s_->timeout_s = timeout_s;
  s_->rank = rank;
  s_->world = world;
  check_nccl(ncclCommInitRank(&s_->comm, world, id, rank), "ncclCommInitRank");
  if (bf16) {
    // Through the backend, so that it counts in the peak-memory figure.
    s_->wire = static_cast<__nv_bfloat16*>(
        backend.allocate(size_t(s_->gather.bucket_floats) * sizeof(__nv_bfloat16)));
  }
  cuda::check_cuda(cudaStreamCreateWithFlags(&s_->comm_stream, cudaStreamNonBlocking),
                   "cudaStreamCreate");
  cuda::check_cuda(cudaEventCreateWithFlags(&s_->produced, cudaEventDisableTiming),
                   "cudaEventCreate");
  cuda::check_cuda(cudaEventCreateWithFlags(&s_->reduced, cudaEventDisableTiming),
                   "cudaEventCreate");
}

NcclReducer::~NcclReducer() {
  for (ncclComm_t c : {s_->node_comm, s_->across_comm, s_->comm}) {
    if (c) ncclCommDestroy(c);
  }
  cudaStreamSynchronize(s_->comm_stream);
  if (s_->wire) s_->backend->release(s_->wire);
  if (s_->scratch) s_->backend->release(s_->scratch);
  if (s_->pad) s_->backend->release(s_->pad);
  cudaEventDestroy(s_->produced);
  cudaEventDestroy(s_->reduced);
  cudaStreamDestroy(s_->comm_stream);
}

void NcclReducer::split_by_node(int node) {
  State& s = *s_;
  if (s.shard) throw_error("nccl error: a sharded optimizer cannot reduce by node");
  check_nccl(ncclCommSplit(s.comm, node, s.rank, &s.node_comm, nullptr), "ncclCommSplit (node)");
  check_nccl(ncclCommUserRank(s.node_comm, &s.node_rank), "ncclCommUserRank");
  check_nccl(ncclCommCount(s.node_comm, &s.node_size), "ncclCommCount");
  check_nccl(ncclCommSplit(s.comm, s.node_rank, s.rank, &s.across_comm, nullptr),
             "ncclCommSplit (across nodes)");
  // Through the backend, so that they count in the peak-memory figure.
  s.pad = static_cast<float*>(s.backend->allocate(size_t(s.node_size) * sizeof(float)));
  if (s.wire) {
    // Room for a piece padded to a multiple of the node size.
    s.backend->release(s.wire);
    const int64_t padded = (s.gather.bucket_floats + s.node_size - 1) / s.node_size * s.node_size;
    s.wire =
        static_cast<__nv_bfloat16*>(s.backend->allocate(size_t(padded) * sizeof(__nv_bfloat16)));
  }
}

void NcclReducer::shard(const ShardMap& map, Act compute_copy, float* exact, int64_t exact_floats) {
  State& s = *s_;
  if (s.wire) throw_error("nccl error: bf16 communication cannot shard the optimizer");
  if (s.node_comm) throw_error("nccl error: a reducer split by node cannot shard the optimizer");
  if (map.world() != s.world || map.rank() != s.rank || map.total() != s.n) {
    throw_error("nccl error: the shard map is for rank ", map.rank(), " of ", map.world(), " and ",
                map.total(), " floats, the reducer for rank ", s.rank, " of ", s.world, " and ",
                s.n);
  }
  s.shard = &map;
  s.weights = compute_copy;
  s.exact = exact;
  s.exact_floats = exact_floats;
  s.frontier = s.n;
  s.next_bucket = map.buckets().size();
  int64_t padded = 1;
  for (const ShardBucket& b : map.buckets()) {
    if (s.padded(b)) padded = std::max(padded, b.slice * s.world);
  }
  // Through the backend, so that it counts in the peak-memory figure; fp32-sized, it holds the
  // padded tail of the compute copy in either type.
  s.scratch = static_cast<float*>(s.backend->allocate(size_t(padded) * sizeof(float)));
}

void NcclReducer::ready(int64_t begin, int64_t end) {
  State& s = *s_;
  if (s.shard) {
    // Backward finishes the buffer from its end down; a slice out of that order waits for
    // finish().
    if (end == s.frontier) s.frontier = begin;
    s.launch_final_buckets();
    return;
  }
  s.gather.ready(begin, end, [&](int64_t first, int64_t last) { s.launch(first, last); });
}

void NcclReducer::finish() {
  State& s = *s_;
  if (s.shard) {
    s.frontier = 0;
    s.launch_final_buckets();
    s.frontier = s.n;
    s.next_bucket = s.shard->buckets().size();
  } else {
    s.gather.flush([&](int64_t first, int64_t last) { s.launch(first, last); });
  }
  follow(s.compute, s.comm_stream, s.reduced);
  s.wait_reduced(s.shard ? "gradient reduce-scatter" : "gradient all-reduce");
}

void NcclReducer::gather_weights() {
  State& s = *s_;
  if (!s.shard) return;
  s.follow_compute();
  const size_t bytes = type_bytes(s.weights.type);
  const ncclDataType_t type = s.weights.type == ActType::BF16 ? ncclBfloat16 : ncclFloat;
  char* weights = static_cast<char*>(s.weights.data);
  // Grouped, NCCL runs the buckets' all-gathers as few launches (a group holds at most 2048
  // operations in some NCCL versions).
  constexpr int kGroup = 1024;
  int grouped = 0;
  check_nccl(ncclGroupStart(), "ncclGroupStart");
  for (const ShardBucket& b : s.shard->buckets()) {
    if (s.padded(b)) continue;
    if (++grouped % kGroup == 0) {
      check_nccl(ncclGroupEnd(), "ncclGroupEnd");
      check_nccl(ncclGroupStart(), "ncclGroupStart");
    }
    check_nccl(
        ncclAllGather(weights + (b.begin + s.rank * b.slice) * bytes, weights + b.begin * bytes,
                      size_t(b.slice), type, s.comm, s.comm_stream),
        "ncclAllGather");
  }
  check_nccl(ncclGroupEnd(), "ncclGroupEnd");
  for (const ShardBucket& b : s.shard->buckets()) {
    if (!s.padded(b)) continue;
    const ShardRange mine = s.shard->part(b, s.rank);
    char* scratch = reinterpret_cast<char*>(s.scratch);
    char* own = scratch + s.rank * b.slice * bytes;
    if (mine.count > 0) s.copy_bytes(own, weights + mine.begin * bytes, mine.count * bytes);
    check_nccl(ncclAllGather(own, scratch, size_t(b.slice), type, s.comm, s.comm_stream),
               "ncclAllGather");
    s.copy_bytes(weights + b.begin * bytes, scratch, (b.end - b.begin) * bytes);
  }
  // Each value is one rank's, the others' zero: the integer sum moves its bits unchanged.
  if (s.exact_floats > 0) {
    check_nccl(ncclAllReduce(s.exact, s.exact, size_t(s.exact_floats), ncclUint32, ncclSum, s.comm,
                             s.comm_stream),
               "ncclAllReduce (fp32 weights)");
  }
  follow(s.compute, s.comm_stream, s.reduced);
  s.wait_reduced("weight all-gather");
}

}  // namespace mamba
