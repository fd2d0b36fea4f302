// Subcommands of the `mamba` executable. Each takes the arguments after its name and returns the
// process exit status; mamba::Error escaping one is printed by main as a one-line error.
#pragma once

namespace mamba::cli {

int check_golden(int argc, char** argv);
int prepare(int argc, char** argv);
int tokenize(int argc, char** argv);
int train(int argc, char** argv);
int generate(int argc, char** argv);
int eval(int argc, char** argv);
int export_model(int argc, char** argv);

}  // namespace mamba::cli
