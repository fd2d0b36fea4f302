// Gradient averaging among the GPUs of one node by their copy engines (dist.peer_copies), in
// buckets while the backward pass runs, as NcclReducer does, but without collective kernels
// that hold SMs while backward needs them. Every rank maps every other rank's gradient buffer
// (CUDA IPC). Per bucket, cut into one chunk per rank, on a communication stream:
//   1. each rank pulls its own chunk of the bucket from every peer's buffer with copies, in
//      pieces, and averages it in place (a short kernel; ranks added in rank order);
//   2. each rank pulls every other chunk, now averaged, from the rank that owns it.
// The ranks order these steps through counters in each other's memory: a rank's stream stores
// the bucket's number into its peers' flags when its gradients are final (before 1) and when its
// chunk is averaged (before 2), and waits on its own flags for every peer's store
// (cuStreamWaitValue32). finish() adds a third store and wait (every peer has pulled all it
// needs), so that no rank writes gradients that a peer may still read. A peer that fails or
// stalls ends the job with a clear error after the timeout instead of a hang.
// This header names no CUDA type.
#pragma once
#include <cstdint>
#include <memory>

#include "dist/communicator.h"
#include "kernels/backend.h"

namespace mamba {

class PeerReducer {
 public:
  // Collective over comm: every rank of it must run on this node, on a GPU that can reach the
  // others' memory. backend: the rank's CUDA backend (its compute stream orders the buckets).
  // buffer: the fp32 gradient buffer of n floats, identical layout on every rank. Throws
  // mamba::Error naming what is missing (another node, no peer access, too many ranks).
  PeerReducer(Communicator& comm, Backend& backend, float* buffer, int64_t n, size_t bucket_bytes,
              double timeout_s);
  ~PeerReducer();
  PeerReducer(const PeerReducer&) = delete;
  PeerReducer& operator=(const PeerReducer&) = delete;

  // [begin, end) of the buffer is final; slices become buckets as bucket_gather.h says.
  void ready(int64_t begin, int64_t end);
  // Launches what is left, makes the compute stream wait for all buckets, and checks (with the
  // timeout) that they completed.
  void finish();

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace mamba
