// One run per directory: an exclusive advisory lock (flock) on <dir>/.lock, held for as long as
// the object lives. The kernel drops the lock when its holder exits, however it exits, so a lock
// left by a dead process never blocks a restart. The file names its holder (host and PID) so that
// a refused run can say who holds it.
#pragma once
#include <string>

namespace mamba {

class DirectoryLock {
 public:
  // Creates dir if needed. Throws mamba::Error naming the directory and the holder when another
  // process holds the lock, or the OS reason when the lock file cannot be made.
  explicit DirectoryLock(const std::string& dir);
  ~DirectoryLock();
  DirectoryLock(const DirectoryLock&) = delete;
  DirectoryLock& operator=(const DirectoryLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace mamba
