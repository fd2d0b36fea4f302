#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "error_of.h"
#include "scratch.h"
#include "util/atomic_file.h"
#include "util/error.h"

namespace mamba {
namespace {

namespace fs = std::filesystem;
using test::error_of;

class AtomicFile : public test::ScratchDirTest {
 protected:
  void TearDown() override {
    // Restores write permission so that the read-only case can be cleaned up.
    fs::permissions(dir_, fs::perms::owner_all, fs::perm_options::add);
  }

  static std::string slurp(const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  static std::string temp_name(const std::string& p) {
    return p + ".tmp." + std::to_string(getpid());
  }
};

TEST_F(AtomicFile, WritesNewFileWithoutLeavingTempFile) {
  const std::string p = path("out.bin");
  write_file_atomic(p, "hello", 5);
  EXPECT_EQ(slurp(p), "hello");
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator()), 1);
}

TEST_F(AtomicFile, ReplacesExistingFile) {
  const std::string p = path("out.txt");
  write_file_atomic(p, "old contents that are longer", 28);
  write_file_atomic(p, [](std::FILE* f) { std::fputs("new", f); });
  EXPECT_EQ(slurp(p), "new");
}

TEST_F(AtomicFile, WritesEmptyFile) {
  const std::string p = path("empty");
  write_file_atomic(p, nullptr, 0);
  ASSERT_TRUE(fs::exists(p));
  EXPECT_EQ(fs::file_size(p), 0u);
}

TEST_F(AtomicFile, MissingDirectoryThrowsNamingPath) {
  const std::string p = path("no/such/dir/out.bin");
  const std::string msg = error_of([&] { write_file_atomic(p, "x", 1); });
  EXPECT_NE(msg.find(p), std::string::npos) << msg;
  EXPECT_NE(msg.find("No such file or directory"), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(path("no")));
}

TEST_F(AtomicFile, UnwritableLocationThrowsNamingPath) {
  // Even root cannot create files in /proc, so this case runs everywhere.
  const std::string p = "/proc/mamba_atomic_file_test.bin";
  const std::string msg = error_of([&] { write_file_atomic(p, "x", 1); });
  EXPECT_NE(msg.find(p), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(temp_name(p)));
}

// Root ignores directory permissions, so as root the write is made by a child process that has
// given up root for the unprivileged "nobody" account (uid and gid 65534).
TEST_F(AtomicFile, ReadOnlyDirectoryThrowsNamingPath) {
  fs::permissions(dir_, fs::perms::owner_read | fs::perms::owner_exec);
  const std::string p = path("out.bin");
  int channel[2];
  ASSERT_EQ(pipe(channel), 0);
  const pid_t pid = fork();
  if (pid == 0) {
    close(channel[0]);
    if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0)) _exit(2);
    const std::string msg = error_of([&] { write_file_atomic(p, "x", 1); });
    if (write(channel[1], msg.data(), msg.size()) != ssize_t(msg.size())) _exit(3);
    _exit(0);
  }
  close(channel[1]);
  std::string msg;
  char buf[512];
  for (ssize_t n; (n = read(channel[0], buf, sizeof buf)) > 0;) msg.append(buf, size_t(n));
  close(channel[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
  EXPECT_NE(msg.find(p), std::string::npos) << msg;
  EXPECT_NE(msg.find("Permission denied"), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(temp_name(p)));
}

// A regular file where a directory is expected: refused whoever runs it.
TEST_F(AtomicFile, FileInPlaceOfDirectoryThrowsNamingPath) {
  std::ofstream(path("plain")) << "not a directory";
  const std::string p = path("plain/out.bin");
  const std::string msg = error_of([&] { write_file_atomic(p, "x", 1); });
  EXPECT_NE(msg.find(p), std::string::npos) << msg;
  EXPECT_NE(msg.find("Not a directory"), std::string::npos) << msg;
  EXPECT_EQ(slurp(path("plain")), "not a directory");
}

TEST_F(AtomicFile, FailedRenameRemovesTempFileAndKeepsTarget) {
  // A non-empty directory at the target path makes the final rename fail after the data is written.
  const std::string p = path("target");
  fs::create_directory(p);
  std::ofstream(path("target/keep")) << "keep";
  const std::string msg = error_of([&] { write_file_atomic(p, "x", 1); });
  EXPECT_NE(msg.find(p), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(temp_name(p)));
  EXPECT_EQ(slurp(path("target/keep")), "keep");
}

TEST_F(AtomicFile, ThrowingBodyRemovesTempFileAndKeepsOldContents) {
  const std::string p = path("out.txt");
  write_file_atomic(p, "old", 3);
  EXPECT_THROW(write_file_atomic(p,
                                 [](std::FILE* f) {
                                   std::fputs("partial", f);
                                   throw Error("serialization failed");
                                 }),
               Error);
  EXPECT_EQ(slurp(p), "old");
  EXPECT_FALSE(fs::exists(temp_name(p)));
}

TEST_F(AtomicFile, FsyncDirectory) {
  fsync_directory(dir_);
  const std::string missing = path("missing");
  const std::string msg = error_of([&] { fsync_directory(missing); });
  EXPECT_NE(msg.find(missing), std::string::npos) << msg;
}

}  // namespace
}  // namespace mamba
