#include "util/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "util/error.h"

namespace mamba {
namespace {

// A stream error need not leave errno set (the failing call may be far back in the buffer).
std::string os_reason(int err) {
  return err != 0 ? std::strerror(err) : "I/O error";
}

std::string parent_directory(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

[[noreturn]] void fail_write(const std::string& path, const char* step, int err) {
  throw_error("cannot write ", path, ": ", step, " failed (", os_reason(err),
              "); check that the directory exists, is writable and has free space");
}

}  // namespace

void fsync_directory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) {
    throw_error("cannot open directory ", dir, " to sync it (", os_reason(errno),
                "); check that it exists and is readable");
  }
  // Some filesystems (certain network and FUSE mounts) cannot sync a directory at all; the rename
  // has already happened there, so this is no reason to fail the write.
  if (::fsync(fd) != 0 && errno != EINVAL) {
    const int err = errno;
    ::close(fd);
    throw_error("cannot sync directory ", dir, " (", os_reason(err),
                "); check the disk and free space");
  }
  ::close(fd);
}

void write_file_atomic(const std::string& path, const std::function<void(std::FILE*)>& write_body) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) fail_write(path, ("creating " + tmp).c_str(), errno);

  auto abandon = [&](const char* step, int err) {
    if (f != nullptr) std::fclose(f);
    std::remove(tmp.c_str());
    fail_write(path, step, err);
  };
  try {
    errno = 0;
    write_body(f);
  } catch (...) {
    std::fclose(f);
    std::remove(tmp.c_str());
    throw;
  }
  if (std::ferror(f)) abandon("writing", errno);
  if (std::fflush(f) != 0) abandon("flushing", errno);
  if (::fsync(::fileno(f)) != 0) abandon("fsync", errno);
  const int close_result = std::fclose(f);
  f = nullptr;
  if (close_result != 0) abandon("closing", errno);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) abandon(("renaming " + tmp).c_str(), errno);
  fsync_directory(parent_directory(path));
}

void write_file_atomic(const std::string& path, const void* data, std::size_t size) {
  write_file_atomic(path, [&](std::FILE* f) {
    if (size > 0) std::fwrite(data, 1, size, f);
  });
}

}  // namespace mamba
