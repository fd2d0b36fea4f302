// TFRecord framing, the container of TensorBoard's event files: each record is its length
// (uint64), the masked CRC-32C of those 8 bytes, the data, and the masked CRC-32C of the data,
// all little-endian.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace mamba {

// CRC-32C (Castagnoli, as in iSCSI) of data[0..size).
uint32_t crc32c(const void* data, size_t size);
// The CRC rotated and offset, as TFRecord stores it, so that a CRC over bytes that hold CRCs
// does not degenerate.
uint32_t masked_crc32c(const void* data, size_t size);
// `data` framed as one record.
std::string tfrecord(const std::string& data);

}  // namespace mamba
