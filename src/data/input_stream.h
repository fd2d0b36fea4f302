// The bytes of one input file, read block by block: plain, gzip (.gz, zlib) or zstd (.zst,
// libzstd) by the file name's suffix. Compressed inputs are decompressed as they are read, never
// unpacked to disk or held whole in memory.
#pragma once
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

namespace mamba {

enum class Compression { none, gzip, zstd };

// From the suffix: ".gz" is gzip, ".zst" is zstd, anything else is read as it is.
Compression compression_of(const std::string& path);
// The name without a compression suffix: "a.jsonl.gz" -> "a.jsonl".
std::string strip_compression_suffix(const std::string& path);

class InputStream {
 public:
  // Throws mamba::Error naming the file when it cannot be opened.
  explicit InputStream(const std::string& path);
  ~InputStream();
  InputStream(const InputStream&) = delete;
  InputStream& operator=(const InputStream&) = delete;

  // Up to `size` bytes into `out`; 0 only at the end of the data. Throws mamba::Error naming the
  // file for a read error and for compressed data that is corrupt or ends early.
  size_t read(char* out, size_t size);
  // Bytes of the file itself consumed so far (compressed bytes for a compressed file).
  uint64_t consumed() const { return consumed_; }

 private:
  size_t read_zstd(char* out, size_t size);
  [[noreturn]] void fail(const std::string& why) const;

  std::string path_;
  Compression compression_;
  std::FILE* file_ = nullptr;
  void* gz_ = nullptr;    // gzFile
  void* zstd_ = nullptr;  // ZSTD_DCtx*
  std::unique_ptr<char[]> in_;
  size_t in_size_ = 0, in_pos_ = 0;
  bool in_eof_ = false;
  bool frame_open_ = false;  // zstd: inside a frame that has not ended yet
  bool any_frame_ = false;
  uint64_t consumed_ = 0;
};

}  // namespace mamba
