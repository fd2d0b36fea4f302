#include "util/file_io.h"

#include <unistd.h>

#include <cerrno>
#include <cstdint>

namespace mamba {

bool pread_all(int fd, void* buffer, size_t size, uint64_t offset) {
  auto* p = static_cast<uint8_t*>(buffer);
  while (size > 0) {
    const ssize_t got = ::pread(fd, p, size, off_t(offset));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      if (got == 0) errno = 0;
      return false;
    }
    p += got;
    size -= size_t(got);
    offset += uint64_t(got);
  }
  return true;
}

bool pwrite_all(int fd, const void* data, size_t size, uint64_t offset) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (size > 0) {
    const ssize_t put = ::pwrite(fd, p, size, off_t(offset));
    if (put < 0 && errno == EINTR) continue;
    if (put <= 0) {
      if (put == 0) errno = EIO;
      return false;
    }
    p += put;
    size -= size_t(put);
    offset += uint64_t(put);
  }
  return true;
}

}  // namespace mamba
