#include "data/prepare.h"

#include <fcntl.h>
#include <omp.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>

#include "data/corpus.h"
#include "data/manifest.h"
#include "data/prepare_steps.h"
#include "data/pretokenize.h"
#include "data/progress.h"
#include "data/sha256.h"
#include "data/shard.h"
#include "data/tokenizer.h"
#include "util/atomic_file.h"
#include "util/error.h"

namespace mamba {

namespace fs = std::filesystem;

namespace {

constexpr size_t kSegmentBytes = 1 << 19;         // a long document is cut into pieces this size
constexpr size_t kMaxSegmentBytes = 1 << 20;      // ... or at most this (see first_segment_end)
constexpr size_t kBatchBytesPerThread = 4 << 20;  // text tokenized between two writes
constexpr int64_t kVerifyBlock = 1 << 20;

// One split's output: fills shards of exactly shard_tokens tokens (the last one: what is left),
// named <dir>/<split>-0000.h5, -0001.h5, ...
class SplitWriter {
 public:
  SplitWriter(const std::string& dir, const ShardInfo& attributes, int64_t shard_tokens)
      : dir_(dir), attributes_(attributes), shard_tokens_(shard_tokens) {}

  void append(const int32_t* tokens, size_t count) {
    hash_tokens(hash_, tokens, count);
    summary_.tokens += int64_t(count);
    while (count > 0) {
      if (!shard_) open();
      const size_t take = std::min<size_t>(count, size_t(shard_tokens_ - shard_->num_tokens()));
      shard_->append(tokens, take);
      tokens += take;
      count -= take;
      if (shard_->num_tokens() == shard_tokens_) close();
    }
  }

  // The end-of-text token counts its document in the shard it lands in.
  void end_document(int32_t eot) {
    hash_tokens(hash_, &eot, 1);
    ++summary_.tokens;
    ++summary_.documents;
    if (!shard_) open();
    shard_->append(&eot, 1);
    shard_->end_document();
    if (shard_->num_tokens() == shard_tokens_) close();
  }

  SplitSummary finish() {
    if (shard_) close();
    summary_.tokens_sha256 = hash_.hex();
    return summary_;
  }

  const std::vector<std::string>& shards() const { return summary_.shards; }
  const std::vector<ShardInfo>& infos() const { return infos_; }

 private:
  void open() {
    shard_ = std::make_unique<ShardWriter>(
        shard_path(dir_, attributes_.split, summary_.shards.size()), attributes_);
  }
  void close() {
    infos_.push_back(shard_->finish());
    summary_.shards.push_back(infos_.back().path);
    shard_.reset();
  }

  std::string dir_;
  ShardInfo attributes_;
  int64_t shard_tokens_;
  std::unique_ptr<ShardWriter> shard_;
  SplitSummary summary_;
  std::vector<ShardInfo> infos_;
  Sha256 hash_;
};

struct Encoded {
  std::vector<int32_t> ids;
  std::exception_ptr error;  // rethrown in input order: an exception must not leave OpenMP
};

std::vector<int32_t> encode_unit(const Tokenizer& tokenizer, const TextUnit& unit,
                                 const InputFile& input, const std::string& text_key,
                                 size_t segment_bytes, size_t max_segment_bytes) {
  if (!unit.json) return tokenizer.encode(unit.text);  // already a segment
  const std::string where = input.path + " line " + std::to_string(unit.line);
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(unit.text);
  } catch (const nlohmann::json::exception&) {
    throw_error("prepare error: ", where, " is not valid JSON: fix the line, or give the file ",
                "another extension than .jsonl to read it as plain text");
  }
  if (!doc.is_object() || !doc.contains(text_key) || !doc[text_key].is_string()) {
    throw_error("prepare error: ", where, " has no string field \"", text_key,
                "\": give every line one, or name the field with --text-key");
  }
  // A long document is encoded segment by segment, so its pre-tokenized pieces are never all
  // in memory at once.
  std::vector<int32_t> ids;
  const std::string& text = doc[text_key].get_ref<const std::string&>();
  for (std::string_view segment : split_into_segments(text, segment_bytes, max_segment_bytes)) {
    tokenizer.encode(segment, ids);
  }
  return ids;
}

void sync_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  const bool ok = fd >= 0 && ::fsync(fd) == 0;
  if (fd >= 0) ::close(fd);
  if (!ok) throw_error("prepare error: cannot sync ", path, ": check the disk and free space");
}

void remove_files(const std::vector<std::string>& paths) {
  for (const std::string& p : paths) std::remove(p.c_str());
}

// The one-process run's sink: each document goes whole to the train or the validation shards.
class SplitSink final : public DocumentSink {
 public:
  SplitSink(SplitWriter& train, SplitWriter& val, double val_fraction, DocumentTokens tokens)
      : train_(train), val_(val), val_fraction_(val_fraction), eot_(tokens.eos), bos_(tokens.bos) {}
  void begin_document(uint64_t index) override {
    split_ = is_validation_document(index, val_fraction_) ? &val_ : &train_;
    if (bos_ >= 0) split_->append(&bos_, 1);
  }
  void append(const int32_t* ids, size_t count) override { split_->append(ids, count); }
  void end_document() override { split_->end_document(eot_); }

 private:
  SplitWriter &train_, &val_;
  double val_fraction_;
  int32_t eot_, bos_;
  SplitWriter* split_ = nullptr;
};

}  // namespace

// Hashes tokens as little-endian uint32, the same bytes whichever way they are stored.
void hash_tokens(Sha256& hash, const int32_t* tokens, size_t count) {
  unsigned char buffer[4096];
  size_t used = 0;
  for (size_t i = 0; i < count; ++i) {
    const uint32_t t = uint32_t(tokens[i]);
    for (int b = 0; b < 4; ++b) buffer[used++] = (unsigned char)(t >> (8 * b));
    if (used == sizeof buffer) {
      hash.update(buffer, used);
      used = 0;
    }
  }
  hash.update(buffer, used);
}

uint64_t tokenize_inputs(const std::vector<InputFile>& inputs, const Tokenizer& tokenizer,
                         const std::string& text_key, int threads, DocumentSink& sink,
                         Progress* progress) {
  // Tokenizers whose words can span the cuts (Llama-3's, Llama-2's, Gemma's) get whole
  // documents.
  const bool cut = tokenizer.encodes_segments();
  const size_t segment_bytes = cut ? kSegmentBytes : SIZE_MAX;
  const size_t max_segment_bytes = cut ? kMaxSegmentBytes : SIZE_MAX;
  CorpusReader reader(inputs, segment_bytes, max_segment_bytes);
  std::vector<TextUnit> batch;
  std::vector<Encoded> encoded;
  uint64_t done_bytes = 0, document = 0;  // done_bytes: for progress only
  bool in_document = false;
  while (true) {
    batch.clear();
    size_t batch_bytes = 0;
    TextUnit unit;
    while (batch_bytes < kBatchBytesPerThread * size_t(threads) && reader.next(unit)) {
      batch_bytes += unit.text.size();
      batch.push_back(std::move(unit));
    }
    if (batch.empty()) break;
    encoded.resize(batch.size());
    // Pieces of one document tokenize independently (see split_into_segments), so the order
    // of work does not matter; writing below restores input order.
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (size_t i = 0; i < batch.size(); ++i) {
      try {
        encoded[i].ids = encode_unit(tokenizer, batch[i], inputs[batch[i].file], text_key,
                                     segment_bytes, max_segment_bytes);
        encoded[i].error = nullptr;
      } catch (...) {
        encoded[i].error = std::current_exception();
      }
    }
    for (size_t i = 0; i < batch.size(); ++i) {
      if (encoded[i].error) std::rethrow_exception(encoded[i].error);
      const TextUnit& u = batch[i];
      const std::vector<int32_t>& ids = encoded[i].ids;
      done_bytes += u.bytes;
      if (!in_document) {
        if (ids.empty() && u.ends_document) continue;  // an empty document is no document
        sink.begin_document(document++);
        in_document = true;
      }
      sink.append(ids.data(), ids.size());
      if (u.ends_document) {
        sink.end_document();
        in_document = false;
      }
    }
    if (progress) progress->update(done_bytes);
  }
  return document;
}

void check_prepare_options(const PrepareOptions& options) {
  if (!(options.val_fraction >= 0 && options.val_fraction < 1)) {
    throw_error("prepare error: --val-fraction ", options.val_fraction,
                ": expected a fraction in [0, 1), e.g. 0.01");
  }
  if (options.shard_tokens < 1) {
    throw_error("prepare error: --shard-tokens ", options.shard_tokens,
                ": expected a positive number of tokens, e.g. 100M");
  }
  if (options.out_dir.empty()) throw_error("prepare error: no --out directory given");
}

void prepare_output_dir(const std::string& dir, bool overwrite) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw_error("prepare error: cannot create ", dir, ": ", ec.message());
  std::vector<fs::path> old;
  const fs::path manifest = manifest_path(dir);
  if (fs::exists(manifest, ec)) old.push_back(manifest);
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    const bool split_prefix = name.rfind("train-", 0) == 0 || name.rfind("val-", 0) == 0;
    const bool shard_suffix = entry.path().extension() == ".h5" ||
                              (name.size() > 7 && name.compare(name.size() - 7, 7, ".h5.tmp") == 0);
    if (split_prefix && shard_suffix) old.push_back(entry.path());
  }
  if (ec) throw_error("prepare error: cannot list ", dir, ": ", ec.message());
  if (!old.empty() && !overwrite) {
    throw_error("prepare error: ", dir, " already holds the output of a prepare run (",
                old.front().string(), "): pass --overwrite to replace it, or choose another --out");
  }
  // The manifest goes first and for good: should this run die, none of the old shards and none
  // of its own pass for a corpus.
  for (const fs::path& p : old) {
    fs::remove(p, ec);
    if (ec) throw_error("prepare error: cannot remove ", p.string(), ": ", ec.message());
    if (p == manifest) fsync_directory(dir);
  }
}

// Makes the shards durable, then lists them in the manifest, written last and atomically: from
// this moment, and only if everything before succeeded, the loader accepts the shards.
void write_run_manifest(const std::string& dir, const std::vector<ShardInfo>& shards,
                        const PrepareSummary& summary) {
  Manifest manifest;
  for (const ShardInfo& info : shards) {
    sync_file(info.path);
    manifest.shards.push_back(describe_shard(info));
  }
  const auto add_split = [&](const char* name, const SplitSummary& s) {
    if (!s.shards.empty()) manifest.splits[name] = {s.documents, s.tokens, s.tokens_sha256};
  };
  add_split("train", summary.train);
  add_split("val", summary.val);
  fsync_directory(dir);
  write_manifest(dir, manifest);
}

namespace {

// The id of a token named by --eos or --bos.
int32_t named_token(const Tokenizer& tokenizer, const std::string& text, const char* option) {
  const int32_t id = tokenizer.token_id(text);
  if (id < 0) {
    throw_error("prepare error: ", option, " ", text, " is not a token of the ", tokenizer.name(),
                " tokenizer: give a token's text as its vocab or added_tokens write it, e.g. ",
                tokenizer.token_bytes(tokenizer.eot_id()));
  }
  return id;
}

}  // namespace

DocumentTokens document_tokens(const Tokenizer& tokenizer, const PrepareOptions& options) {
  DocumentTokens t;
  t.eos = options.eos_token.empty() ? tokenizer.eot_id()
                                    : named_token(tokenizer, options.eos_token, "--eos");
  t.bos = options.bos_token.empty()     ? tokenizer.bos_id()
          : options.bos_token == "none" ? -1
                                        : named_token(tokenizer, options.bos_token, "--bos");
  return t;
}

ShardInfo shard_attributes(const Tokenizer& tokenizer, int32_t eos) {
  ShardInfo attributes;
  attributes.vocab_size = tokenizer.vocab_size();
  attributes.eos_id = eos;
  attributes.tokenizer = tokenizer.name();
  attributes.tokenizer_sha256 = tokenizer.sha256();
  return attributes;
}

std::string shard_path(const std::string& dir, const std::string& split, size_t index) {
  char name[32];
  std::snprintf(name, sizeof name, "-%04zu.h5", index);
  return dir + "/" + split + name;
}

void verify_split(const SplitSummary& split, const std::string& name) {
  Sha256 hash;
  int64_t tokens = 0;
  std::vector<int32_t> block;
  for (const std::string& path : split.shards) {
    ShardReader reader(path);
    const int64_t n = reader.info().num_tokens;
    for (int64_t offset = 0; offset < n; offset += kVerifyBlock) {
      block.resize(size_t(std::min(kVerifyBlock, n - offset)));
      reader.read(offset, int64_t(block.size()), block.data());
      hash_tokens(hash, block.data(), block.size());
    }
    tokens += n;
  }
  if (tokens != split.tokens || hash.hex() != split.tokens_sha256) {
    throw_error("prepare error: the ", name, " shards read back differently from the ", tokens,
                " tokens written (", split.shards.empty() ? "" : split.shards.front(),
                " ...): check the disk and run prepare again");
  }
}

bool is_validation_document(uint64_t index, double fraction) {
  return std::floor(double(index + 1) * fraction) > std::floor(double(index) * fraction);
}

void check_split_sizes(const PrepareSummary& summary, const PrepareOptions& options,
                       size_t input_files) {
  if (summary.train.documents == 0) {
    throw_error("prepare error: the inputs hold no text (", input_files,
                " files, all empty): check the inputs");
  }
  if (options.val_fraction > 0 && summary.val.documents == 0) {
    throw_error("prepare error: --val-fraction ", options.val_fraction, " selects none of the ",
                summary.train.documents, " documents (one per text file or JSONL line): give at ",
                "least ", int64_t(std::ceil(1 / options.val_fraction)),
                " documents, raise --val-fraction, or pass --val-fraction 0 for no validation");
  }
}

PrepareSummary prepare_corpus(const PrepareOptions& options) {
  if (options.group && options.group->size() > 1) return prepare_corpus_parallel(options);
  check_prepare_options(options);
  const std::unique_ptr<Tokenizer> tokenizer = load_tokenizer(options.tokenizer);
  const std::vector<InputFile> inputs = find_inputs(options.inputs, options.extensions);
  prepare_output_dir(options.out_dir, options.overwrite);
  const int threads = options.threads > 0 ? options.threads : omp_get_max_threads();

  const DocumentTokens tokens = document_tokens(*tokenizer, options);
  ShardInfo attributes = shard_attributes(*tokenizer, tokens.eos);
  attributes.split = "train";
  SplitWriter train(options.out_dir, attributes, options.shard_tokens);
  attributes.split = "val";
  SplitWriter val(options.out_dir, attributes, options.shard_tokens);

  PrepareSummary summary;
  summary.threads = threads;
  for (const InputFile& f : inputs) summary.input_bytes += f.bytes;
  Progress progress("prepare", summary.input_bytes, stderr, options.verbose && isatty(2));
  try {
    SplitSink sink(train, val, options.val_fraction, tokens);
    tokenize_inputs(inputs, *tokenizer, options.text_key, threads, sink,
                    options.verbose ? &progress : nullptr);
    summary.train = train.finish();
    summary.val = val.finish();
    summary.seconds = progress.seconds();
    summary.eos_id = tokens.eos;
    summary.bos_id = tokens.bos;
    if (options.verbose) progress.finish(summary.input_bytes);
    check_split_sizes(summary, options, inputs.size());
    verify_split(summary.train, "train");
    verify_split(summary.val, "val");
    std::vector<ShardInfo> shards = train.infos();
    shards.insert(shards.end(), val.infos().begin(), val.infos().end());
    write_run_manifest(options.out_dir, shards, summary);
  } catch (...) {
    // Shards of a failed run must not pass for a corpus.
    remove_files(train.shards());
    remove_files(val.shards());
    throw;
  }
  return summary;
}

}  // namespace mamba
