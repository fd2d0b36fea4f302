#include "dist/peer_reducer.h"

#include <cudaTypedefs.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <vector>

#include "dist/bucket_gather.h"
#include "dist/stream_wait.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/peer_ops.h"
#include "util/error.h"

namespace mamba {

namespace {

// The stages whose completion a rank announces to its peers, one flag per (stage, rank).
enum Stage { kProduced, kAveraged, kPulled, kStages };

// Floats per copied piece: the scratch holds one piece per peer, so it stays small whatever the
// bucket size.
constexpr int64_t kPieceFloats = int64_t{4} << 20;

void check_driver(CUresult r, const char* what) {
  if (r != CUDA_SUCCESS) throw_error("cuda error: ", what, " failed with CUresult ", int(r));
}

// The two driver functions the reducer calls, looked up through the runtime: linking the driver
// library would keep every binary from starting on a machine without a GPU driver.
struct Driver {
  PFN_cuStreamWaitValue32_v11070 wait_value = nullptr;
  PFN_cuMemGetAddressRange_v3020 address_range = nullptr;

  Driver() {
    lookup("cuStreamWaitValue32", reinterpret_cast<void**>(&wait_value));
    lookup("cuMemGetAddressRange", reinterpret_cast<void**>(&address_range));
  }

  static void lookup(const char* name, void** fn) {
    cudaDriverEntryPointQueryResult found{};
    const cudaError_t e =
        cudaGetDriverEntryPointByVersion(name, fn, 12000, cudaEnableDefault, &found);
    if (e != cudaSuccess || found != cudaDriverEntryPointSuccess || !*fn) {
      throw_error("config error: dist.peer_copies = true needs the CUDA driver's ", name,
                  ", which this driver does not offer: set dist.peer_copies=false");
    }
  }
};

// What a rank tells the others about itself.
struct PeerInfo {
  cudaIpcMemHandle_t buffer;  // the allocation holding its gradient buffer
  uint64_t buffer_offset;     // where the buffer starts in it
  cudaIpcMemHandle_t flags;
  int node;
};

// [begin, begin + count) of a bucket: the chunk rank r averages.
struct Chunk {
  int64_t begin, count;
};

}  // namespace

struct PeerReducer::State {
  Driver driver;
  Backend* backend = nullptr;
  cudaStream_t compute = nullptr, stream = nullptr;
  cudaEvent_t produced = nullptr, reduced = nullptr;
  int rank = 0, world = 1;
  float* buffer = nullptr;
  BucketGather gather;
  double timeout_s = 600.0;
  std::vector<float*> buffers;   // every rank's gradient buffer, mapped into this process
  std::vector<uint32_t*> flags;  // every rank's flags ([stage][rank]), mapped
  std::vector<void*> mappings;   // what to unmap at the end
  float* scratch = nullptr;      // world - 1 pieces
  uint32_t bucket_count = 0, step_count = 0;
  bool idle = true;  // the stream has finished everything queued (false from a launch to finish)

  uint32_t* flag(int owner, Stage stage, int writer) const {
    return flags[owner] + stage * world + writer;
  }

  // Every peer's flag for this rank at `stage` becomes `value` once the stream's work so far is
  // done; then the stream waits until every peer has stored `value` into this rank's flags.
  void exchange(Stage stage, uint32_t value) {
    cuda::PeerSignalParams p{};
    for (int r = 0; r < world; ++r) {
      if (r != rank) p.flags[p.count++] = flag(r, stage, rank);
    }
    p.value = value;
    cuda::peer_signal(p, stream);
    for (int r = 0; r < world; ++r) {
      if (r == rank) continue;
      check_driver(driver.wait_value(reinterpret_cast<CUstream>(stream),
                                     reinterpret_cast<CUdeviceptr>(flag(rank, stage, r)), value,
                                     CU_STREAM_WAIT_VALUE_GEQ),
                   "cuStreamWaitValue32");
    }
  }

  void pull(float* dst, const float* src, int64_t count) {
    if (count == 0) return;
    cuda::check_cuda(
        cudaMemcpyAsync(dst, src, size_t(count) * sizeof(float), cudaMemcpyDefault, stream),
        "cudaMemcpyAsync (from a peer)");
  }

  Chunk chunk(int64_t begin, int64_t count, int r) const {
    const int64_t lo = begin + count * r / world, hi = begin + count * (r + 1) / world;
    return {lo, hi - lo};
  }

  // Averages the bucket [first, last) of the buffer over the ranks.
  void launch(int64_t first, int64_t last) {
    idle = false;
    // The bucket's gradients were written by work queued on the compute stream up to now.
    follow(stream, compute, produced);
    ++bucket_count;
    exchange(kProduced, bucket_count);
    const int64_t count = last - first;
    const Chunk mine = chunk(first, count, rank);
    for (int64_t done = 0; done < mine.count; done += kPieceFloats) {
      const int64_t at = mine.begin + done, len = std::min(kPieceFloats, mine.count - done);
      cuda::PeerMeanParams mean{};
      mean.out = buffer + at;
      mean.count = world;
      mean.n = len;
      int slot = 0;
      for (int r = 0; r < world; ++r) {
        if (r == rank) {
          mean.in[r] = buffer + at;
          continue;
        }
        float* piece = scratch + slot++ * kPieceFloats;
        pull(piece, buffers[r] + at, len);
        mean.in[r] = piece;
      }
      cuda::peer_mean(mean, stream);
    }
    exchange(kAveraged, bucket_count);
    for (int r = 0; r < world; ++r) {
      if (r == rank) continue;
      const Chunk theirs = chunk(first, count, r);
      pull(buffer + theirs.begin, buffers[r] + theirs.begin, theirs.count);
    }
  }
};

PeerReducer::PeerReducer(Communicator& comm, Backend& backend, float* buffer, int64_t n,
                         size_t bucket_bytes, double timeout_s)
    : s_(std::make_unique<State>()) {
  State& s = *s_;
  s.rank = comm.rank();
  s.world = comm.world();
  if (s.world > cuda::kMaxPeerRanks) {
    throw_error("config error: dist.peer_copies = true reduces among at most ", cuda::kMaxPeerRanks,
                " GPUs of one node, and this run has ", s.world,
                " ranks: set dist.peer_copies=false");
  }
  s.compute = static_cast<cudaStream_t>(backend.native_stream());
  if (!s.compute) {
    throw_error("config error: dist.peer_copies = true needs GPUs, and backend ", backend.name(),
                " is not a CUDA backend: set dist.peer_copies=false");
  }
  s.backend = &backend;
  s.buffer = buffer;
  s.gather.bucket_floats = std::max<int64_t>(1, int64_t(bucket_bytes / sizeof(float)));
  s.timeout_s = timeout_s;

  // This rank's flags and scratch, through the backend so that they count in the peak-memory
  // figure.
  const size_t flag_bytes = size_t(kStages * s.world) * sizeof(uint32_t);
  uint32_t* own_flags = static_cast<uint32_t*>(backend.allocate(flag_bytes));
  cuda::check_cuda(cudaMemsetAsync(own_flags, 0, flag_bytes, s.compute), "cudaMemsetAsync (flags)");
  s.scratch = static_cast<float*>(
      backend.allocate(size_t(s.world - 1) * size_t(kPieceFloats) * sizeof(float)));

  PeerInfo mine{};
  CUdeviceptr base = 0;
  size_t size = 0;
  check_driver(s.driver.address_range(&base, &size, reinterpret_cast<CUdeviceptr>(buffer)),
               "cuMemGetAddressRange (gradient buffer)");
  mine.buffer_offset = reinterpret_cast<CUdeviceptr>(buffer) - base;
  if (mine.buffer_offset + uint64_t(n) * sizeof(float) > size) {
    throw_error("peer reduction: the gradient buffer of ", n,
                " floats runs past the end of its allocation");
  }
  cuda::check_cuda(cudaIpcGetMemHandle(&mine.buffer, reinterpret_cast<void*>(base)),
                   "cudaIpcGetMemHandle (gradient buffer)");
  cuda::check_cuda(cudaIpcGetMemHandle(&mine.flags, own_flags), "cudaIpcGetMemHandle (flags)");
  mine.node = comm.node();
  std::vector<PeerInfo> all(size_t(s.world));
  for (int r = 0; r < s.world; ++r) {
    PeerInfo info = mine;
    comm.broadcast(&info, sizeof info, r);
    all[size_t(r)] = info;
  }
  for (const PeerInfo& info : all) {
    if (info.node != mine.node) {
      throw_error(
          "config error: dist.peer_copies = true reduces among the GPUs of one node, and "
          "this run spans several: set dist.peer_copies=false");
    }
  }
  s.buffers.assign(size_t(s.world), nullptr);
  s.flags.assign(size_t(s.world), nullptr);
  for (int r = 0; r < s.world; ++r) {
    if (r == s.rank) {
      s.buffers[r] = buffer;
      s.flags[r] = own_flags;
      continue;
    }
    void* peer_base = nullptr;
    void* peer_flags = nullptr;
    const cudaError_t e1 =
        cudaIpcOpenMemHandle(&peer_base, all[r].buffer, cudaIpcMemLazyEnablePeerAccess);
    const cudaError_t e2 = e1 == cudaSuccess ? cudaIpcOpenMemHandle(&peer_flags, all[r].flags,
                                                                    cudaIpcMemLazyEnablePeerAccess)
                                             : e1;
    if (e1 != cudaSuccess || e2 != cudaSuccess) {
      throw_error("config error: dist.peer_copies = true: rank ", s.rank,
                  " cannot map the memory of rank ", r, "'s GPU (",
                  cudaGetErrorString(e1 != cudaSuccess ? e1 : e2),
                  "); the GPUs need peer access (NVLink or PCIe P2P) and every rank must see "
                  "every GPU: set dist.peer_copies=false");
    }
    s.mappings.push_back(peer_base);
    s.mappings.push_back(peer_flags);
    s.buffers[r] = reinterpret_cast<float*>(static_cast<char*>(peer_base) + all[r].buffer_offset);
    s.flags[r] = static_cast<uint32_t*>(peer_flags);
  }
  cuda::check_cuda(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking), "cudaStreamCreate");
  cuda::check_cuda(cudaEventCreateWithFlags(&s.produced, cudaEventDisableTiming),
                   "cudaEventCreate");
  cuda::check_cuda(cudaEventCreateWithFlags(&s.reduced, cudaEventDisableTiming), "cudaEventCreate");
  // No rank may store into a peer's flags before that peer has zeroed them.
  backend.synchronize();
  double ready = 0;
  comm.allreduce_sum(ready);
}

PeerReducer::~PeerReducer() {
  State& s = *s_;
  // A step cut short (an error on some rank) can leave the stream waiting for a peer forever:
  // then its resources stay as they are, and the process is about to end anyway.
  if (!s.idle) return;
  for (void* m : s.mappings) cudaIpcCloseMemHandle(m);
  s.backend->release(s.flags[s.rank]);
  s.backend->release(s.scratch);
  cudaEventDestroy(s.produced);
  cudaEventDestroy(s.reduced);
  cudaStreamDestroy(s.stream);
}

void PeerReducer::ready(int64_t begin, int64_t end) {
  State& s = *s_;
  s.gather.ready(begin, end, [&](int64_t first, int64_t last) { s.launch(first, last); });
}

void PeerReducer::finish() {
  State& s = *s_;
  s.gather.flush([&](int64_t first, int64_t last) { s.launch(first, last); });
  s.idle = false;
  // Every peer has pulled from this rank's buffer all it needs before anything writes to it.
  s.exchange(kPulled, ++s.step_count);
  follow(s.compute, s.stream, s.reduced);
  if (!wait_for(s.reduced, s.timeout_s, "peer gradient reduction", [] {})) {
    throw_error("peer gradient reduction did not finish within ", s.timeout_s,
                " s: a rank has stalled or died; the job stops (dist.timeout_s sets the limit)");
  }
  s.idle = true;
}

}  // namespace mamba
