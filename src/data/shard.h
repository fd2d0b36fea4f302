// Token shards: one HDF5 file per shard holding a 1-D chunked dataset "tokens" (uint16 when the
// vocab fits, else uint32) and root attributes that say how the tokens were made, so a loader can
// refuse shards that do not belong together or do not fit the model.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace mamba {

inline constexpr const char* kShardFormat = "mamba-tokens";
inline constexpr int64_t kShardFormatVersion = 1;

// Where a shard's tokens lie in its file when HDF5 stores them raw (contiguous, or chunked
// without filters, little-endian, no user block): then a reader pread()s them from one file
// descriptor without HDF5, which costs a syscall per read instead of HDF5's per-read selection,
// chunk cache and process-wide lock. Shards are written chunked (ShardWriter), so this is the
// path for every shard prepare makes.
struct ShardLayout {
  int64_t chunk_tokens = 0;             // tokens per chunk; every token when contiguous
  std::vector<uint64_t> chunk_offsets;  // file offset of chunk k's first byte
  int64_t file_bytes = 0;               // the file's size when the layout was read
};

struct ShardInfo {
  std::string path;
  int64_t format_version = kShardFormatVersion;
  int64_t vocab_size = 0;
  int64_t eos_id = 0;
  std::string tokenizer;         // Tokenizer::name()
  std::string tokenizer_sha256;  // Tokenizer::sha256()
  std::string split;             // "train" or "val"
  int64_t documents = 0;
  int64_t num_tokens = 0;  // length of the dataset (not an attribute)
  int token_bytes = 0;     // its element size: 2 (uint16) or 4 (uint32); set when read
  // Where the tokens lie, when stored raw; null otherwise. Set when read.
  std::shared_ptr<const ShardLayout> layout;
};

// Writes a shard to `path + ".tmp"` and renames it into place on finish(), so an interrupted run
// never leaves a complete-looking shard behind.
class ShardWriter {
 public:
  // `info` supplies the attributes; path, documents and num_tokens are filled in as it goes.
  ShardWriter(const std::string& path, const ShardInfo& info);
  ~ShardWriter();
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;

  void append(const int32_t* tokens, size_t count);
  void end_document() { ++info_.documents; }
  int64_t num_tokens() const { return info_.num_tokens + int64_t(pending_.size()); }
  // Flushes, writes the attributes, closes and renames. Returns the final attributes.
  ShardInfo finish();

 private:
  void flush();

  ShardInfo info_;
  std::string tmp_path_;
  int64_t file_ = -1, dataset_ = -1;  // hid_t, kept opaque so hdf5.h stays out of this header
  std::vector<uint32_t> pending_;
};

// Reads a shard's attributes, size and layout. Throws mamba::Error naming the file for anything
// that is not a readable shard of this format (not HDF5, truncated, missing dataset or attribute).
ShardInfo read_shard_info(const std::string& path);

// How ShardReader reads: `fastest` pread()s when the layout allows it and reads through HDF5
// otherwise; `hdf5` always reads through HDF5 (the reference the direct path is tested against).
enum class ShardAccess { fastest, hdf5 };

// Random access to one shard's tokens. Not thread-safe per object; HDF5 calls are serialized
// process-wide because Debian's HDF5 is built without thread safety. A reader holds one open
// file: its own descriptor when reading directly (HDF5's file is closed once the layout is
// known), else HDF5's.
class ShardReader {
 public:
  // Opens through HDF5 and checks everything read_shard_info does.
  explicit ShardReader(const std::string& path, ShardAccess access = ShardAccess::fastest);
  // Reopens a shard read_shard_info (or check_shards) described: when its layout is known, one
  // open() and one fstat(), no HDF5; a file whose size changed since is refused.
  explicit ShardReader(const ShardInfo& info);
  ~ShardReader();
  ShardReader(const ShardReader&) = delete;
  ShardReader& operator=(const ShardReader&) = delete;

  const ShardInfo& info() const { return info_; }
  bool direct() const { return fd_ >= 0; }  // reads with pread, not through HDF5
  // tokens [offset, offset + count) as int32.
  void read(int64_t offset, int64_t count, int32_t* out);

 private:
  void open_hdf5(const std::string& path, ShardAccess access);
  void open_direct();
  void read_direct(int64_t offset, int64_t count, int32_t* out);

  ShardInfo info_;
  int64_t file_ = -1, dataset_ = -1;  // HDF5's, when reading through it
  int fd_ = -1;                       // ours, when reading directly
  std::vector<uint16_t> narrow_;      // uint16 tokens as stored, before widening
};

// The files matching a glob pattern, sorted by path; empty when nothing matches.
std::vector<std::string> glob_sorted(const std::string& pattern);

// Opens every shard matching `pattern` (an error when none does) and checks that each is listed,
// at its size and token count, in its directory's manifest (data/manifest.h), that they agree
// with each other (format, vocab_size, eos id, tokenizer, split) and fit a model with
// `model_vocab` tokens.
std::vector<ShardInfo> check_shards(const std::string& pattern, int64_t model_vocab);

}  // namespace mamba
