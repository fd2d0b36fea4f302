#include "dist/communicator.h"

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <thread>

#include "util/error.h"

namespace mamba {

namespace {

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator() {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      int provided = 0;
      if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        throw_error("distributed error: MPI_Init failed: check the mpirun setup");
      }
      std::atexit([] {
        int finalized = 0;
        MPI_Finalized(&finalized);
        if (!finalized) MPI_Finalize();
      });
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &world_);
    job_rank_ = rank_;
    MPI_Comm host;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &host);
    MPI_Comm_rank(host, &local_rank_);
    if (const int k = test_ranks_per_node(); k > 0) {
      node_ = rank_ / k;
    } else {
      // The hosts' first ranks, in rank order, number the nodes.
      MPI_Comm leaders;
      MPI_Comm_split(MPI_COMM_WORLD, local_rank_ == 0 ? 0 : MPI_UNDEFINED, rank_, &leaders);
      if (leaders != MPI_COMM_NULL) {
        MPI_Comm_rank(leaders, &node_);
        MPI_Comm_free(&leaders);
      }
      MPI_Bcast(&node_, 1, MPI_INT, 0, host);
    }
    MPI_Comm_free(&host);
  }

  // A part of `parent` (split()); this process's host and node stay those of the parent.
  MpiCommunicator(MPI_Comm comm, const MpiCommunicator& parent)
      : comm_(comm),
        job_rank_(parent.job_rank_),
        local_rank_(parent.local_rank_),
        node_(parent.node_),
        timeout_s_(parent.timeout_s_) {
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &world_);
  }

  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (comm_ != MPI_COMM_WORLD && !finalized) MPI_Comm_free(&comm_);
  }

  int rank() const override { return rank_; }
  int world() const override { return world_; }
  int local_rank() const override { return local_rank_; }
  int node() const override { return node_; }

  std::unique_ptr<Communicator> split(int colour, int key) override {
    MPI_Comm part;
    check(MPI_Comm_split(comm_, colour, key, &part));
    return std::make_unique<MpiCommunicator>(part, *this);
  }

  void allreduce_mean(float* data, int64_t n) override {
    if (world_ == 1) return;
    // MPI counts are int: reduce in pieces below INT_MAX elements.
    for (int64_t begin = 0; begin < n; begin += INT_MAX / 2) {
      const int count = int(std::min<int64_t>(INT_MAX / 2, n - begin));
      MPI_Request request;
      check(MPI_Iallreduce(MPI_IN_PLACE, data + begin, count, MPI_FLOAT, MPI_SUM, comm_, &request));
      wait(request, "gradient all-reduce");
    }
    const float inv = 1.0f / float(world_);
    for (int64_t i = 0; i < n; ++i) data[i] *= inv;
  }

  void allreduce_sum(uint32_t* data, int64_t n) override {
    if (world_ == 1) return;
    for (int64_t begin = 0; begin < n; begin += INT_MAX / 2) {
      const int count = int(std::min<int64_t>(INT_MAX / 2, n - begin));
      MPI_Request request;
      check(MPI_Iallreduce(MPI_IN_PLACE, data + begin, count, MPI_UINT32_T, MPI_SUM, comm_,
                           &request));
      wait(request, "weight all-reduce");
    }
  }

  double allreduce_sum(double x) override {
    if (world_ == 1) return x;
    double sum = 0.0;
    MPI_Request request;
    check(MPI_Iallreduce(&x, &sum, 1, MPI_DOUBLE, MPI_SUM, comm_, &request));
    wait(request, "all-reduce");
    return sum;
  }

  void broadcast(void* data, size_t bytes, int root) override {
    if (world_ == 1) return;
    MPI_Request request;
    check(MPI_Ibcast(data, int(bytes), MPI_BYTE, root, comm_, &request));
    wait(request, "broadcast");
  }

  void reduce_scatter_mean(const float* send, float* recv, int64_t count) override {
    check_count(count);
    if (world_ == 1) {
      std::copy(send, send + count, recv);
      return;
    }
    MPI_Request request;
    check(MPI_Ireduce_scatter_block(send, recv, int(count), MPI_FLOAT, MPI_SUM, comm_, &request));
    wait(request, "gradient reduce-scatter");
    const float inv = 1.0f / float(world_);
    for (int64_t i = 0; i < count; ++i) recv[i] *= inv;
  }

  void allgather(float* data, int64_t count) override {
    check_count(count);
    if (world_ == 1) return;
    MPI_Request request;
    check(MPI_Iallgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, data, int(count), MPI_FLOAT, comm_,
                         &request));
    wait(request, "weight all-gather");
  }

  void send(const void* data, size_t bytes, int dest) override {
    const char* p = static_cast<const char*>(data);
    for (size_t done = 0; done < bytes; done += kPiece) {
      MPI_Request request;
      check(MPI_Isend(p + done, int(std::min(kPiece, bytes - done)), MPI_BYTE, dest, 0, comm_,
                      &request));
      wait(request, "send");
    }
  }

  void receive(void* data, size_t bytes, int source) override {
    char* p = static_cast<char*>(data);
    for (size_t done = 0; done < bytes; done += kPiece) {
      MPI_Request request;
      check(MPI_Irecv(p + done, int(std::min(kPiece, bytes - done)), MPI_BYTE, source, 0, comm_,
                      &request));
      wait(request, "receive");
    }
  }

  void set_timeout(double seconds) override { timeout_s_ = seconds; }

  [[noreturn]] void abort(int status) override {
    int job = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &job);
    if (job > 1) MPI_Abort(MPI_COMM_WORLD, status);
    std::exit(status);
  }

 private:
  // MPI counts are int; point-to-point messages go in pieces of this many bytes.
  static constexpr size_t kPiece = size_t{1} << 30;

  static void check_count(int64_t count) {
    if (count > INT_MAX) throw_error("distributed error: a collective of ", count, " floats");
  }

  static void check(int rc) {
    if (rc != MPI_SUCCESS) throw_error("distributed error: MPI collective failed (code ", rc, ")");
  }

  // Polls, sleeping briefly between tests, so that a stalled peer costs no CPU and surfaces as
  // an error after the timeout.
  void wait(MPI_Request& request, const char* what) const {
    const auto start = std::chrono::steady_clock::now();
    auto pause = std::chrono::microseconds(1);
    while (true) {
      int done = 0;
      check(MPI_Test(&request, &done, MPI_STATUS_IGNORE));
      if (done) return;
      const double waited =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (waited > timeout_s_) {
        throw_error("distributed error: rank ", job_rank_, ": the ", what,
                    " did not finish within ", timeout_s_,
                    " s (dist.timeout_s): another rank has stalled or died; see its "
                    "log. The job stops.");
      }
      std::this_thread::sleep_for(pause);
      pause = std::min(pause * 2, std::chrono::microseconds(1000));
    }
  }

  // The test hook MAMBA_TEST_RANKS_PER_NODE (communicator.h); 0 when unset.
  static int test_ranks_per_node() {
    const char* text = std::getenv("MAMBA_TEST_RANKS_PER_NODE");
    if (!text) return 0;
    char* end = nullptr;
    const long k = std::strtol(text, &end, 10);
    if (end == text || *end != '\0' || k < 1 || k > INT_MAX) {
      throw_error("distributed error: MAMBA_TEST_RANKS_PER_NODE = '", text,
                  "': expected a positive number of ranks per node, or unset it");
    }
    return int(k);
  }

  MPI_Comm comm_ = MPI_COMM_WORLD;
  int rank_ = 0, world_ = 1;
  int job_rank_ = 0;  // in MPI_COMM_WORLD, for messages
  int local_rank_ = 0, node_ = 0;
  double timeout_s_ = 600.0;
};

}  // namespace

std::string broadcast_string(Communicator& comm, std::string text, int root) {
  uint64_t size = text.size();
  comm.broadcast(&size, sizeof size, root);
  text.resize(size);
  comm.broadcast(text.data(), size, root);
  return text;
}

Communicator& mpi_world() {
  static MpiCommunicator world;
  return world;
}

}  // namespace mamba
