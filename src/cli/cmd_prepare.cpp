// `mamba prepare`: tokenize text files, directories or JSONL into HDF5 train/val shards.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "data/manifest.h"
#include "data/prepare.h"
#include "data/progress.h"
#include "dist/communicator.h"
#include "util/error.h"

namespace mamba::cli {

namespace {

const char* const kUsage = R"(usage: mamba prepare --tokenizer SPEC --out DIR [options] INPUT...
       mamba prepare --verify DIR
       mamba prepare --adopt DIR
       mpirun -np N mamba prepare ...   (N processes share the inputs; the same shards)

Tokenizes documents into HDF5 shards DIR/train-0000.h5, ... and DIR/val-0000.h5, ..., listed in
DIR/manifest.json, which is written last: training takes only shards a manifest lists.
A plain-text file is one document, a .jsonl file holds one document per line ({"text": ...});
each document is followed by the end-of-text token, and preceded by a BOS token where the
tokenizer's post-processor puts one (Llama-2's <s>, Gemma's <bos>). Files ending in .gz or .zst
are decompressed as they are read.

  INPUT               a text or .jsonl file (optionally .gz or .zst), a directory (searched
                      recursively), or a quoted glob
  --tokenizer SPEC    byte | path/tokenizer.json | path/encoder.json (vocab.bpe beside it) |
                      a directory holding either
  --out DIR           where the shards go (created if missing)
  --val-fraction F    share of documents for validation, spread evenly (default 0.01; 0: none)
  --shard-tokens N    tokens per shard, e.g. 50M or 1G (default 100M)
  --threads N         tokenizer threads (default: all cores, or OMP_NUM_THREADS)
  --text-key NAME     JSONL field that holds the text (default text)
  --eos TOKEN         token after each document, by its text (default: the tokenizer's
                      end-of-text token, e.g. <|endoftext|>, </s>, <eos>)
  --bos TOKEN         token before each document, or none (default: the post-processor's)
  --ext LIST          extensions taken from directories (default txt,text,md,rst,jsonl)
  --overwrite         replace shards already in DIR
  --quiet             no progress display
  --verify DIR        check every shard DIR/manifest.json lists (size, tokens, crc32) and exit
  --adopt DIR         write DIR/manifest.json for shards made before prepare wrote manifests
                      (only for shards of a run that finished) and exit
)";

int64_t parse_count(const std::string& option, const std::string& value) {
  char* end = nullptr;
  const double number = std::strtod(value.c_str(), &end);
  const std::string suffix = end;
  const double scale = suffix.empty()                   ? 1
                       : suffix == "k" || suffix == "K" ? 1e3
                       : suffix == "M"                  ? 1e6
                       : suffix == "G"                  ? 1e9
                                                        : 0;
  const double count = number * scale;
  if (end == value.c_str() || !(count >= 1 && count <= 9e18) || count != std::floor(count)) {
    throw_error("prepare error: ", option, " ", value,
                ": expected a positive whole count such as 1000, 50M or 1G");
  }
  return int64_t(count);
}

double parse_fraction(const std::string& value) {
  char* end = nullptr;
  const double f = std::strtod(value.c_str(), &end);
  if (end == value.c_str() || *end != '\0' || !(f >= 0 && f < 1)) {
    throw_error("prepare error: --val-fraction ", value,
                ": expected a number in [0, 1), e.g. 0.01");
  }
  return f;
}

std::vector<std::string> split_list(const std::string& list) {
  std::vector<std::string> items;
  size_t begin = 0;
  while (begin <= list.size()) {
    size_t end = list.find(',', begin);
    if (end == std::string::npos) end = list.size();
    std::string item = list.substr(begin, end - begin);
    if (!item.empty() && item[0] == '.') item.erase(0, 1);
    if (!item.empty()) items.push_back(item);
    begin = end + 1;
  }
  return items;
}

// The ranks of `mpirun -np N mamba prepare` as the data layer's PrepareGroup.
class MpiGroup final : public PrepareGroup {
 public:
  // A rank waits at a barrier while the others tokenize their whole share of the corpus, which
  // may take hours: no collective timeout here.
  explicit MpiGroup(Communicator& comm) : comm_(comm) {
    comm_.set_timeout(std::numeric_limits<double>::infinity());
  }
  int rank() const override { return comm_.rank(); }
  int size() const override { return comm_.world(); }
  std::vector<int64_t> allgather(int64_t value) override {
    std::vector<int64_t> all(static_cast<size_t>(size()));
    for (int r = 0; r < size(); ++r) {
      int64_t v = value;
      comm_.broadcast(&v, sizeof v, r);
      all[size_t(r)] = v;
    }
    return all;
  }
  void barrier() override { comm_.allreduce_sum(0); }

 private:
  Communicator& comm_;
};

// Only a run under mpirun starts MPI: a plain `mamba prepare` stays a plain process.
bool launched_by_mpirun() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"}) {
    if (std::getenv(name)) return true;
  }
  return false;
}

std::string thousands(int64_t n) {
  std::string digits = std::to_string(n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

void print_split(const char* name, const SplitSummary& s) {
  std::printf("%-5s %s documents, %s tokens in %zu shard%s%s%s\n", name,
              thousands(s.documents).c_str(), thousands(s.tokens).c_str(), s.shards.size(),
              s.shards.size() == 1 ? "" : "s", s.shards.empty() ? "" : ": ",
              s.shards.empty()       ? ""
              : s.shards.size() == 1 ? s.shards.front().c_str()
                                     : (s.shards.front() + " ...").c_str());
}

}  // namespace

int prepare(int argc, char** argv) {
  PrepareOptions options;
  std::string verify_dir, adopt_dir;
  for (int i = 0; i < argc; ++i) {
    std::string arg = argv[i], value;
    if (arg == "--help" || arg == "-h") {
      std::printf("%s", kUsage);
      return 0;
    }
    if (arg.rfind("--", 0) != 0) {
      options.inputs.push_back(arg);
      continue;
    }
    if (arg == "--overwrite") {
      options.overwrite = true;
      continue;
    }
    if (arg == "--quiet") {
      options.verbose = false;
      continue;
    }
    const size_t eq = arg.find('=');
    if (eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg.resize(eq);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      throw_error("prepare error: ", arg, " needs a value (mamba prepare --help)");
    }
    if (arg == "--tokenizer")
      options.tokenizer = value;
    else if (arg == "--out")
      options.out_dir = value;
    else if (arg == "--val-fraction")
      options.val_fraction = parse_fraction(value);
    else if (arg == "--shard-tokens")
      options.shard_tokens = parse_count(arg, value);
    else if (arg == "--threads")
      options.threads = int(parse_count(arg, value));
    else if (arg == "--text-key")
      options.text_key = value;
    else if (arg == "--eos")
      options.eos_token = value;
    else if (arg == "--bos")
      options.bos_token = value;
    else if (arg == "--ext")
      options.extensions = split_list(value);
    else if (arg == "--verify")
      verify_dir = value;
    else if (arg == "--adopt")
      adopt_dir = value;
    else
      throw_error("prepare error: unknown option ", arg, " (mamba prepare --help)");
  }
  if (!adopt_dir.empty()) {
    const size_t n = adopt_shards(adopt_dir);
    std::printf("listed %zu shard%s in %s\n", n, n == 1 ? "" : "s",
                manifest_path(adopt_dir).c_str());
    return 0;
  }
  if (!verify_dir.empty()) {
    const VerifySummary v = verify_manifest(verify_dir);
    std::printf("verified %zu shard%s (%s) against %s: sizes, token counts and crc32 match\n",
                v.shards, v.shards == 1 ? "" : "s", format_bytes(double(v.bytes)).c_str(),
                manifest_path(verify_dir).c_str());
    return 0;
  }
  if (options.tokenizer.empty() || options.out_dir.empty() || options.inputs.empty()) {
    std::fprintf(stderr, "prepare error: --tokenizer, --out and at least one INPUT are needed\n%s",
                 kUsage);
    return 2;
  }

  std::unique_ptr<MpiGroup> group;
  if (launched_by_mpirun() && mpi_world().world() > 1) {
    group = std::make_unique<MpiGroup>(mpi_world());
    options.group = group.get();
  }
  PrepareSummary s;
  try {
    s = prepare_corpus(options);
  } catch (const Error& e) {
    if (!group) throw;
    // The other ranks may be waiting for this one: take the whole job down.
    std::fprintf(stderr, "%s\n", e.what());
    mpi_world().abort(1);
  }
  if (group && group->rank() != 0) return 0;
  print_split("train", s.train);
  print_split("val", s.val);
  std::printf("documents: %send with token %d\n",
              s.bos_id < 0 ? "" : ("start with token " + std::to_string(s.bos_id) + ", ").c_str(),
              s.eos_id);
  const std::string processes =
      s.processes > 1 ? std::to_string(s.processes) + " processes x " : std::string();
  std::printf("throughput: %s in %.2f s = %.2f MB/s on %s%d thread%s\n",
              format_bytes(double(s.input_bytes)).c_str(), s.seconds,
              s.input_bytes / 1e6 / std::max(s.seconds, 1e-9), processes.c_str(), s.threads,
              s.threads == 1 ? "" : "s");
  std::printf("read back: shards identical to the token stream (train sha256 %.16s...)\n",
              s.train.tokens_sha256.c_str());
  return 0;
}

}  // namespace mamba::cli
