#include "train/checkpoint_parts.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "util/atomic_file.h"
#include "util/error.h"
#include "util/file_io.h"

namespace mamba {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Large enough that fetch and write overheads vanish, small enough to be no memory.
constexpr size_t kChunkBytes = size_t{64} << 20;

std::string tmp_of(const std::string& dir, int64_t step) {
  return checkpoint_path(dir, step) + ".tmp";
}

bool fault_due(int rank, int64_t step, const char* mode) {
  const char* text = std::getenv("MAMBA_TEST_SAVE_FAULT");
  if (!text) return false;
  char kind[8] = {};
  int at_rank = -1;
  long long at_step = -1;
  return std::sscanf(text, "%7[a-z]:%d:%lld", kind, &at_rank, &at_step) == 3 &&
         std::strcmp(kind, mode) == 0 && at_rank == rank && at_step == step;
}

// A file descriptor closed on every path out.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

[[noreturn]] void io_failure(const std::string& path, const char* what) {
  throw_error("checkpoint error: cannot ", what, " ", path, " (", std::strerror(errno),
              "): checkpoint.dir must be writable, with free space, by every process");
}

void write_at(int fd, const std::string& path, const void* data, size_t size, uint64_t offset) {
  if (!pwrite_all(fd, data, size, offset)) io_failure(path, "write");
}

std::string part_path(const std::string& dir, int64_t step, int rank) {
  return (fs::path(tmp_of(dir, step)) / ("part_" + std::to_string(rank) + ".done")).string();
}

}  // namespace

void even_share(int rank, int world, int64_t n, int64_t& lo, int64_t& hi) {
  lo = n * rank / world;
  hi = n * (rank + 1) / world;
}

CheckpointPiece piece_of(const CheckpointPlans& plans, int64_t n, int tensor, int64_t begin,
                         int64_t count, const float* src) {
  const int file = tensor == 0 ? 0 : 1;
  const int64_t at = tensor == 0 ? begin : (tensor - 1) * n + begin;
  return {file, plans.files[file].header.size() + uint64_t(at) * sizeof(float), src, count};
}

PartDigests create_checkpoint_files(const std::string& dir, int64_t step,
                                    const CheckpointPlans& plans) {
  const std::string tmp = begin_checkpoint(dir, step);
  PartDigests headers;
  for (int f = 0; f < 2; ++f) {
    const CheckpointFilePlan& plan = plans.files[f];
    const std::string path = (fs::path(tmp) / plan.name).string();
    Fd file{::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)};
    if (file.fd < 0) io_failure(path, "create");
    if (::ftruncate(file.fd, off_t(plan.bytes)) != 0) io_failure(path, "size");
    write_at(file.fd, path, plan.header.data(), plan.header.size(), 0);
    if (::fsync(file.fd) != 0) io_failure(path, "sync");
    headers.files[f].push_back(
        {0, plan.header.size(), crc32_update(0, plan.header.data(), plan.header.size())});
  }
  return headers;
}

PartDigests write_checkpoint_pieces(const std::string& dir, int64_t step,
                                    const CheckpointPlans& plans,
                                    const std::vector<CheckpointPiece>& pieces,
                                    const FetchBytes* fetch, int rank) {
  std::string paths[2];
  Fd files[2];
  for (int f = 0; f < 2; ++f) {
    paths[f] = (fs::path(tmp_of(dir, step)) / plans.files[f].name).string();
    files[f].fd = ::open(paths[f].c_str(), O_WRONLY | O_CLOEXEC);
    if (files[f].fd < 0) io_failure(paths[f], "open");
  }
  PartDigests part;
  uint64_t largest = 0;
  for (const CheckpointPiece& p : pieces) largest = std::max(largest, uint64_t(p.count));
  std::vector<uint8_t> chunk(fetch ? std::min<uint64_t>(kChunkBytes, largest * sizeof(float)) : 0);
  for (size_t i = 0; i < pieces.size(); ++i) {
    const CheckpointPiece& p = pieces[i];
    const auto* src = reinterpret_cast<const uint8_t*>(p.src);
    const uint64_t bytes = uint64_t(p.count) * sizeof(float);
    uint32_t crc = 0;
    const uint64_t stride = fetch ? chunk.size() : kChunkBytes;
    for (uint64_t done = 0; done < bytes; done += stride) {
      const size_t size = size_t(std::min<uint64_t>(stride, bytes - done));
      const uint8_t* data = src + done;
      if (fetch) {
        (*fetch)(chunk.data(), data, size);
        data = chunk.data();
      }
      write_at(files[p.file].fd, paths[p.file], data, size, p.offset + done);
      crc = crc32_update(crc, data, size);
    }
    part.files[p.file].push_back({p.offset, bytes, crc});
    if (i == 0 && fault_due(rank, step, "kill")) ::raise(SIGKILL);
    if (i == 0 && fault_due(rank, step, "fail")) {
      throw_error("test: rank ", rank, " fails in the middle of the save of step ", step);
    }
  }
  for (int f = 0; f < 2; ++f) {
    if (::fsync(files[f].fd) != 0) io_failure(paths[f], "sync");
  }
  return part;
}

std::string finish_parallel_checkpoint(const std::string& dir, const CheckpointPlans& plans,
                                       const std::vector<PartDigests>& parts,
                                       const TrainerState& state, int keep_last) {
  std::map<std::string, FileDigest> files;
  for (int f = 0; f < 2; ++f) {
    std::vector<DigestPiece> all;
    for (const PartDigests& p : parts) all.insert(all.end(), p.files[f].begin(), p.files[f].end());
    files[plans.files[f].name] = combine_pieces(all, plans.files[f].bytes, plans.files[f].name);
  }
  // The part files have done their work; the checkpoint holds its three files only.
  const std::string tmp = tmp_of(dir, state.step);
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(tmp, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("part_", 0) == 0) fs::remove(entry.path(), ec);
  }
  return complete_checkpoint(dir, tmp, state, files, keep_last);
}

void write_part_file(const std::string& dir, int64_t step, int rank, const PartDigests& part) {
  json j;
  j["error"] = part.error;
  for (int f = 0; f < 2; ++f) {
    j["files"][f] = json::array();
    for (const DigestPiece& p : part.files[f])
      j["files"][f].push_back({p.offset, p.bytes, p.crc32});
  }
  const std::string text = j.dump();
  write_file_atomic(part_path(dir, step, rank), text.data(), text.size());
}

PartDigests wait_for_part_file(const std::string& dir, int64_t step, int rank, double timeout_s) {
  const std::string path = part_path(dir, step, rank);
  const auto start = std::chrono::steady_clock::now();
  auto pause = std::chrono::milliseconds(1);
  while (!fs::exists(path)) {
    const double waited =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (waited > timeout_s) {
      throw_error("checkpoint error: rank ", rank, "'s part of ", tmp_of(dir, step),
                  " did not arrive within ", timeout_s,
                  " s (dist.timeout_s): that rank has stalled or died; see its log");
    }
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(50));
  }
  std::ifstream in(path);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  PartDigests part;
  try {
    const json j = json::parse(text);
    part.error = j.at("error").get<std::string>();
    for (int f = 0; f < 2; ++f) {
      for (const json& p : j.at("files").at(f)) {
        part.files[f].push_back(
            {p.at(0).get<uint64_t>(), p.at(1).get<uint64_t>(), p.at(2).get<uint32_t>()});
      }
    }
  } catch (const json::exception& e) {
    throw_error("checkpoint error: ", path, " is malformed (", e.what(), ")");
  }
  return part;
}

}  // namespace mamba
