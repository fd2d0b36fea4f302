// Data-parallel communication. A process learns its rank and the world size here; gradients are
// averaged with one all-reduce over the single gradient buffer, or, with the optimizer sharded
// (ZeRO-1), reduce-scattered and the weights all-gathered. The MPI implementation serves
// CPU processes (and is the interface the NCCL path implements for GPUs); a plain run without
// mpirun is world 1.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace mamba {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world() const = 0;
  // Rank among the processes of this host (picks the GPU).
  virtual int local_rank() const = 0;
  // Index of this rank's node, 0 up, for hierarchical reduction: the hosts in the order of
  // their first rank. The test hook MAMBA_TEST_RANKS_PER_NODE=k plays nodes of k ranks on one
  // host instead: node = rank / k (the GPU is still picked by local_rank).
  virtual int node() const = 0;
  // The ranks whose `colour` is this rank's, ordered by `key`, as a communicator of their own
  // (collective over this communicator; MPI_Comm_split).
  virtual std::unique_ptr<Communicator> split(int colour, int key) = 0;
  // In place: every rank ends with the mean over ranks of data[0..n).
  virtual void allreduce_mean(float* data, int64_t n) = 0;
  // The sum over ranks of x (losses, counters), identical on every rank.
  virtual double allreduce_sum(double x) = 0;
  // In place: the sum over ranks of data[0..n), wrapping. ZeRO-1 sends fp32 bits this way that
  // one rank holds and the others leave zero: x + 0 = x for every bit pattern.
  virtual void allreduce_sum(uint32_t* data, int64_t n) = 0;
  // data[0..bytes) of rank `root` on every rank.
  virtual void broadcast(void* data, size_t bytes, int root) = 0;
  // ZeRO-1 (shard_map.h). send holds world blocks of count floats; rank r receives in recv the
  // mean over ranks of block r.
  virtual void reduce_scatter_mean(const float* send, float* recv, int64_t count) = 0;
  // In place: data holds world blocks of count floats; every rank ends with block r of rank r.
  virtual void allgather(float* data, int64_t count) = 0;
  // Point to point (gathering shards to the checkpoint writer): a send meets a receive.
  virtual void send(const void* data, size_t bytes, int dest) = 0;
  virtual void receive(void* data, size_t bytes, int source) = 0;
  // A collective that has not completed after this long means a rank has stalled or died: it
  // throws mamba::Error saying so (the caller then ends the job) instead of waiting forever.
  virtual void set_timeout(double seconds) = 0;
  // Takes the whole job down after a fatal error on one rank, so that no rank waits forever.
  [[noreturn]] virtual void abort(int status) = 0;
};

// `text` of rank `root` on every rank.
std::string broadcast_string(Communicator& comm, std::string text, int root);

// Initialises MPI once per process (MPI_Init_thread) and returns its world communicator.
// MPI is finalised at process exit.
Communicator& mpi_world();

}  // namespace mamba
