#include "util/checksum.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "util/error.h"

namespace mamba {

uint32_t crc32_update(uint32_t crc, const void* data, size_t size) {
  return uint32_t(crc32_z(crc, static_cast<const Bytef*>(data), size));
}

uint32_t crc32_concat(uint32_t crc_a, uint32_t crc_b, uint64_t size_b) {
  return uint32_t(crc32_combine64(crc_a, crc_b, z_off64_t(size_b)));
}

FileDigest combine_pieces(std::vector<DigestPiece> pieces, uint64_t file_bytes,
                          const std::string& what) {
  std::sort(pieces.begin(), pieces.end(),
            [](const DigestPiece& a, const DigestPiece& b) { return a.offset < b.offset; });
  FileDigest digest;
  for (const DigestPiece& p : pieces) {
    if (p.offset != digest.bytes) {
      throw_error("internal error: the pieces of ", what, " leave bytes ", digest.bytes, " to ",
                  p.offset, " uncovered or covered twice");
    }
    digest.crc32 = crc32_concat(digest.crc32, p.crc32, p.bytes);
    digest.bytes += p.bytes;
  }
  if (digest.bytes != file_bytes) {
    throw_error("internal error: the pieces of ", what, " cover ", digest.bytes, " of its ",
                file_bytes, " bytes");
  }
  return digest;
}

FileDigest digest_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw_error("cannot read ", path, ": ", std::strerror(errno));
  DigestBuilder digest;
  std::vector<char> buffer(size_t(1) << 22);
  size_t got = 0;
  while ((got = std::fread(buffer.data(), 1, buffer.size(), f)) > 0) digest.add(buffer.data(), got);
  const bool failed = std::ferror(f) != 0;
  std::fclose(f);
  if (failed) throw_error("cannot read ", path, ": I/O error");
  return digest.digest();
}

std::string crc32_hex(uint32_t crc) {
  char text[16];
  std::snprintf(text, sizeof text, "%08x", crc);
  return text;
}

}  // namespace mamba
