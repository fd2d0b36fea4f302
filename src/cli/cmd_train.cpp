// `mamba train CONFIG [key=value ...]`: the training run, as one process or under mpirun.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "dist/communicator.h"
#include "train/experiment_config.h"
#include "train/trainer.h"
#include "util/error.h"

namespace mamba::cli {

int train(int argc, char** argv) {
  if (argc < 1 || !std::strcmp(argv[0], "--help") || !std::strcmp(argv[0], "-h")) {
    std::printf(
        "usage: mamba train CONFIG.yaml [section.key=value ...]\n"
        "Trains the model described by CONFIG (see configs/), e.g.\n"
        "  mamba train configs/tiny.yaml train.steps=200 optim.lr=1e-3\n"
        "Data parallel: mpirun -np N mamba train CONFIG (rank 0 logs; every rank writes its\n"
        "share of each checkpoint).\n"
        "SIGTERM / Ctrl-C finishes the current step, writes a checkpoint and exits 0;\n"
        "running the same command again resumes (checkpoint.resume: auto).\n");
    return argc < 1 ? 2 : 0;
  }
  Communicator& comm = mpi_world();
  try {
    const std::vector<std::string> overrides(argv + 1, argv + argc);
    const ExperimentConfig config = load_experiment_config(argv[0], overrides);
    comm.set_timeout(config.dist.timeout_s);
    Trainer(config, comm).run();
  } catch (const std::exception& e) {
    if (comm.world() == 1) throw;
    // One rank's failure, of whatever kind, must end the job, not leave the others waiting in a
    // collective.
    const bool ours = dynamic_cast<const Error*>(&e) != nullptr;
    std::fprintf(stderr, "rank %d: %s%s\n", comm.rank(), ours ? "" : "internal error: ", e.what());
    std::fflush(stderr);
    comm.abort(ours ? 2 : 3);
  }
  return 0;
}

}  // namespace mamba::cli
