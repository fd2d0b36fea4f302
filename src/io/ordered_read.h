// Reads a file front to back faster than one thread can, with bounded memory: several threads
// read (pread, large chunks) and checksum chunks ahead of the consumer, which sees them in file
// order on the calling thread (so it may use a device, whose context is per thread).
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "util/checksum.h"

namespace mamba {

// Calls consume(offset, data, size) for every chunk of the file, in order, on the calling thread;
// at most 2 x threads chunks of chunk_bytes are in memory. Returns the digest of the whole file.
// Throws mamba::Error naming the file when it cannot be read; an exception from consume
// propagates after the readers have stopped.
FileDigest read_file_in_order(
    const std::string& path, size_t chunk_bytes, int threads,
    const std::function<void(uint64_t offset, const uint8_t* data, size_t size)>& consume);

// [offset, offset + size) of a file.
struct FileExtent {
  uint64_t offset = 0, size = 0;
};

// As read_file_in_order, for the given extents only (in their order; an extent is read in chunks
// of chunk_bytes): returns the digest of each extent. An extent past the end of the file is an
// Error naming the file.
std::vector<FileDigest> read_extents_in_order(
    const std::string& path, const std::vector<FileExtent>& extents, size_t chunk_bytes,
    int threads,
    const std::function<void(uint64_t offset, const uint8_t* data, size_t size)>& consume);

}  // namespace mamba
