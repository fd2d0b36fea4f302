#include "util/host_memory.h"

#include <cstdint>
#include <cstdio>
#include <cstring>

namespace mamba {

namespace {

// The value of the "<key> <n> kB" line of a /proc file, in bytes; `missing` when it cannot be
// read.
size_t proc_bytes(const char* path, const char* format, size_t missing) {
  std::FILE* f = std::fopen(path, "r");
  if (!f) return missing;
  char line[256];
  size_t kib = 0;
  bool found = false;
  while (!found && std::fgets(line, sizeof line, f)) found = std::sscanf(line, format, &kib) == 1;
  std::fclose(f);
  return found ? kib * 1024 : missing;
}

}  // namespace

size_t available_host_memory() {
  return proc_bytes("/proc/meminfo", "MemAvailable: %zu kB", SIZE_MAX);
}

size_t peak_resident_memory() {
  return proc_bytes("/proc/self/status", "VmHWM: %zu kB", 0);
}

}  // namespace mamba
