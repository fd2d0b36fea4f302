// `mpirun -np N mamba prepare ...`: the same shards as one process, made by N.
//
// Which split a document goes to depends on its index in the whole corpus, and where a shard
// starts on the token counts of everything before it, so the work runs in three steps:
// 1. rank r tokenizes a contiguous share of the input files (about 1/N of the bytes) into a raw
//    token file, and notes each document's length;
// 2. with every rank's document count known, it splits its documents into a train and a val
//    token file by their global index;
// 3. with every rank's token counts known, shard k of a split is written by rank k mod N from
//    the ranks' files of that split, laid end to end in rank order.
// Rank 0 then reads the shards back against the ranks' files and writes the manifest. The
// temporary files live in OUT/.prepare-parallel, so OUT must be one filesystem for all ranks.
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "data/manifest.h"
#include "data/prepare_steps.h"
#include "util/error.h"

namespace mamba {

namespace fs = std::filesystem;

namespace {

constexpr size_t kBlockTokens = 1 << 20;
const char* const kSplits[] = {"train", "val"};

using File = std::unique_ptr<std::FILE, int (*)(std::FILE*)>;

File open_file(const std::string& path, const char* mode) {
  File f(std::fopen(path.c_str(), mode), std::fclose);
  if (!f) {
    throw_error("prepare error: cannot open ", path, ": check that --out is writable, on a ",
                "filesystem every rank sees");
  }
  return f;
}

void write_all(std::FILE* f, const void* data, size_t bytes, const std::string& path) {
  if (bytes > 0 && std::fwrite(data, 1, bytes, f) != bytes) {
    throw_error("prepare error: cannot write ", path, ": check free disk space");
  }
}

void read_all(std::FILE* f, void* data, size_t bytes, const std::string& path) {
  if (bytes > 0 && std::fread(data, 1, bytes, f) != bytes) {
    throw_error("prepare error: ", path, " ended early: the run's temporary files changed; ",
                "run prepare again");
  }
}

// Files [first, last) of `inputs` for `rank`: contiguous shares of about equal bytes.
std::pair<size_t, size_t> share_of(const std::vector<InputFile>& inputs, int rank, int ranks) {
  uint64_t total = 0;
  for (const InputFile& f : inputs) total += f.bytes;
  std::vector<int> owner(inputs.size());
  uint64_t before = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    // The rank whose share holds the middle of the file (by count when sizes are unknown).
    owner[i] =
        total > 0
            ? int(std::min<uint64_t>(ranks - 1, (before + inputs[i].bytes / 2) * ranks / total))
            : int(i * ranks / inputs.size());
    before += inputs[i].bytes;
  }
  const auto first = std::lower_bound(owner.begin(), owner.end(), rank);
  const auto last = std::upper_bound(owner.begin(), owner.end(), rank);
  return {size_t(first - owner.begin()), size_t(last - owner.begin())};
}

// Step 1's sink: the tokens of this rank's documents, and each document's length.
class RawSink final : public DocumentSink {
 public:
  RawSink(const std::string& tokens, const std::string& lengths, DocumentTokens around)
      : tokens_path_(tokens),
        lengths_path_(lengths),
        tokens_(open_file(tokens, "wb")),
        lengths_(open_file(lengths, "wb")),
        eot_(around.eos),
        bos_(around.bos) {}
  void begin_document(uint64_t) override {
    length_ = 0;
    if (bos_ >= 0) append(&bos_, 1);
  }
  void append(const int32_t* ids, size_t count) override {
    write_all(tokens_.get(), ids, count * sizeof(int32_t), tokens_path_);
    length_ += count;
  }
  void end_document() override {
    append(&eot_, 1);
    write_all(lengths_.get(), &length_, sizeof length_, lengths_path_);
  }
  void close() {
    const bool tokens_ok = std::fclose(tokens_.release()) == 0;
    const bool lengths_ok = std::fclose(lengths_.release()) == 0;
    if (!tokens_ok || !lengths_ok) {
      throw_error("prepare error: cannot write ", tokens_path_, ": check free disk space");
    }
  }

 private:
  std::string tokens_path_, lengths_path_;
  File tokens_, lengths_;
  int32_t eot_, bos_;
  uint64_t length_ = 0;
};

std::vector<int64_t> prefix_sums(const std::vector<int64_t>& counts) {
  std::vector<int64_t> starts(counts.size() + 1, 0);
  for (size_t i = 0; i < counts.size(); ++i) starts[i + 1] = starts[i] + counts[i];
  return starts;
}

}  // namespace

PrepareSummary prepare_corpus_parallel(const PrepareOptions& options) {
  PrepareGroup& group = *options.group;
  const int rank = group.rank(), ranks = group.size();
  check_prepare_options(options);
  const std::unique_ptr<Tokenizer> tokenizer = load_tokenizer(options.tokenizer);
  const std::vector<InputFile> inputs = find_inputs(options.inputs, options.extensions);
  const std::string tmp = options.out_dir + "/.prepare-parallel";
  if (rank == 0) {
    prepare_output_dir(options.out_dir, options.overwrite);
    std::error_code ec;
    fs::remove_all(tmp, ec);  // what a killed parallel run left
    fs::create_directories(tmp, ec);
    if (ec) throw_error("prepare error: cannot create ", tmp, ": ", ec.message());
  }
  group.barrier();
  const int threads = options.threads > 0 ? options.threads : omp_get_max_threads();
  const std::string mine = tmp + "/rank-" + std::to_string(rank);

  // Step 1: tokenize this rank's share.
  const auto [first, last] = share_of(inputs, rank, ranks);
  const std::vector<InputFile> share(inputs.begin() + first, inputs.begin() + last);
  PrepareSummary summary;
  summary.threads = threads;
  summary.processes = ranks;
  uint64_t share_bytes = 0;
  for (const InputFile& f : inputs) summary.input_bytes += f.bytes;
  for (const InputFile& f : share) share_bytes += f.bytes;
  Progress progress("prepare (rank 0 of " + std::to_string(ranks) + ")", share_bytes, stderr,
                    options.verbose && rank == 0 && isatty(2));
  const bool show = options.verbose && rank == 0;
  const DocumentTokens around = document_tokens(*tokenizer, options);
  summary.eos_id = around.eos;
  summary.bos_id = around.bos;
  int64_t documents = 0;
  {
    RawSink sink(mine + ".tokens", mine + ".lengths", around);
    if (!share.empty()) {
      documents = int64_t(tokenize_inputs(share, *tokenizer, options.text_key, threads, sink,
                                          show ? &progress : nullptr));
    }
    sink.close();
  }

  // Step 2: split this rank's documents by their index in the whole corpus.
  const std::vector<int64_t> doc_starts = prefix_sums(group.allgather(documents));
  int64_t split_tokens[2] = {0, 0}, split_documents[2] = {0, 0};
  {
    const File tokens = open_file(mine + ".tokens", "rb");
    const File lengths = open_file(mine + ".lengths", "rb");
    File out[2] = {open_file(mine + ".train", "wb"), open_file(mine + ".val", "wb")};
    std::vector<int32_t> block;
    for (int64_t d = 0; d < documents; ++d) {
      uint64_t length = 0;
      read_all(lengths.get(), &length, sizeof length, mine + ".lengths");
      const int s = is_validation_document(uint64_t(doc_starts[rank] + d), options.val_fraction);
      for (uint64_t done = 0; done < length;) {
        block.resize(size_t(std::min<uint64_t>(kBlockTokens, length - done)));
        read_all(tokens.get(), block.data(), block.size() * sizeof(int32_t), mine + ".tokens");
        write_all(out[s].get(), block.data(), block.size() * sizeof(int32_t),
                  mine + "." + kSplits[s]);
        done += block.size();
      }
      split_tokens[s] += int64_t(length);
      ++split_documents[s];
    }
    for (File& f : out) {
      if (std::fclose(f.release()) != 0) {
        throw_error("prepare error: cannot write ", mine, ".*: check free disk space");
      }
    }
  }
  fs::remove(mine + ".tokens");
  fs::remove(mine + ".lengths");

  // Step 3: every rank writes its round-robin share of each split's shards.
  std::vector<int64_t> token_starts[2];
  int64_t total_documents[2];
  for (int s = 0; s < 2; ++s) {
    token_starts[s] = prefix_sums(group.allgather(split_tokens[s]));
    const std::vector<int64_t> docs = group.allgather(split_documents[s]);
    total_documents[s] = prefix_sums(docs).back();
  }
  std::vector<std::string> written;
  try {
    for (int s = 0; s < 2; ++s) {
      const int64_t total = token_starts[s].back();
      const int64_t count = (total + options.shard_tokens - 1) / options.shard_tokens;
      ShardInfo attributes = shard_attributes(*tokenizer, around.eos);
      attributes.split = kSplits[s];
      std::vector<int32_t> block;
      for (int64_t k = rank; k < count; k += ranks) {
        ShardWriter writer(shard_path(options.out_dir, kSplits[s], size_t(k)), attributes);
        const int64_t begin = k * options.shard_tokens;
        const int64_t end = std::min(total, begin + options.shard_tokens);
        for (int q = 0; q < ranks; ++q) {
          const int64_t from = std::max(begin, token_starts[s][q]);
          const int64_t to = std::min(end, token_starts[s][q + 1]);
          if (from >= to) continue;
          const std::string path = tmp + "/rank-" + std::to_string(q) + "." + kSplits[s];
          const File f = open_file(path, "rb");
          if (fseeko(f.get(), off_t(from - token_starts[s][q]) * off_t(sizeof(int32_t)),
                     SEEK_SET) != 0) {
            throw_error("prepare error: cannot seek in ", path, ": run prepare again");
          }
          for (int64_t at = from; at < to; at += int64_t(block.size())) {
            block.resize(size_t(std::min<int64_t>(int64_t(kBlockTokens), to - at)));
            read_all(f.get(), block.data(), block.size() * sizeof(int32_t), path);
            writer.append(block.data(), block.size());
            // The end-of-text id ends a document and appears nowhere else (rank 0 checks).
            for (int32_t t : block) {
              if (t == around.eos) writer.end_document();
            }
          }
        }
        written.push_back(writer.finish().path);
      }
    }
    group.barrier();
    summary.seconds = progress.seconds();  // every rank's tokens are in shards now

    // Rank 0 checks the shards against the ranks' files and writes the manifest.
    if (rank == 0) {
      if (show) progress.finish(share_bytes);
      std::vector<ShardInfo> infos;
      for (int s = 0; s < 2; ++s) {
        SplitSummary& split = s == 0 ? summary.train : summary.val;
        split.documents = total_documents[s];
        split.tokens = token_starts[s].back();
        Sha256 hash;
        std::vector<int32_t> block(kBlockTokens);
        for (int q = 0; q < ranks; ++q) {
          const std::string path = tmp + "/rank-" + std::to_string(q) + "." + kSplits[s];
          const File f = open_file(path, "rb");
          size_t n;
          while ((n = std::fread(block.data(), sizeof(int32_t), block.size(), f.get())) > 0) {
            hash_tokens(hash, block.data(), n);
          }
        }
        split.tokens_sha256 = hash.hex();
        const int64_t count = (split.tokens + options.shard_tokens - 1) / options.shard_tokens;
        int64_t shard_documents = 0;
        for (int64_t k = 0; k < count; ++k) {
          split.shards.push_back(shard_path(options.out_dir, kSplits[s], size_t(k)));
          infos.push_back(read_shard_info(split.shards.back()));
          shard_documents += infos.back().documents;
        }
        if (shard_documents != split.documents) {
          throw_error("prepare error: the tokenizer ", options.tokenizer,
                      " puts its end-of-text id inside documents, so a parallel run cannot tell ",
                      "where documents end: run prepare as one process");
        }
      }
      check_split_sizes(summary, options, inputs.size());
      verify_split(summary.train, "train");
      verify_split(summary.val, "val");
      write_run_manifest(options.out_dir, infos, summary);
    }
    group.barrier();
  } catch (...) {
    for (const std::string& p : written) std::remove(p.c_str());
    throw;
  }
  for (const char* split : kSplits) fs::remove(mine + "." + split);
  group.barrier();
  if (rank == 0) fs::remove_all(tmp);
  return summary;
}

}  // namespace mamba
