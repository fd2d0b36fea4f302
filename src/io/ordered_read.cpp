#include "io/ordered_read.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "util/error.h"
#include "util/file_io.h"

namespace mamba {

namespace {

// Chunk i lives in slot i % slots while it is read and consumed.
struct Slot {
  std::vector<uint8_t> bytes;
  size_t size = 0;
  uint32_t crc = 0;
  int64_t chunk = -1;  // the chunk it holds, complete; -1 while empty or being read
};

// A piece of at most chunk_bytes of one of the extents.
struct Chunk {
  uint64_t offset = 0;
  size_t size = 0;
  size_t extent = 0;
};

std::vector<Chunk> chunks_of(const std::vector<FileExtent>& extents, size_t chunk_bytes) {
  std::vector<Chunk> chunks;
  for (size_t e = 0; e < extents.size(); ++e) {
    for (uint64_t done = 0; done < extents[e].size; done += chunk_bytes) {
      chunks.push_back({extents[e].offset + done,
                        size_t(std::min<uint64_t>(chunk_bytes, extents[e].size - done)), e});
    }
  }
  return chunks;
}

class OrderedReader {
 public:
  OrderedReader(int fd, const std::string& path, std::vector<Chunk> chunks, int threads)
      : fd_(fd),
        path_(path),
        chunks_(std::move(chunks)),
        slots_(std::min(2 * size_t(threads), chunks_.size())) {
    size_t largest = 0;
    for (const Chunk& c : chunks_) largest = std::max(largest, c.size);
    for (Slot& s : slots_) s.bytes.resize(largest);
    const int readers = int(std::min(size_t(threads), chunks_.size()));
    for (int t = 0; t < readers; ++t) workers_.emplace_back(&OrderedReader::work, this);
  }

  ~OrderedReader() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    changed_.notify_all();
    for (std::thread& w : workers_) w.join();
  }

  template <typename Consume>
  std::vector<FileDigest> run(size_t extents, const Consume& consume) {
    std::vector<FileDigest> digests(extents);
    for (int64_t i = 0; i < int64_t(chunks_.size()); ++i) {
      Slot& slot = slots_[size_t(i) % slots_.size()];
      {
        std::unique_lock<std::mutex> lock(mutex_);
        changed_.wait(lock, [&] { return slot.chunk == i || error_; });
        if (error_) std::rethrow_exception(error_);
      }
      const Chunk& c = chunks_[size_t(i)];
      consume(c.offset, slot.bytes.data(), slot.size);
      FileDigest& digest = digests[c.extent];
      digest.crc32 = crc32_concat(digest.crc32, slot.crc, slot.size);
      digest.bytes += slot.size;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        slot.chunk = -1;
        consumed_ = i + 1;
      }
      changed_.notify_all();
    }
    return digests;
  }

 private:
  void work() {
    const int64_t count = int64_t(chunks_.size());
    for (;;) {
      int64_t i = 0;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        // A chunk may be read once its slot's previous chunk has been consumed.
        changed_.wait(lock, [&] {
          return stop_ || next_ >= count || next_ < consumed_ + int64_t(slots_.size());
        });
        if (stop_ || next_ >= count) return;
        i = next_++;
      }
      Slot& slot = slots_[size_t(i) % slots_.size()];
      try {
        const Chunk& c = chunks_[size_t(i)];
        read_at(slot.bytes.data(), c.size, c.offset);
        slot.size = c.size;
        slot.crc = crc32_update(0, slot.bytes.data(), c.size);
        std::lock_guard<std::mutex> lock(mutex_);
        slot.chunk = i;
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!error_) error_ = std::current_exception();
      }
      changed_.notify_all();
    }
  }

  void read_at(uint8_t* dst, size_t size, uint64_t offset) const {
    if (!pread_all(fd_, dst, size, offset)) {
      throw_error("cannot read ", path_, " (", errno ? std::strerror(errno) : "unexpected end",
                  " between bytes ", offset, " and ", offset + size,
                  "); check the disk or copy the file again");
    }
  }

  const int fd_;
  const std::string path_;
  const std::vector<Chunk> chunks_;
  std::vector<Slot> slots_;
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable changed_;
  int64_t next_ = 0, consumed_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
};

// Opens path; with `whole`, the extent list is the whole file, whatever its size.
std::vector<FileDigest> read_extents(
    const std::string& path, std::vector<FileExtent> extents, bool whole, size_t chunk_bytes,
    int threads,
    const std::function<void(uint64_t offset, const uint8_t* data, size_t size)>& consume) {
  if (chunk_bytes == 0 || threads < 1) {
    throw_error("internal error: reading ", path, " needs a chunk size and a thread");
  }
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw_error("cannot open ", path, " (", std::strerror(errno), ")");
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw_error("cannot read ", path, ": not a regular file");
  }
  if (whole) extents = {{0, uint64_t(st.st_size)}};
  try {
    OrderedReader reader(fd, path, chunks_of(extents, chunk_bytes), threads);
    std::vector<FileDigest> digests = reader.run(extents.size(), consume);
    ::close(fd);
    return digests;
  } catch (...) {
    ::close(fd);
    throw;
  }
}

}  // namespace

FileDigest read_file_in_order(
    const std::string& path, size_t chunk_bytes, int threads,
    const std::function<void(uint64_t offset, const uint8_t* data, size_t size)>& consume) {
  return read_extents(path, {}, true, chunk_bytes, threads, consume).front();
}

std::vector<FileDigest> read_extents_in_order(
    const std::string& path, const std::vector<FileExtent>& extents, size_t chunk_bytes,
    int threads,
    const std::function<void(uint64_t offset, const uint8_t* data, size_t size)>& consume) {
  return read_extents(path, extents, false, chunk_bytes, threads, consume);
}

}  // namespace mamba
