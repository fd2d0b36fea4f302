// Runs the built `mamba` executable for CLI tests and captures its exit status and output.
#pragma once
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

namespace mamba::test {

struct CliResult {
  int status;          // exit status of the process
  std::string output;  // stdout and stderr together
};

inline bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

inline CliResult run_mamba(const std::string& args) {
  const std::string command = std::string(MAMBA_BINARY) + " " + args + " 2>&1";
  CliResult r{-1, ""};
  std::FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) r.output.append(buf.data(), n);
  const int raw = pclose(pipe);
  r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  return r;
}

}  // namespace mamba::test
