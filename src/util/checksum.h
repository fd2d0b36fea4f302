// CRC-32 (zlib's) of files and buffers, for the integrity records of checkpoints: fast enough to
// run over every byte written and read, and strong enough to catch bit flips and torn files.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace mamba {

struct FileDigest {
  uint64_t bytes = 0;
  uint32_t crc32 = 0;

  bool operator==(const FileDigest& o) const { return bytes == o.bytes && crc32 == o.crc32; }
  bool operator!=(const FileDigest& o) const { return !(*this == o); }
};

// Continues `crc` (0 to start) over data[0..size).
uint32_t crc32_update(uint32_t crc, const void* data, size_t size);
// The CRC of A followed by B from the CRCs of both and B's length (pieces checksummed apart).
uint32_t crc32_concat(uint32_t crc_a, uint32_t crc_b, uint64_t size_b);

// Accumulates the digest of bytes as they are written, piece by piece.
class DigestBuilder {
 public:
  void add(const void* data, size_t size) {
    digest_.crc32 = crc32_update(digest_.crc32, data, size);
    digest_.bytes += size;
  }
  const FileDigest& digest() const { return digest_; }

 private:
  FileDigest digest_;
};

// The CRC of bytes [offset, offset + bytes) of a file, checksummed apart from the rest (by
// another thread or process).
struct DigestPiece {
  uint64_t offset = 0, bytes = 0;
  uint32_t crc32 = 0;
};

// The digest of a file of file_bytes bytes from pieces that cover it, in any order. Throws
// mamba::Error naming `what` when they leave a gap or overlap.
FileDigest combine_pieces(std::vector<DigestPiece> pieces, uint64_t file_bytes,
                          const std::string& what);

// The digest of a file's whole content. Throws mamba::Error naming the file when unreadable.
FileDigest digest_file(const std::string& path);

// "1a2b3c4d": how digests are stored in JSON.
std::string crc32_hex(uint32_t crc);

}  // namespace mamba
