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

namespace mamba {

namespace {

// Chunk i lives in slot i % slots while it is read and consumed.
struct Slot {
  std::vector<uint8_t> bytes;
  size_t size = 0;
  uint32_t crc = 0;
  int64_t chunk = -1;  // the chunk it holds, complete; -1 while empty or being read
};

class OrderedReader {
 public:
  OrderedReader(int fd, const std::string& path, uint64_t file_size, size_t chunk_bytes,
                int threads)
      : fd_(fd),
        path_(path),
        file_size_(file_size),
        chunk_bytes_(chunk_bytes),
        chunks_(int64_t((file_size + chunk_bytes - 1) / chunk_bytes)),
        slots_(size_t(std::min<int64_t>(2 * threads, chunks_))) {
    for (Slot& s : slots_) s.bytes.resize(size_t(std::min<uint64_t>(chunk_bytes, file_size)));
    const int readers = int(std::min<int64_t>(threads, chunks_));
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
  FileDigest run(const Consume& consume) {
    FileDigest digest;
    for (int64_t i = 0; i < chunks_; ++i) {
      Slot& slot = slots_[size_t(i) % slots_.size()];
      {
        std::unique_lock<std::mutex> lock(mutex_);
        changed_.wait(lock, [&] { return slot.chunk == i || error_; });
        if (error_) std::rethrow_exception(error_);
      }
      consume(uint64_t(i) * chunk_bytes_, slot.bytes.data(), slot.size);
      digest.crc32 = crc32_concat(digest.crc32, slot.crc, slot.size);
      digest.bytes += slot.size;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        slot.chunk = -1;
        consumed_ = i + 1;
      }
      changed_.notify_all();
    }
    return digest;
  }

 private:
  void work() {
    for (;;) {
      int64_t i = 0;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        // A chunk may be read once its slot's previous chunk has been consumed.
        changed_.wait(lock, [&] {
          return stop_ || next_ >= chunks_ || next_ < consumed_ + int64_t(slots_.size());
        });
        if (stop_ || next_ >= chunks_) return;
        i = next_++;
      }
      Slot& slot = slots_[size_t(i) % slots_.size()];
      try {
        const uint64_t offset = uint64_t(i) * chunk_bytes_;
        const size_t size = size_t(std::min<uint64_t>(chunk_bytes_, file_size_ - offset));
        read_at(slot.bytes.data(), size, offset);
        slot.size = size;
        slot.crc = crc32_update(0, slot.bytes.data(), size);
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
    for (size_t done = 0; done < size;) {
      const ssize_t got = ::pread(fd_, dst + done, size - done, off_t(offset + done));
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) {
        throw_error("cannot read ", path_, " (", got < 0 ? std::strerror(errno) : "unexpected end",
                    " at byte ", offset + done, "); check the disk or copy the file again");
      }
      done += size_t(got);
    }
  }

  const int fd_;
  const std::string path_;
  const uint64_t file_size_;
  const size_t chunk_bytes_;
  const int64_t chunks_;
  std::vector<Slot> slots_;
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable changed_;
  int64_t next_ = 0, consumed_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
};

}  // namespace

FileDigest read_file_in_order(
    const std::string& path, size_t chunk_bytes, int threads,
    const std::function<void(uint64_t offset, const uint8_t* data, size_t size)>& consume) {
  if (chunk_bytes == 0 || threads < 1) {
    throw_error("internal error: read_file_in_order needs a chunk size and a thread");
  }
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw_error("cannot open ", path, " (", std::strerror(errno), ")");
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw_error("cannot read ", path, ": not a regular file");
  }
  try {
    OrderedReader reader(fd, path, uint64_t(st.st_size), chunk_bytes, threads);
    const FileDigest digest = reader.run(consume);
    ::close(fd);
    return digest;
  } catch (...) {
    ::close(fd);
    throw;
  }
}

}  // namespace mamba
