#include "dist/nccl_reducer.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>

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
  // bf16 communication: each bucket goes through this buffer in pieces of bucket_floats, rounded
  // before the sum and widened back into the fp32 buffer after it. One buffer serves all buckets
  // because the communication stream runs them one after another.
  __nv_bfloat16* wire = nullptr;
  int64_t n = 0, bucket_floats = 0;
  int64_t pending_begin = -1, pending_end = -1;  // the bucket being gathered, [begin, end)
  double timeout_s = 600.0;

  void launch() {
    if (pending_begin < 0) return;
    // The bucket's gradients were written by work queued on the compute stream up to now.
    cuda::check_cuda(cudaEventRecord(produced, compute), "cudaEventRecord");
    cuda::check_cuda(cudaStreamWaitEvent(comm_stream, produced, 0), "cudaStreamWaitEvent");
    if (wire) {
      for (int64_t begin = pending_begin; begin < pending_end; begin += bucket_floats) {
        const int64_t count = std::min(bucket_floats, pending_end - begin);
        cuda::to_bf16(wire, buffer + begin, count, comm_stream);
        check_nccl(
            ncclAllReduce(wire, wire, size_t(count), ncclBfloat16, ncclAvg, comm, comm_stream),
            "ncclAllReduce (bf16)");
        cuda::from_bf16(buffer + begin, wire, count, comm_stream);
      }
    } else {
      check_nccl(
          ncclAllReduce(buffer + pending_begin, buffer + pending_begin,
                        size_t(pending_end - pending_begin), ncclFloat, ncclAvg, comm, comm_stream),
          "ncclAllReduce");
    }
    pending_begin = pending_end = -1;
  }

  // Polls instead of blocking so that a lost peer surfaces as an error, not a hang.
  void wait_reduced() {
    const auto start = std::chrono::steady_clock::now();
    while (true) {
      const cudaError_t q = cudaEventQuery(reduced);
      if (q == cudaSuccess) return;
      if (q != cudaErrorNotReady) cuda::check_cuda(q, "gradient all-reduce");
      ncclResult_t async = ncclSuccess;
      check_nccl(ncclCommGetAsyncError(comm, &async), "ncclCommGetAsyncError");
      if (async != ncclSuccess && async != ncclInProgress) {
        ncclCommAbort(comm);
        comm = nullptr;
        throw_error("nccl error: gradient all-reduce failed: ", ncclGetErrorString(async),
                    ": another rank has probably died; see its log");
      }
      const double waited =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (waited > timeout_s) {
        ncclCommAbort(comm);
        comm = nullptr;
        throw_error("nccl error: gradient all-reduce did not finish within ", timeout_s,
                    " s: a rank has stalled or died; the job stops (MAMBA_NCCL_TIMEOUT_S sets "
                    "the limit)");
      }
      std::this_thread::sleep_for(std::chrono::microseconds(50));
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
  s_->bucket_floats = std::max<int64_t>(1, int64_t(bucket_bytes / sizeof(float)));
  s_->timeout_s = timeout_s;
  check_nccl(ncclCommInitRank(&s_->comm, world, id, rank), "ncclCommInitRank");
  if (bf16) {
    // Through the backend, so that it counts in the peak-memory figure.
    s_->wire = static_cast<__nv_bfloat16*>(
        backend.allocate(size_t(s_->bucket_floats) * sizeof(__nv_bfloat16)));
  }
  cuda::check_cuda(cudaStreamCreateWithFlags(&s_->comm_stream, cudaStreamNonBlocking),
                   "cudaStreamCreate");
  cuda::check_cuda(cudaEventCreateWithFlags(&s_->produced, cudaEventDisableTiming),
                   "cudaEventCreate");
  cuda::check_cuda(cudaEventCreateWithFlags(&s_->reduced, cudaEventDisableTiming),
                   "cudaEventCreate");
}

NcclReducer::~NcclReducer() {
  if (s_->comm) ncclCommDestroy(s_->comm);
  cudaStreamSynchronize(s_->comm_stream);
  if (s_->wire) s_->backend->release(s_->wire);
  cudaEventDestroy(s_->produced);
  cudaEventDestroy(s_->reduced);
  cudaStreamDestroy(s_->comm_stream);
}

void NcclReducer::ready(int64_t begin, int64_t end) {
  State& s = *s_;
  if (s.pending_begin >= 0 && end != s.pending_begin) s.launch();
  if (s.pending_begin < 0) s.pending_end = end;
  s.pending_begin = begin;
  if (s.pending_end - s.pending_begin >= s.bucket_floats) s.launch();
}

void NcclReducer::finish() {
  State& s = *s_;
  s.launch();
  cuda::check_cuda(cudaEventRecord(s.reduced, s.comm_stream), "cudaEventRecord");
  cuda::check_cuda(cudaStreamWaitEvent(s.compute, s.reduced, 0), "cudaStreamWaitEvent");
  s.wait_reduced();
}

}  // namespace mamba
