#include "train/parallel_checkpoint.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <vector>

#include "train/checkpoint_parts.h"
#include "util/checksum.h"
#include "util/error.h"

namespace mamba {

namespace {

namespace fs = std::filesystem;

// What a rank tells rank 0 after its part of a save or load.
enum class Outcome : char { Ok = '0', Damaged = '1', Failed = '2' };

struct Report {
  Outcome outcome = Outcome::Ok;
  std::string message;
  PartDigests part;  // the piece checksums of what it wrote or read
};

std::string encode(const Report& r) {
  std::string bytes(1, char(r.outcome));
  for (const std::vector<DigestPiece>& file : r.part.files) {
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
  for (std::vector<DigestPiece>& file : r.part.files) {
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

// What this rank writes: an even share of the weights and of the moments, or, sharded, their
// owned slices, in file order.
std::vector<CheckpointPiece> share_of(int rank, int world, const ParamLayout& layout,
                                      const ShardMap* map, const ParallelSource& source,
                                      const CheckpointPlans& plans) {
  const int64_t n = layout.total();
  int64_t lo = 0, hi = 0;
  even_share(rank, world, n, lo, hi);
  std::vector<CheckpointPiece> pieces;
  const float* tensors[] = {source.params, source.exp_avg, source.exp_avg_sq};
  for (int k = 0; k < 3; ++k) {
    if (!map) {
      pieces.push_back(piece_of(plans, n, k, lo, hi - lo, tensors[k] + lo));
      continue;
    }
    for (const ShardRange& r : map->ranges()) {
      pieces.push_back(piece_of(plans, n, k, r.begin, r.count, tensors[k] + r.packed));
    }
  }
  pieces.erase(std::remove_if(pieces.begin(), pieces.end(),
                              [](const CheckpointPiece& p) { return p.count == 0; }),
               pieces.end());
  return pieces;
}

}  // namespace

std::string save_checkpoint_parallel(Communicator& comm, Backend& be, const std::string& dir,
                                     const ParamLayout& layout, const ShardMap* map,
                                     const ParallelSource& source, const TrainerState& state,
                                     int keep_last) {
  const int rank = comm.rank(), world = comm.world();
  const CheckpointPlans plans(layout, source.optimizer_steps);
  const std::vector<CheckpointPiece> pieces = share_of(rank, world, layout, map, source, plans);
  // The sum of squares of floats cannot overflow a double, so it is finite iff every value is.
  bool finite = true;
  for (const CheckpointPiece& p : pieces) {
    finite = finite && std::isfinite(be.sum_of_squares(p.src, p.count));
  }
  if (comm.allreduce_sum(finite ? 0.0 : 1.0) > 0.0) throw_nonfinite_checkpoint(dir, state.step);
  be.synchronize();

  Report mine = attempt([&](Report& r) {
    if (rank == 0) r.part = create_checkpoint_files(dir, state.step, plans);
  });
  agree(comm, mine);  // the files exist, or every rank stops here with rank 0's error
  const FetchBytes fetch = [&](void* host, const void* src, size_t bytes) {
    be.download(host, src, bytes);
  };
  const Report written = attempt([&](Report& r) {
    r.part = write_checkpoint_pieces(dir, state.step, plans, pieces,
                                     be.host_accessible() ? nullptr : &fetch, rank);
  });
  for (int f = 0; f < 2; ++f) {
    mine.part.files[f].insert(mine.part.files[f].end(), written.part.files[f].begin(),
                              written.part.files[f].end());
  }
  mine.outcome = written.outcome;
  mine.message = written.message;
  const std::vector<Report> reports = gather_reports(comm, mine);
  Report verdict;
  if (rank == 0) {
    verdict = first_failure(reports);
    if (verdict.outcome == Outcome::Ok) {
      verdict = attempt([&](Report&) {
        std::vector<PartDigests> parts;
        for (const Report& r : reports) parts.push_back(r.part);
        finish_parallel_checkpoint(dir, plans, parts, state, keep_last);
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
    r.part.files[1] = slices.pieces;
  });
  const std::vector<Report> reports = gather_reports(comm, mine);
  Report verdict;
  if (comm.rank() == 0) {
    verdict = first_failure(reports);
    if (verdict.outcome == Outcome::Ok && slices.expected) {
      verdict = attempt([&](Report&) {
        std::vector<DigestPiece> all;
        for (const Report& r : reports) {
          all.insert(all.end(), r.part.files[1].begin(), r.part.files[1].end());
        }
        const std::string file = (fs::path(path) / "optimizer.safetensors").string();
        uint64_t covered = 0;
        for (const DigestPiece& p : all) covered += p.bytes;
        if (slices.file_bytes != covered) {
          throw CheckpointDamaged("checkpoint error: " + file + " is " +
                                  std::to_string(slices.file_bytes) + " bytes, " +
                                  std::to_string(covered) +
                                  " with its tensors: the checkpoint is damaged; resume from an "
                                  "older one");
        }
        const FileDigest actual = combine_pieces(all, covered, file);
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

std::string load_newest_intact_checkpoint_together(Communicator& comm, const std::string& dir,
                                                   const CheckpointLoad& load,
                                                   int64_t& optimizer_steps) {
  std::vector<std::string> candidates;
  if (comm.rank() == 0) candidates = list_checkpoints(dir);
  for (;;) {
    const std::string path = broadcast_string(comm, candidates.empty() ? "" : candidates.back(), 0);
    if (path.empty()) return "";
    std::string damage;
    try {
      optimizer_steps = load(path);
    } catch (const CheckpointDamaged& e) {
      damage = e.what();
    }
    // A rank that read other bytes than the rest (a failing disk) must not keep a checkpoint
    // the others set aside, nor the reverse.
    if (comm.allreduce_sum(damage.empty() ? 0.0 : 1.0) == 0.0) return path;
    if (comm.rank() == 0) {
      std::fprintf(stderr, "warning: skipping the damaged checkpoint %s: %s\n", path.c_str(),
                   damage.empty() ? "another rank found it damaged" : damage.c_str());
      set_aside(path);
      candidates.pop_back();
    }
  }
}

}  // namespace mamba
