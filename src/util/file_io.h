// Whole reads and writes at an offset: pread/pwrite return short counts and EINTR, which every
// caller would otherwise loop over itself.
#pragma once
#include <cstddef>
#include <cstdint>

namespace mamba {

// Reads size bytes at offset. False when it cannot: errno says why, or is 0 at the end of the
// file.
bool pread_all(int fd, void* buffer, size_t size, uint64_t offset);
// Writes size bytes at offset. False when it cannot, with errno set.
bool pwrite_all(int fd, const void* data, size_t size, uint64_t offset);

}  // namespace mamba
