#include "util/dir_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>

#include "util/error.h"

namespace mamba {

namespace {

std::string read_holder(int fd) {
  char text[256] = {};
  const ssize_t got = ::pread(fd, text, sizeof text - 1, 0);
  std::string holder(text, got > 0 ? size_t(got) : 0);
  while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
  return holder.empty() ? "an unknown process" : holder;
}

}  // namespace

DirectoryLock::DirectoryLock(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  const std::string path = (std::filesystem::path(dir) / ".lock").string();
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    throw_error("checkpoint error: cannot create the lock file ", path, " (", std::strerror(errno),
                "): choose a writable checkpoint.dir");
  }
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    const std::string holder = read_holder(fd_);
    ::close(fd_);
    fd_ = -1;
    if (err == EWOULDBLOCK) {
      throw_error("checkpoint error: checkpoint.dir ", dir, " is in use by another run (", holder,
                  "): stop that run, or give this one another checkpoint.dir");
    }
    throw_error("checkpoint error: cannot lock ", path, " (", std::strerror(err), ")");
  }
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  const std::string holder = "host " + std::string(host) + " pid " + std::to_string(::getpid());
  const bool noted =
      ::ftruncate(fd_, 0) == 0 && ::pwrite(fd_, holder.data(), holder.size(), 0) >= 0;
  (void)noted;  // the lock holds without the note; only a refused run's message is poorer
}

DirectoryLock::~DirectoryLock() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace mamba
