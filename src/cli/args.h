// Minimal flag parsing for the subcommands: positional arguments, then "--name value" flags from a
// known list. Unknown flags and missing values are one-line errors naming the command.
#pragma once
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace mamba::cli {

struct Args {
  std::vector<std::string> positional;
  std::map<std::string, std::string> flags;

  std::string get(const std::string& name, const std::string& fallback) const;
  // Numbers outside [lo, hi] (and NaN) are one-line errors naming the flag and the range.
  int get_int(const std::string& name, int fallback, int lo, int hi) const;
  double get_double(const std::string& name, double fallback, double lo, double hi) const;
  bool help = false;
  std::string command;
};

// known: flag names without the dashes, e.g. {"prompt", "tokens"}.
Args parse_args(const std::string& command, int argc, char** argv,
                const std::vector<std::string>& known);

// The exit status when the command should only print its usage: 0 for --help, 2 when the number
// of positional arguments is not `positional`; nullopt when it should run.
std::optional<int> usage_exit(const Args& a, size_t positional, const char* usage);

}  // namespace mamba::cli
