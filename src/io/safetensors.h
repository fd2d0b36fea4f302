// Reader and writer for the safetensors format (https://huggingface.co/docs/safetensors): an
// 8-byte little-endian header length N, N bytes of JSON header, then the raw little-endian tensor
// bytes. It is what PyTorch/mamba_ssm checkpoints and our golden test files use.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "util/checksum.h"

namespace mamba {

enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U64, U32, U16, U8, BOOL };

// bf16 (the upper 16 bits of fp32) rounded to nearest even, as PyTorch's .to(torch.bfloat16).
std::vector<uint16_t> to_bf16(const float* src, int64_t n);

// The header spelling ("F32", "BF16", ...).
const char* dtype_name(DType dtype);
std::size_t dtype_size(DType dtype);

struct TensorInfo {
  DType dtype;
  std::vector<int64_t> shape;
  uint64_t begin, end;  // byte offsets relative to the start of the data section

  int64_t numel() const;
};

// Loads the whole file on construction and validates every header entry up front, so later
// accessors only fail on caller mistakes (unknown name, wrong shape or dtype).
class SafetensorsReader {
 public:
  // Throws mamba::Error naming the file if it is unreadable, truncated or malformed.
  explicit SafetensorsReader(const std::string& path);

  const std::string& path() const { return path_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  std::vector<std::string> names() const;  // sorted
  bool has(const std::string& name) const { return tensors_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const;

  // Converts F32/F16/BF16/F64 to float32. A non-empty `shape` must equal the stored shape.
  std::vector<float> read_f32(const std::string& name,
                              const std::vector<int64_t>& shape = {}) const;
  // Widens any integer dtype except U64 (which could overflow) to int64.
  std::vector<int64_t> read_i64(const std::string& name,
                                const std::vector<int64_t>& shape = {}) const;
  // For filling preallocated parameter buffers; `numel` must equal the tensor's element count.
  void read_f32_into(const std::string& name, float* dst, int64_t numel) const;
  // The digest of the whole file as it was read.
  FileDigest digest() const;

 private:
  const uint8_t* data(const TensorInfo& info) const {
    return bytes_.data() + data_start_ + info.begin;
  }
  void check_shape(const std::string& name, const std::vector<int64_t>& shape) const;

  std::string path_;
  std::vector<uint8_t> bytes_;
  std::size_t data_start_ = 0;
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// A safetensors file read front to back in chunks, for files too large to hold in memory (a
// checkpoint's optimizer state): the constructor reads and validates only the header, with the
// checks and errors of SafetensorsReader; read() streams the rest (read_file_in_order).
class SafetensorsStream {
 public:
  explicit SafetensorsStream(const std::string& path);

  const std::string& path() const { return path_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool has(const std::string& name) const { return tensors_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const;
  // Where the data section begins: TensorInfo offsets count from here.
  uint64_t data_start() const { return data_start_; }

  // Receives a piece of a tensor's stored bytes: offset is relative to the tensor's first byte.
  using Sink = std::function<void(const std::string& name, const TensorInfo& info, uint64_t offset,
                                  const uint8_t* data, size_t size)>;
  // Hands every tensor's bytes to sink, in file order, on the calling thread; `threads` threads
  // read chunk_bytes at a time. Returns the digest of the whole file.
  FileDigest read(const Sink& sink, size_t chunk_bytes, int threads) const;

 private:
  std::string path_;
  uint64_t data_start_ = 0;
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

struct TensorView {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  const void* data;  // numel * dtype_size(dtype) bytes, little-endian
};

// Writes atomically (write_file_atomic), tensors in the given order, the header padded with spaces
// to a multiple of 8 bytes so that the data section stays aligned. Throws mamba::Error naming the
// file on invalid input (duplicate or reserved name, negative dimension) or on I/O failure.
// Returns the digest of the bytes written, for integrity records.
FileDigest write_safetensors(const std::string& path, const std::vector<TensorView>& tensors,
                             const std::map<std::string, std::string>& metadata = {});

// The bytes write_safetensors puts before the tensors' data (length, JSON header, padding): tensor
// i's data then follow at its place in the order given. path only names the file in errors.
std::string safetensors_header(const std::string& path, const std::vector<TensorView>& tensors,
                               const std::map<std::string, std::string>& metadata = {});

// Copies `bytes` from `src` (an address in a TensorView's data, possibly device memory) to `host`.
using FetchBytes = std::function<void(void* host, const void* src, size_t bytes)>;

// As write_safetensors, for tensors whose data the host cannot read directly (a device snapshot):
// each tensor is fetched into one host buffer of chunk_bytes and written from there, so host
// memory stays at one chunk whatever the file's size.
FileDigest write_safetensors_fetched(const std::string& path,
                                     const std::vector<TensorView>& tensors,
                                     const std::map<std::string, std::string>& metadata,
                                     const FetchBytes& fetch, size_t chunk_bytes);

}  // namespace mamba
