#include "util/host_memory.h"

#include <cstdint>
#include <cstdio>
#include <cstring>

namespace mamba {

size_t available_host_memory() {
  std::FILE* f = std::fopen("/proc/meminfo", "r");
  if (!f) return SIZE_MAX;
  char line[256];
  size_t kib = 0;
  bool found = false;
  while (!found && std::fgets(line, sizeof line, f)) {
    found = std::sscanf(line, "MemAvailable: %zu kB", &kib) == 1;
  }
  std::fclose(f);
  return found ? kib * 1024 : SIZE_MAX;
}

size_t peak_resident_memory() {
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (!f) return 0;
  char line[256];
  size_t kib = 0;
  bool found = false;
  while (!found && std::fgets(line, sizeof line, f)) {
    found = std::sscanf(line, "VmHWM: %zu kB", &kib) == 1;
  }
  std::fclose(f);
  return found ? kib * 1024 : 0;
}

}  // namespace mamba
