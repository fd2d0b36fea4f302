#include "train/parallel_checkpoint.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <vector>

#include "util/checksum.h"
#include "util/error.h"

namespace mamba {

namespace {

namespace fs = std::filesystem;

// Large enough that fetch and write overheads vanish, small enough to be no memory.
constexpr size_t kChunkBytes = size_t{64} << 20;

// What a rank tells rank 0 after its part of a save or load.
enum class Outcome : char { Ok = '0', Damaged = '1', Failed = '2' };

struct Report {
  Outcome outcome = Outcome::Ok;
  std::string message;
  std::vector<DigestPiece> pieces[2];  // per file: model, optimizer
};

std::string encode(const Report& r) {
  std::string bytes(1, char(r.outcome));
  for (const std::vector<DigestPiece>& file : r.pieces) {
    const uint64_t count = file.size();
    bytes.append(reinterpret_cast<const char*>(&count), sizeof count);
    bytes.append(reinterpret_cast<const char*>(file.data()), count * sizeof(DigestPiece));
  }
  return bytes + r.message;
}

Report decode(const std::string& bytes) {
  Report r;
  r.outcome = Outcome(bytes.at(0));
  size_t at = 1;
  for (std::vector<DigestPiece>& file : r.pieces) {
    uint64_t count = 0;
    std::memcpy(&count, bytes.data() + at, sizeof count);
    at += sizeof count;
    file.resize(count);
    std::memcpy(file.data(), bytes.data() + at, count * sizeof(DigestPiece));
    at += count * sizeof(DigestPiece);
  }
  r.message = bytes.substr(at);
  return r;
}

// Every rank's report, by rank, on rank 0; the others get their own only.
std::vector<Report> gather_reports(Communicator& comm, const Report& mine) {
  if (comm.rank() != 0) {
    const std::string bytes = encode(mine);
    const uint64_t size = bytes.size();
    comm.send(&size, sizeof size, 0);
    comm.send(bytes.data(), size, 0);
    return {mine};
  }
  std::vector<Report> all{mine};
  for (int q = 1; q < comm.world(); ++q) {
    uint64_t size = 0;
    comm.receive(&size, sizeof size, q);
    std::string bytes(size, '\0');
    comm.receive(bytes.data(), size, q);
    all.push_back(decode(bytes));
  }
  return all;
}

// The first failure among the reports, as "rank r: message", or an Ok report.
Report first_failure(const std::vector<Report>& reports) {
  for (size_t q = 0; q < reports.size(); ++q) {
    if (reports[q].outcome != Outcome::Ok) {
      Report r = reports[q];
      if (reports.size() > 1) r.message = "rank " + std::to_string(q) + ": " + r.message;
      return r;
    }
  }
  return {};
}

// Rank 0's verdict on every rank; throws it there when it is not Ok.
void agree(Communicator& comm, const Report& verdict) {
  const std::string text =
      broadcast_string(comm, std::string(1, char(verdict.outcome)) + verdict.message, 0);
  const std::string message = text.substr(1);
  if (Outcome(text.at(0)) == Outcome::Damaged) throw CheckpointDamaged(message);
  if (Outcome(text.at(0)) == Outcome::Failed) throw Error(message);
}

// Runs work, turning its exception into a report.
template <typename Work>
Report attempt(const Work& work) {
  Report r;
  try {
    work(r);
  } catch (const CheckpointDamaged& e) {
    r.outcome = Outcome::Damaged;
    r.message = e.what();
  } catch (const std::exception& e) {
    r.outcome = Outcome::Failed;
    r.message = e.what();
  }
  return r;
}

// floats [at, at + count) of src, to be written at byte offset of file (0 model, 1 optimizer).
struct Piece {
  int file;
  uint64_t offset;
  const float* src;
  int64_t count;
};

// What this rank writes: an even share of the weights, and of the moments (their owned slices
// when sharded), in file order.
std::vector<Piece> share_of(int rank, int world, const ParamLayout& layout, const ShardMap* map,
                            const ParallelSource& source, const CheckpointFilePlan plans[2]) {
  const int64_t n = layout.total();
  const int64_t lo = n * rank / world, hi = n * (rank + 1) / world;
  const uint64_t model_start = plans[0].header.size(), opt_start = plans[1].header.size();
  std::vector<Piece> pieces{{0, model_start + uint64_t(lo) * sizeof(float), source.params + lo,
                             hi - lo}};
  const float* moments[] = {source.exp_avg, source.exp_avg_sq};
  for (int k = 0; k < 2; ++k) {
    const uint64_t base = opt_start + uint64_t(k) * uint64_t(n) * sizeof(float);
    if (!map) {
      pieces.push_back({1, base + uint64_t(lo) * sizeof(float), moments[k] + lo, hi - lo});
      continue;
    }
    for (const ShardRange& r : map->ranges()) {
      pieces.push_back({1, base + uint64_t(r.begin) * sizeof(float), moments[k] + r.packed,
                        r.count});
    }
  }
  pieces.erase(std::remove_if(pieces.begin(), pieces.end(), [](const Piece& p) {
                 return p.count == 0;
               }), pieces.end());
  return pieces;
}

// Test hook: MAMBA_TEST_SAVE_FAULT=<fail|kill>:<rank>:<step> makes that rank throw, or die by
// SIGKILL, after writing the first piece of its share in the save of that step.
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
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t done = 0; done < size;) {
    const ssize_t put = ::pwrite(fd, p + done, size - done, off_t(offset + done));
    if (put < 0 && errno == EINTR) continue;
    if (put <= 0) io_failure(path, "write");
    done += size_t(put);
  }
}

// Rank 0: both files at their final size, each with its header; returns the header pieces.
void create_files(const std::string& tmp, const CheckpointFilePlan plans[2], Report& report) {
  for (int f = 0; f < 2; ++f) {
    const std::string path = (fs::path(tmp) / plans[f].name).string();
    Fd file{::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)};
    if (file.fd < 0) io_failure(path, "create");
    if (::ftruncate(file.fd, off_t(plans[f].bytes)) != 0) io_failure(path, "size");
    write_at(file.fd, path, plans[f].header.data(), plans[f].header.size(), 0);
    report.pieces[f].push_back(
        {0, plans[f].header.size(),
         crc32_update(0, plans[f].header.data(), plans[f].header.size())});
  }
}

// Writes this rank's pieces, checksummed, and fsyncs what it wrote.
void write_share(Backend& be, const std::string& tmp, const CheckpointFilePlan plans[2],
                 const std::vector<Piece>& pieces, int rank, int64_t step, Report& report) {
  std::string paths[2];
  Fd files[2];
  for (int f = 0; f < 2; ++f) {
    paths[f] = (fs::path(tmp) / plans[f].name).string();
    files[f].fd = ::open(paths[f].c_str(), O_WRONLY | O_CLOEXEC);
    if (files[f].fd < 0) io_failure(paths[f], "open");
  }
  std::vector<uint8_t> chunk(be.host_accessible() ? 0 : kChunkBytes);
  for (size_t i = 0; i < pieces.size(); ++i) {
    const Piece& p = pieces[i];
    const auto* src = reinterpret_cast<const uint8_t*>(p.src);
    const uint64_t bytes = uint64_t(p.count) * sizeof(float);
    uint32_t crc = 0;
    for (uint64_t done = 0; done < bytes; done += kChunkBytes) {
      const size_t size = size_t(std::min<uint64_t>(kChunkBytes, bytes - done));
      const uint8_t* data = src + done;
      if (!chunk.empty()) {
        be.download(chunk.data(), data, size);
        data = chunk.data();
      }
      write_at(files[p.file].fd, paths[p.file], data, size, p.offset + done);
      crc = crc32_update(crc, data, size);
    }
    report.pieces[p.file].push_back({p.offset, bytes, crc});
    if (i == 0 && fault_due(rank, step, "kill")) ::raise(SIGKILL);
    if (i == 0 && fault_due(rank, step, "fail")) {
      throw_error("test: rank ", rank, " fails in the middle of the save of step ", step);
    }
  }
  for (int f = 0; f < 2; ++f) {
    if (::fsync(files[f].fd) != 0) io_failure(paths[f], "sync");
  }
}

}  // namespace

std::string save_checkpoint_parallel(Communicator& comm, Backend& be, const std::string& dir,
                                     const ParamLayout& layout, const ShardMap* map,
                                     const ParallelSource& source, const TrainerState& state,
                                     int keep_last) {
  const int rank = comm.rank(), world = comm.world();
  const CheckpointFilePlan plans[2] = {model_file_plan(layout),
                                       optimizer_file_plan(layout, source.optimizer_steps)};
  const std::vector<Piece> pieces = share_of(rank, world, layout, map, source, plans);
  // The sum of squares of floats cannot overflow a double, so it is finite iff every value is.
  bool finite = true;
  for (const Piece& p : pieces) finite = finite && std::isfinite(be.sum_of_squares(p.src, p.count));
  if (comm.allreduce_sum(finite ? 0.0 : 1.0) > 0.0) throw_nonfinite_checkpoint(dir, state.step);
  be.synchronize();

  std::string tmp = checkpoint_path(dir, state.step) + ".tmp";
  Report mine = attempt([&](Report& r) {
    if (rank == 0) {
      tmp = begin_checkpoint(dir, state.step);
      create_files(tmp, plans, r);
    }
  });
  agree(comm, mine);  // the files exist, or every rank stops here with rank 0's error
  const Report written =
      attempt([&](Report& r) { write_share(be, tmp, plans, pieces, rank, state.step, r); });
  for (int f = 0; f < 2; ++f) {
    mine.pieces[f].insert(mine.pieces[f].end(), written.pieces[f].begin(),
                          written.pieces[f].end());
  }
  mine.outcome = written.outcome;
  mine.message = written.message;
  const std::vector<Report> reports = gather_reports(comm, mine);
  Report verdict;
  if (rank == 0) {
    verdict = first_failure(reports);
    if (verdict.outcome == Outcome::Ok) {
      verdict = attempt([&](Report&) {
        std::map<std::string, FileDigest> files;
        for (int f = 0; f < 2; ++f) {
          std::vector<DigestPiece> all;
          for (const Report& r : reports) {
            all.insert(all.end(), r.pieces[f].begin(), r.pieces[f].end());
          }
          files[plans[f].name] = combine_pieces(all, plans[f].bytes, plans[f].name);
        }
        complete_checkpoint(dir, tmp, state, files, keep_last);
      });
    }
  }
  agree(comm, verdict);
  return checkpoint_path(dir, state.step);
}

int64_t load_checkpoint_sharded(Communicator& comm, const std::string& path,
                                const ParamLayout& layout, const ShardMap& map,
                                const CheckpointSink& sink, TrainerState& state) {
  MomentSlices slices;
  slices.ranges = map.ranges();
  slices.header = comm.rank() == 0;
  int64_t optimizer_steps = 0;
  const Report mine = attempt([&](Report& r) {
    optimizer_steps = load_checkpoint_slices(path, layout, sink, state, slices);
    r.pieces[1] = slices.pieces;
  });
  const std::vector<Report> reports = gather_reports(comm, mine);
  Report verdict;
  if (comm.rank() == 0) {
    verdict = first_failure(reports);
    if (verdict.outcome == Outcome::Ok && slices.expected) {
      verdict = attempt([&](Report&) {
        std::vector<DigestPiece> all;
        for (const Report& r : reports) all.insert(all.end(), r.pieces[1].begin(), r.pieces[1].end());
        const std::string file = (fs::path(path) / "optimizer.safetensors").string();
        const FileDigest actual = combine_pieces(all, slices.file_bytes, file);
        if (actual != *slices.expected) {
          throw CheckpointDamaged("checkpoint error: " + file + " fails its checksum (" +
                                  std::to_string(actual.bytes) + " bytes, crc32 " +
                                  crc32_hex(actual.crc32) + " read by " +
                                  std::to_string(comm.world()) + " ranks; trainer.json says " +
                                  std::to_string(slices.expected->bytes) + " bytes, crc32 " +
                                  crc32_hex(slices.expected->crc32) +
                                  "): the checkpoint is damaged; resume from an older one");
        }
      });
    }
  }
  agree(comm, verdict);
  return optimizer_steps;
}

std::string load_newest_intact_checkpoint_sharded(Communicator& comm, const std::string& dir,
                                                  const ParamLayout& layout, const ShardMap& map,
                                                  const CheckpointSink& sink, TrainerState& state,
                                                  int64_t& optimizer_steps) {
  std::vector<std::string> candidates;
  if (comm.rank() == 0) candidates = list_checkpoints(dir);
  for (;;) {
    const std::string path =
        broadcast_string(comm, candidates.empty() ? "" : candidates.back(), 0);
    if (path.empty()) return "";
    try {
      optimizer_steps = load_checkpoint_sharded(comm, path, layout, map, sink, state);
      return path;
    } catch (const CheckpointDamaged& e) {
      if (comm.rank() == 0) {
        std::fprintf(stderr, "warning: skipping the damaged checkpoint %s: %s\n", path.c_str(),
                     e.what());
        set_aside(path);
        candidates.pop_back();
      }
    }
  }
}

}  // namespace mamba
