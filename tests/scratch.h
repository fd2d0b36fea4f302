// Scratch files for tests. ctest runs each test in its own process, possibly in parallel, so each
// process gets its own root, removed when it exits.
#pragma once
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>

namespace mamba::test {

inline const std::filesystem::path& scratch_root() {
  struct Root {
    std::filesystem::path path =
        std::filesystem::temp_directory_path() / ("mamba_test." + std::to_string(getpid()));
    ~Root() {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    }
  };
  static const Root root;
  return root.path;
}

// A fresh, empty directory: what an earlier call with the same name left there is gone.
inline std::string scratch_dir(const std::filesystem::path& name) {
  const std::filesystem::path dir = scratch_root() / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

// A path directly under the root, for a test that names its own files; nothing is created there.
inline std::string scratch_path(const std::string& name) {
  std::filesystem::create_directories(scratch_root());
  return (scratch_root() / name).string();
}

// A fixture whose tests each get a fresh directory, named after the test.
class ScratchDirTest : public testing::Test {
 protected:
  void SetUp() override {
    const testing::TestInfo* info = testing::UnitTest::GetInstance()->current_test_info();
    dir_ = scratch_dir(std::filesystem::path(info->test_suite_name()) / info->name());
  }

  std::string path(const std::string& name) const {
    return (std::filesystem::path(dir_) / name).string();
  }

  std::string dir_;
};

inline void write_text(const std::string& path, const std::string& text) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

}  // namespace mamba::test
