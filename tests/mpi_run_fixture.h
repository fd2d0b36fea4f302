// Training jobs under mpirun (tests/run_fixture.h's corpus and config), and the comparisons
// multi-rank tests make between runs: step by step in their metrics, and in their checkpoints.
#pragma once
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "cli_runner.h"
#include "mpirun.h"
#include "run_fixture.h"
#include "two_gpus.h"

namespace mamba::test {

class MpiRunFixture : public RunFixture {
 protected:
  // `mamba train config args` on `ranks` ranks; its output goes to <run>.log. env: "" or one
  // "NAME=value", set for every rank. mpirun_args: more options of mpirun (a hostfile). True
  // when it succeeded.
  static bool train(const std::string& name, const std::string& args, const std::string& env = "",
                    int ranks = 2, const std::string& mpirun_args = "") {
    const std::string cmd = launch(env, ranks, mpirun_args) + MAMBA_BINARY + " train " +
                            config_of(name) + " " + args + " > " + log(name) + " 2>&1";
    return std::system(cmd.c_str()) == 0;
  }

  // An MPI check program (tests/mpi) on 2 ranks, env as for train(), its output in <name>.log:
  // it must exit 0 and print `success`.
  static void expect_check_passes(const std::string& name, const std::string& program,
                                  const std::string& success, const std::string& env = "") {
    const std::string cmd = launch(env, 2) + program + " > " + log(name) + " 2>&1";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << bytes_of(log(name));
    EXPECT_TRUE(contains(bytes_of(log(name)), success)) << bytes_of(log(name));
  }

  // mpirun for `ranks` ranks with env ("" or one "NAME=value") set for every rank.
  static std::string launch(const std::string& env, int ranks,
                            const std::string& mpirun_args = "") {
    const std::string forward = env.empty() ? "" : "-x " + env.substr(0, env.find('=')) + " ";
    return (env.empty() ? "" : env + " ") + mpirun(ranks) + mpirun_args + " " + forward;
  }

  // The config of a run, written the first time it is asked for.
  static std::string config_of(const std::string& name) {
    const std::string path = (root_ / name / "config.yaml").string();
    return std::filesystem::exists(path) ? path : config(name);
  }

  static std::string log(const std::string& name) { return (root_ / name).string() + ".log"; }

  // The weights and the optimizer state of step 8 agree within `tolerance` (relative).
  static void expect_same_state(const std::string& a, const std::string& b, double tolerance) {
    for (const char* file : {"/model.safetensors", "/optimizer.safetensors"}) {
      const std::string step = "/step_00000008";
      EXPECT_LT(relative_difference(tensors(dir(a) + step + file), tensors(dir(b) + step + file)),
                tolerance)
          << file;
    }
  }
};

}  // namespace mamba::test
