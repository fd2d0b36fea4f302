// All-reduce benchmark: the gradient all-reduce of training (dist/nccl_reducer.h, fp32 or bf16 on
// the wire) over buffers of 1 MiB to 1 GiB, one process per GPU under mpirun. Prints one JSON
// line per size with the time and the bus bandwidth, 2 (W - 1) / W x bytes / time, NCCL's measure
// of the link. Run it with NCCL_P2P_DISABLE=1 NCCL_SHM_DISABLE=1 to force NCCL's network
// transport between the GPUs of one host, as between two nodes. --hierarchical 1 reduces by node
// as dist.hierarchical does (reduce-scatter in the node, all-reduce across nodes, all-gather).
//   mpirun -np 2 bench_allreduce [--bf16 0|1] [--hierarchical 0|1] [--max-mib 1024]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "dist/communicator.h"
#include "dist/hierarchy.h"
#include "dist/nccl_reducer.h"
#include "kernels/cuda/cuda_backend.h"

namespace {

std::string flag(int argc, char** argv, const char* name, const std::string& fallback) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (!std::strcmp(argv[i], name)) return argv[i + 1];
  }
  return fallback;
}

}  // namespace

int main(int argc, char** argv) try {
  mamba::Communicator& comm = mamba::mpi_world();
  const bool bf16 = flag(argc, argv, "--bf16", "0") == "1";
  const bool hierarchical = flag(argc, argv, "--hierarchical", "0") == "1";
  if (hierarchical) mamba::check_even_nodes(comm);
  const int64_t max_floats = std::stoll(flag(argc, argv, "--max-mib", "1024")) << 18;
  const auto backend =
      mamba::make_cuda_backend(comm.local_rank() % mamba::cuda_device_count(), true);
  float* buffer = static_cast<float*>(backend->allocate(size_t(max_floats) * sizeof(float)));
  backend->fill_zero(buffer, size_t(max_floats) * sizeof(float));
  for (int64_t n = int64_t(1) << 18; n <= max_floats; n *= 4) {
    // A communicator per size (each needs its own id), with one bucket of the whole buffer, so
    // that the size is what one collective moves.
    std::string id = comm.rank() == 0 ? mamba::nccl_unique_id() : std::string(128, '\0');
    comm.broadcast(id.data(), id.size(), 0);
    mamba::NcclReducer reducer(id, comm.rank(), comm.world(), *backend, buffer, n,
                               size_t(n) * sizeof(float), 600.0, bf16);
    if (hierarchical) reducer.split_by_node(comm.node());
    std::vector<double> ms;
    for (int i = 0; i < 12; ++i) {
      comm.allreduce_sum(0.0);
      const auto t0 = std::chrono::steady_clock::now();
      reducer.ready(0, n);
      reducer.finish();
      backend->synchronize();
      const auto t1 = std::chrono::steady_clock::now();
      if (i >= 2) ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    }
    std::sort(ms.begin(), ms.end());
    const double median = ms[ms.size() / 2];
    const double wire = double(n) * (bf16 ? 2 : 4);
    const double busbw = 2.0 * (comm.world() - 1) / comm.world() * wire / (median / 1e3) / 1e9;
    if (comm.rank() == 0) {
      std::printf(
          "{\"bench\": \"allreduce\", \"world\": %d, \"hierarchical\": %d, \"dtype\": \"%s\", "
          "\"mib\": %.0f, "
          "\"wire_mib\": %.0f, \"ms\": %.3f, \"busbw_gbs\": %.1f}\n",
          comm.world(), int(hierarchical), bf16 ? "bf16" : "fp32", double(n) * 4 / (1 << 20),
          wire / (1 << 20), median, busbw);
      std::fflush(stdout);
    }
  }
  backend->release(buffer);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "%s\n", e.what());
  return 2;
}
