#include "train/tfrecord.h"

#include <isa-l/crc.h>

namespace mamba {

uint32_t crc32c(const void* data, size_t size) {
  // ISA-L's iSCSI CRC leaves the standard pre- and post-inversion to the caller; it takes an int
  // length, so long buffers go in pieces.
  uint32_t crc = 0xffffffffu;
  auto* p = static_cast<unsigned char*>(const_cast<void*>(data));
  while (size > 0) {
    const int n = int(size < (size_t(1) << 30) ? size : (size_t(1) << 30));
    crc = crc32_iscsi(p, n, crc);
    p += n;
    size -= size_t(n);
  }
  return crc ^ 0xffffffffu;
}

uint32_t masked_crc32c(const void* data, size_t size) {
  const uint32_t crc = crc32c(data, size);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

namespace {

void put_le(std::string& out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out += char((value >> (8 * i)) & 0xff);
}

}  // namespace

std::string tfrecord(const std::string& data) {
  std::string out;
  out.reserve(data.size() + 16);
  put_le(out, data.size(), 8);
  put_le(out, masked_crc32c(out.data(), 8), 4);
  out += data;
  put_le(out, masked_crc32c(data.data(), data.size()), 4);
  return out;
}

}  // namespace mamba
