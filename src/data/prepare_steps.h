// The steps of `mamba prepare` that the one-process run (prepare.cpp) and the parallel run
// (prepare_parallel.cpp) share.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/corpus.h"
#include "data/prepare.h"
#include "data/progress.h"
#include "data/sha256.h"
#include "data/shard.h"
#include "data/tokenizer.h"

namespace mamba {

// Receives the token stream in input order: begin_document, the document's ids (in one or more
// appends), end_document; then the next document.
class DocumentSink {
 public:
  virtual void begin_document(uint64_t index) = 0;  // index: 0, 1, ... over the whole stream
  virtual void append(const int32_t* ids, size_t count) = 0;
  virtual void end_document() = 0;

 protected:
  ~DocumentSink() = default;
};

// Tokenizes `inputs` on `threads` threads and hands their documents to `sink` in input order;
// empty documents are skipped. Returns the number of documents. `progress` may be null.
uint64_t tokenize_inputs(const std::vector<InputFile>& inputs, const Tokenizer& tokenizer,
                         const std::string& text_key, int threads, DocumentSink& sink,
                         Progress* progress);

// Checks the options that do not need the inputs; throws mamba::Error naming the bad one.
void check_prepare_options(const PrepareOptions& options);

// Creates the output directory; refuses one holding an earlier run's output unless `overwrite`,
// which then removes its manifest first, then its shards.
void prepare_output_dir(const std::string& dir, bool overwrite);

// The tokens around each document: --eos / --bos, else the tokenizer's end-of-text token and the
// token its post-processor puts first (bos -1: none).
struct DocumentTokens {
  int32_t eos = -1, bos = -1;
};
DocumentTokens document_tokens(const Tokenizer& tokenizer, const PrepareOptions& options);

// The attributes every shard of this tokenizer gets (split left empty).
ShardInfo shard_attributes(const Tokenizer& tokenizer, int32_t eos);

// Hashes tokens as little-endian uint32, the same bytes whichever way they are stored.
void hash_tokens(Sha256& hash, const int32_t* tokens, size_t count);

// Reads the split's shards back and checks they hold exactly split.tokens tokens hashing to
// split.tokens_sha256.
void verify_split(const SplitSummary& split, const std::string& name);

// Refuses a run that found no text, or no validation document although some were asked for.
void check_split_sizes(const PrepareSummary& summary, const PrepareOptions& options,
                       size_t input_files);

// Syncs the shards, then writes DIR/manifest.json listing them: the last step of a run.
void write_run_manifest(const std::string& dir, const std::vector<ShardInfo>& shards,
                        const PrepareSummary& summary);

// prepare_corpus on several processes (options.group), in prepare_parallel.cpp.
PrepareSummary prepare_corpus_parallel(const PrepareOptions& options);

// The name of shard `index` of `split`: DIR/train-0000.h5, ...
std::string shard_path(const std::string& dir, const std::string& split, size_t index);

}  // namespace mamba
