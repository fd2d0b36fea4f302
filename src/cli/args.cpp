#include "cli/args.h"

#include <algorithm>
#include <charconv>
#include <cstdio>

#include "util/error.h"

namespace mamba::cli {

Args parse_args(const std::string& command, int argc, char** argv,
                const std::vector<std::string>& known) {
  Args a;
  a.command = command;
  for (int i = 0; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      a.help = true;
    } else if (arg.rfind("--", 0) == 0) {
      const std::string name = arg.substr(2);
      if (std::find(known.begin(), known.end(), name) == known.end()) {
        throw_error("mamba ", command, ": unknown option ", arg, " (see mamba ", command,
                    " --help)");
      }
      if (i + 1 >= argc) throw_error("mamba ", command, ": option ", arg, " needs a value");
      a.flags[name] = argv[++i];
    } else {
      a.positional.push_back(arg);
    }
  }
  return a;
}

std::optional<int> usage_exit(const Args& a, size_t positional, const char* usage) {
  if (!a.help && a.positional.size() == positional) return std::nullopt;
  std::printf("%s", usage);
  return a.help ? 0 : 2;
}

std::string Args::get(const std::string& name, const std::string& fallback) const {
  auto it = flags.find(name);
  return it == flags.end() ? fallback : it->second;
}

int Args::get_int(const std::string& name, int fallback, int lo, int hi) const {
  auto it = flags.find(name);
  if (it == flags.end()) return fallback;
  int v = 0;
  const std::string& text = it->second;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v < lo || v > hi) {
    throw_error("mamba ", command, ": --", name, " = '", text, "': expected an integer from ", lo,
                " to ", hi);
  }
  return v;
}

double Args::get_double(const std::string& name, double fallback, double lo, double hi) const {
  auto it = flags.find(name);
  if (it == flags.end()) return fallback;
  double v = 0;
  const std::string& text = it->second;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || !(v >= lo && v <= hi)) {
    throw_error("mamba ", command, ": --", name, " = '", text, "': expected a number from ", lo,
                " to ", hi);
  }
  return v;
}

}  // namespace mamba::cli
