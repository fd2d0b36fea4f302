#include "data/shard.h"

#include <fcntl.h>
#include <glob.h>
#include <hdf5.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <mutex>

#include "data/manifest.h"
#include "util/error.h"
#include "util/file_io.h"

namespace mamba {

namespace {

static_assert(sizeof(hid_t) == sizeof(int64_t), "hid_t is stored as int64_t in shard.h");

constexpr hsize_t kChunkTokens = 1 << 16;
constexpr size_t kWriteBlock = 1 << 20;
const char* const kRemake = "re-run mamba prepare to remake it";

// Debian's HDF5 is not built thread-safe, and the loader reads on a background thread: every
// HDF5 call goes through this lock. It also silences HDF5's own error printing; failures become
// one-line mamba::Errors instead.
std::unique_lock<std::recursive_mutex> hdf5_lock() {
  static std::recursive_mutex mutex;
  std::unique_lock<std::recursive_mutex> lock(mutex);
  static const bool silenced = [] {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    return true;
  }();
  (void)silenced;
  return lock;
}

// Closes an HDF5 object when it goes out of scope.
class Handle {
 public:
  Handle(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  ~Handle() {
    if (id_ >= 0) close_(id_);
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  hid_t get() const { return id_; }
  bool ok() const { return id_ >= 0; }
  hid_t release() {
    const hid_t id = id_;
    id_ = -1;
    return id;
  }

 private:
  hid_t id_;
  herr_t (*close_)(hid_t);
};

void write_int_attribute(hid_t file, const char* name, int64_t value) {
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle attr(H5Acreate2(file, name, H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT),
              H5Aclose);
  if (!attr.ok() || H5Awrite(attr.get(), H5T_NATIVE_INT64, &value) < 0) {
    throw_error("data error: cannot write attribute ", name);
  }
}

void write_string_attribute(hid_t file, const char* name, const std::string& value) {
  Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type.get(), std::max<size_t>(value.size(), 1));
  H5Tset_strpad(type.get(), H5T_STR_NULLPAD);
  H5Tset_cset(type.get(), H5T_CSET_UTF8);
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle attr(H5Acreate2(file, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  std::string padded = value.empty() ? std::string(1, '\0') : value;
  if (!attr.ok() || H5Awrite(attr.get(), type.get(), padded.data()) < 0) {
    throw_error("data error: cannot write attribute ", name);
  }
}

[[noreturn]] void missing_attribute(const std::string& path, const char* name) {
  throw_error("data error: shard ", path, " lacks the attribute '", name,
              "': it was not made by mamba prepare or is damaged; ", kRemake);
}

int64_t read_int_attribute(const std::string& path, hid_t file, const char* name) {
  if (H5Aexists(file, name) <= 0) missing_attribute(path, name);
  Handle attr(H5Aopen(file, name, H5P_DEFAULT), H5Aclose);
  int64_t value = 0;
  if (!attr.ok() || H5Aread(attr.get(), H5T_NATIVE_INT64, &value) < 0) {
    throw_error("data error: shard ", path, " attribute '", name, "' is not an integer; ", kRemake);
  }
  return value;
}

// Accepts both fixed-length strings (what prepare writes) and variable-length ones (what h5py
// writes), so shards made by other tools can be read.
std::string read_string_attribute(const std::string& path, hid_t file, const char* name) {
  if (H5Aexists(file, name) <= 0) missing_attribute(path, name);
  Handle attr(H5Aopen(file, name, H5P_DEFAULT), H5Aclose);
  Handle type(attr.ok() ? H5Aget_type(attr.get()) : -1, H5Tclose);
  if (!type.ok() || H5Tget_class(type.get()) != H5T_STRING) {
    throw_error("data error: shard ", path, " attribute '", name, "' is not a string; ", kRemake);
  }
  if (H5Tis_variable_str(type.get()) > 0) {
    Handle mem(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(mem.get(), H5T_VARIABLE);
    char* value = nullptr;
    if (H5Aread(attr.get(), mem.get(), &value) < 0 || !value) {
      throw_error("data error: shard ", path, " attribute '", name, "' is unreadable; ", kRemake);
    }
    std::string result(value);
    H5free_memory(value);
    return result;
  }
  std::string value(H5Tget_size(type.get()), '\0');
  if (H5Aread(attr.get(), type.get(), value.data()) < 0) {
    throw_error("data error: shard ", path, " attribute '", name, "' is unreadable; ", kRemake);
  }
  value.resize(std::strlen(value.c_str()));
  return value;
}

bool little_endian_host() {
  const uint16_t one = 1;
  uint8_t first = 0;
  std::memcpy(&first, &one, 1);
  return first == 1;
}

// HDF5 notices most truncations when it opens a file; this catches the rest before a read does.
std::shared_ptr<ShardLayout> check_extent(const ShardInfo& info,
                                          std::shared_ptr<ShardLayout> layout) {
  for (size_t k = 0; k < layout->chunk_offsets.size(); ++k) {
    const int64_t tokens =
        std::min(layout->chunk_tokens, info.num_tokens - int64_t(k) * layout->chunk_tokens);
    const uint64_t end = layout->chunk_offsets[k] + uint64_t(tokens) * info.token_bytes;
    if (end > uint64_t(layout->file_bytes)) {
      throw_error("data error: shard ", info.path, " is truncated: its tokens run to byte ", end,
                  " but the file has ", layout->file_bytes, " bytes; ", kRemake);
    }
  }
  return layout;
}

// Where the tokens lie when HDF5 stores them raw, else null (compressed or otherwise filtered,
// big-endian, external or virtual storage, unwritten chunks, a user block shifting addresses):
// those are read through HDF5. Caller holds the HDF5 lock.
std::shared_ptr<ShardLayout> raw_layout(hid_t file, hid_t dataset, const ShardInfo& info,
                                        int64_t file_bytes) {
  Handle type(H5Dget_type(dataset), H5Tclose);
  Handle dataset_props(H5Dget_create_plist(dataset), H5Pclose);
  Handle file_props(H5Fget_create_plist(file), H5Pclose);
  hsize_t user_block = 0;
  if (!little_endian_host() || !type.ok() || H5Tget_order(type.get()) != H5T_ORDER_LE ||
      !dataset_props.ok() || !file_props.ok() ||
      H5Pget_userblock(file_props.get(), &user_block) < 0 || user_block != 0 ||
      H5Pget_nfilters(dataset_props.get()) != 0 ||
      H5Pget_external_count(dataset_props.get()) != 0) {
    return nullptr;
  }
  auto layout = std::make_shared<ShardLayout>();
  layout->file_bytes = file_bytes;
  const H5D_layout_t kind = H5Pget_layout(dataset_props.get());
  if (kind == H5D_CONTIGUOUS) {
    layout->chunk_tokens = std::max<int64_t>(info.num_tokens, 1);
    if (info.num_tokens == 0) return layout;
    const haddr_t address = H5Dget_offset(dataset);
    if (address == HADDR_UNDEF ||
        H5Dget_storage_size(dataset) != hsize_t(info.num_tokens) * info.token_bytes) {
      return nullptr;
    }
    layout->chunk_offsets.push_back(address);
    return check_extent(info, std::move(layout));
  }
  hsize_t chunk[1] = {0};
  if (kind != H5D_CHUNKED || H5Pget_chunk(dataset_props.get(), 1, chunk) != 1 || chunk[0] == 0) {
    return nullptr;
  }
  layout->chunk_tokens = int64_t(chunk[0]);
  for (int64_t start = 0; start < info.num_tokens; start += layout->chunk_tokens) {
    const hsize_t at[1] = {hsize_t(start)};
    unsigned filters = 0;
    haddr_t address = HADDR_UNDEF;
    hsize_t bytes = 0;
    if (H5Dget_chunk_info_by_coord(dataset, at, &filters, &address, &bytes) < 0 ||
        address == HADDR_UNDEF || bytes != chunk[0] * info.token_bytes) {
      return nullptr;
    }
    layout->chunk_offsets.push_back(address);
  }
  return check_extent(info, std::move(layout));
}

// Opens a shard and checks everything read_shard_info promises. Returns the open file and
// dataset. Caller holds the HDF5 lock.
ShardInfo open_shard(const std::string& path, int64_t& file_out, int64_t& dataset_out) {
  std::FILE* probe = std::fopen(path.c_str(), "rb");
  if (!probe) {
    throw_error("data error: cannot open shard ", path, ": ", std::strerror(errno),
                ": check the path");
  }
  struct stat st;
  const int64_t file_bytes = ::fstat(fileno(probe), &st) == 0 ? int64_t(st.st_size) : -1;
  std::fclose(probe);
  if (H5Fis_hdf5(path.c_str()) <= 0) {
    throw_error("data error: ", path, " is not an HDF5 file: pass shards made by mamba prepare");
  }
  Handle file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  if (!file.ok()) {
    throw_error("data error: cannot open shard ", path,
                " (truncated or damaged HDF5 file): ", kRemake);
  }
  ShardInfo info;
  info.path = path;
  const std::string format = read_string_attribute(path, file.get(), "format");
  if (format != kShardFormat) {
    throw_error("data error: ", path, " has format '", format, "', expected '", kShardFormat,
                "': pass shards made by mamba prepare");
  }
  info.format_version = read_int_attribute(path, file.get(), "format_version");
  if (info.format_version != kShardFormatVersion) {
    throw_error("data error: shard ", path, " has format_version ", info.format_version,
                " but this mamba reads version ", kShardFormatVersion,
                ": use the matching mamba or ", kRemake);
  }
  info.vocab_size = read_int_attribute(path, file.get(), "vocab_size");
  info.eos_id = read_int_attribute(path, file.get(), "eos_id");
  info.tokenizer = read_string_attribute(path, file.get(), "tokenizer");
  info.tokenizer_sha256 = read_string_attribute(path, file.get(), "tokenizer_sha256");
  info.split = read_string_attribute(path, file.get(), "split");
  info.documents = read_int_attribute(path, file.get(), "documents");
  if (info.vocab_size <= 0 || info.eos_id < 0 || info.eos_id >= info.vocab_size) {
    throw_error("data error: shard ", path, " has vocab_size ", info.vocab_size, " and eos_id ",
                info.eos_id, ", which do not fit together; ", kRemake);
  }

  Handle dataset(H5Lexists(file.get(), "tokens", H5P_DEFAULT) > 0
                     ? H5Dopen2(file.get(), "tokens", H5P_DEFAULT)
                     : -1,
                 H5Dclose);
  if (!dataset.ok()) {
    throw_error("data error: shard ", path, " has no readable 'tokens' dataset; ", kRemake);
  }
  Handle type(H5Dget_type(dataset.get()), H5Tclose);
  Handle space(H5Dget_space(dataset.get()), H5Sclose);
  hsize_t dims[1] = {0};
  if (!type.ok() || !space.ok() || H5Tget_class(type.get()) != H5T_INTEGER ||
      H5Tget_sign(type.get()) != H5T_SGN_NONE ||
      (H5Tget_size(type.get()) != 2 && H5Tget_size(type.get()) != 4) ||
      H5Sget_simple_extent_ndims(space.get()) != 1 ||
      H5Sget_simple_extent_dims(space.get(), dims, nullptr) < 0) {
    throw_error("data error: shard ", path, " 'tokens' is not a 1-D uint16 or uint32 dataset; ",
                kRemake);
  }
  info.num_tokens = int64_t(dims[0]);
  info.token_bytes = int(H5Tget_size(type.get()));
  if (file_bytes >= 0) info.layout = raw_layout(file.get(), dataset.get(), info, file_bytes);
  file_out = file.release();
  dataset_out = dataset.release();
  return info;
}

void close_shard(int64_t& file, int64_t& dataset) {
  if (dataset >= 0) H5Dclose(dataset);
  if (file >= 0) H5Fclose(file);
  dataset = file = -1;
}

// Opens `path` for pread() and returns the descriptor and the file's size.
int open_raw(const std::string& path, int64_t& bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || ::fstat(fd, &st) != 0) {
    const int error = errno;
    if (fd >= 0) ::close(fd);
    throw_error("data error: cannot open shard ", path, ": ", std::strerror(error),
                ": check the path and the limit on open files (ulimit -n)");
  }
  bytes = int64_t(st.st_size);
  return fd;
}

}  // namespace

ShardWriter::ShardWriter(const std::string& path, const ShardInfo& info)
    : info_(info), tmp_path_(path + ".tmp") {
  info_.path = path;
  info_.documents = 0;
  info_.num_tokens = 0;
  const auto lock = hdf5_lock();
  file_ = H5Fcreate(tmp_path_.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (file_ < 0) {
    throw_error("data error: cannot create ", tmp_path_,
                ": check that the output directory exists and is writable");
  }
  // Chunked and extendible, so tokens stream to disk instead of piling up in memory.
  const hsize_t dims[1] = {0}, max_dims[1] = {H5S_UNLIMITED}, chunk[1] = {kChunkTokens};
  Handle space(H5Screate_simple(1, dims, max_dims), H5Sclose);
  Handle props(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  H5Pset_chunk(props.get(), 1, chunk);
  // No modification times in the object header: the same tokens make the same bytes, so a shard's
  // crc32 in the manifest does not depend on when, or by how many processes, it was written.
  H5Pset_obj_track_times(props.get(), false);
  const hid_t type = info_.vocab_size <= 65536 ? H5T_STD_U16LE : H5T_STD_U32LE;
  dataset_ = H5Dcreate2(file_, "tokens", type, space.get(), H5P_DEFAULT, props.get(), H5P_DEFAULT);
  if (dataset_ < 0) {
    close_shard(file_, dataset_);
    throw_error("data error: cannot create the tokens dataset in ", tmp_path_,
                ": check free disk space");
  }
}

ShardWriter::~ShardWriter() {
  if (file_ < 0) return;
  // Not finished: an error unwound past us. Leave no partial file.
  const auto lock = hdf5_lock();
  close_shard(file_, dataset_);
  std::remove(tmp_path_.c_str());
}

void ShardWriter::append(const int32_t* tokens, size_t count) {
  for (size_t i = 0; i < count; ++i) {
    if (tokens[i] < 0 || tokens[i] >= info_.vocab_size) {
      throw_error("data error: token ", tokens[i], " for ", info_.path, " is outside vocab_size ",
                  info_.vocab_size, ": the tokenizer and the shard attributes disagree");
    }
    pending_.push_back(uint32_t(tokens[i]));
  }
  if (pending_.size() >= kWriteBlock) flush();
}

void ShardWriter::flush() {
  if (pending_.empty()) return;
  const auto lock = hdf5_lock();
  const hsize_t offset[1] = {hsize_t(info_.num_tokens)}, count[1] = {pending_.size()};
  const hsize_t new_size[1] = {offset[0] + count[0]};
  bool ok = H5Dset_extent(dataset_, new_size) >= 0;
  Handle file_space(ok ? H5Dget_space(dataset_) : -1, H5Sclose);
  Handle mem_space(H5Screate_simple(1, count, nullptr), H5Sclose);
  ok =
      ok && file_space.ok() &&
      H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, offset, nullptr, count, nullptr) >= 0 &&
      H5Dwrite(dataset_, H5T_NATIVE_UINT32, mem_space.get(), file_space.get(), H5P_DEFAULT,
               pending_.data()) >= 0;
  if (!ok) throw_error("data error: cannot write tokens to ", tmp_path_, ": check free disk space");
  info_.num_tokens += int64_t(pending_.size());
  pending_.clear();
}

ShardInfo ShardWriter::finish() {
  flush();
  const auto lock = hdf5_lock();
  write_string_attribute(file_, "format", kShardFormat);
  write_int_attribute(file_, "format_version", info_.format_version);
  write_int_attribute(file_, "vocab_size", info_.vocab_size);
  write_int_attribute(file_, "eos_id", info_.eos_id);
  write_string_attribute(file_, "tokenizer", info_.tokenizer);
  write_string_attribute(file_, "tokenizer_sha256", info_.tokenizer_sha256);
  write_string_attribute(file_, "split", info_.split);
  write_int_attribute(file_, "documents", info_.documents);
  H5Dclose(dataset_);
  dataset_ = -1;
  const bool closed = H5Fclose(file_) >= 0;
  file_ = -1;
  if (!closed || std::rename(tmp_path_.c_str(), info_.path.c_str()) != 0) {
    std::remove(tmp_path_.c_str());
    throw_error("data error: cannot finish ", info_.path, ": check free disk space");
  }
  return info_;
}

ShardInfo read_shard_info(const std::string& path) {
  const auto lock = hdf5_lock();
  int64_t file = -1, dataset = -1;
  try {
    ShardInfo info = open_shard(path, file, dataset);
    close_shard(file, dataset);
    return info;
  } catch (...) {
    close_shard(file, dataset);
    throw;
  }
}

ShardReader::ShardReader(const std::string& path, ShardAccess access) {
  open_hdf5(path, access);
}

ShardReader::ShardReader(const ShardInfo& info) {
  if (!info.layout) {
    open_hdf5(info.path, ShardAccess::fastest);
    return;
  }
  info_ = info;
  open_direct();
}

void ShardReader::open_hdf5(const std::string& path, ShardAccess access) {
  const auto lock = hdf5_lock();
  try {
    info_ = open_shard(path, file_, dataset_);
    if (access == ShardAccess::hdf5 || !info_.layout) return;
    // Our descriptor opens before HDF5's file closes, so both see the file HDF5 checked.
    open_direct();
    close_shard(file_, dataset_);
  } catch (...) {
    close_shard(file_, dataset_);
    throw;
  }
}

void ShardReader::open_direct() {
  int64_t bytes = 0;
  fd_ = open_raw(info_.path, bytes);
  if (bytes != info_.layout->file_bytes) {
    ::close(fd_);
    fd_ = -1;
    throw_error("data error: shard ", info_.path, " changed while in use (", bytes, " bytes, was ",
                info_.layout->file_bytes,
                "): leave shards alone during a run; restart it to check them again");
  }
}

ShardReader::~ShardReader() {
  if (fd_ >= 0) ::close(fd_);
  if (file_ < 0) return;
  const auto lock = hdf5_lock();
  close_shard(file_, dataset_);
}

void ShardReader::read(int64_t offset, int64_t count, int32_t* out) {
  if (offset < 0 || count < 0 || offset + count > info_.num_tokens) {
    throw_error("data error: read of tokens [", offset, ", ", offset + count, ") is outside shard ",
                info_.path, " (", info_.num_tokens, " tokens): the shard changed while in use");
  }
  if (count == 0) return;
  if (fd_ >= 0) {
    read_direct(offset, count, out);
    return;
  }
  const auto lock = hdf5_lock();
  const hsize_t start[1] = {hsize_t(offset)}, size[1] = {hsize_t(count)};
  Handle file_space(H5Dget_space(dataset_), H5Sclose);
  Handle mem_space(H5Screate_simple(1, size, nullptr), H5Sclose);
  if (!file_space.ok() ||
      H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start, nullptr, size, nullptr) < 0 ||
      H5Dread(dataset_, H5T_NATIVE_INT32, mem_space.get(), file_space.get(), H5P_DEFAULT, out) <
          0) {
    throw_error("data error: cannot read tokens [", offset, ", ", offset + count, ") of shard ",
                info_.path, " (truncated or damaged file): ", kRemake);
  }
}

// One pread per chunk the range touches, then widening to int32. uint32 ids above INT32_MAX
// become INT32_MAX, as HDF5's conversion makes them (the loader refuses both).
void ShardReader::read_direct(int64_t offset, int64_t count, int32_t* out) {
  const int bytes = info_.token_bytes;
  while (count > 0) {
    const ShardLayout& layout = *info_.layout;
    const size_t k = size_t(offset / layout.chunk_tokens);
    const int64_t within = offset % layout.chunk_tokens;
    const int64_t n = std::min(count, layout.chunk_tokens - within);
    const uint64_t at = layout.chunk_offsets[k] + uint64_t(within) * bytes;
    void* target = out;
    if (bytes == 2) {
      narrow_.resize(size_t(n));
      target = narrow_.data();
    }
    if (!pread_all(fd_, target, size_t(n) * bytes, at)) {
      throw_error("data error: cannot read tokens [", offset, ", ", offset + n, ") of shard ",
                  info_.path, ": ", errno ? std::strerror(errno) : "the file ends early", "; ",
                  kRemake);
    }
    if (bytes == 2) {
      for (int64_t i = 0; i < n; ++i) out[i] = narrow_[size_t(i)];
    } else {
      const auto* wide = reinterpret_cast<const uint32_t*>(out);
      for (int64_t i = 0; i < n; ++i) out[i] = int32_t(std::min<uint32_t>(wide[i], INT32_MAX));
    }
    out += n;
    offset += n;
    count -= n;
  }
}

std::vector<std::string> glob_sorted(const std::string& pattern) {
  glob_t matches;
  const int rc = ::glob(pattern.c_str(), 0, nullptr, &matches);
  std::vector<std::string> paths;
  if (rc == 0) paths.assign(matches.gl_pathv, matches.gl_pathv + matches.gl_pathc);
  globfree(&matches);
  std::sort(paths.begin(), paths.end());
  return paths;
}

std::vector<ShardInfo> check_shards(const std::string& pattern, int64_t model_vocab) {
  std::vector<ShardInfo> shards;
  ManifestCatalog manifests;
  for (const std::string& path : glob_sorted(pattern)) {
    manifests.entry(path);  // first, so a shard of an unfinished run is named as such
    shards.push_back(read_shard_info(path));
    manifests.check_header(shards.back());
  }
  if (shards.empty()) {
    throw_error("data error: no files match '", pattern,
                "': check the path, or make shards with mamba prepare");
  }
  const ShardInfo& first = shards.front();
  for (const ShardInfo& s : shards) {
    const auto disagree = [&](const char* what, const auto& a, const auto& b) {
      throw_error("data error: shard ", s.path, " has ", what, " ", a, " but ", first.path, " has ",
                  b,
                  ": all shards of a run must come from one mamba prepare run with "
                  "one tokenizer; narrow the pattern '",
                  pattern, "' or re-run prepare");
    };
    if (s.vocab_size != first.vocab_size) disagree("vocab_size", s.vocab_size, first.vocab_size);
    if (s.eos_id != first.eos_id) disagree("eos_id", s.eos_id, first.eos_id);
    if (s.tokenizer_sha256 != first.tokenizer_sha256) {
      disagree("tokenizer_sha256", s.tokenizer_sha256, first.tokenizer_sha256);
    }
    if (s.split != first.split) disagree("split", s.split, first.split);
  }
  if (first.vocab_size > model_vocab) {
    throw_error("data error: shard ", first.path, " was made with vocab_size ", first.vocab_size,
                " > the model's vocab_size ", model_vocab,
                ": set the model's vocab_size to at least ", first.vocab_size,
                " or re-run prepare with the model's tokenizer");
  }
  return shards;
}

}  // namespace mamba
