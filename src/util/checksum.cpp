#include "util/checksum.h"

#include <zlib.h>

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
