// `mamba prepare`: text -> token shards. Documents (a text file, or a JSONL line) are tokenized on
// all cores, each followed by the end-of-text token (and preceded by a BOS token where the
// tokenizer's post-processor puts one), and written in input order to train or validation
// shards; the shards are then read back and checked against the token stream, and listed in
// DIR/manifest.json, written last, without which the loader takes none of them.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace mamba {

// The processes of a parallel prepare (`mpirun -np N mamba prepare ...`). The data layer knows
// nothing of MPI: the command passes an implementation.
class PrepareGroup {
 public:
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Every rank's `value`, in rank order, on every rank.
  virtual std::vector<int64_t> allgather(int64_t value) = 0;
  virtual void barrier() = 0;

 protected:
  ~PrepareGroup() = default;
};

struct PrepareOptions {
  std::vector<std::string> inputs;  // files, directories, globs (see find_inputs)
  std::string tokenizer;            // spec for load_tokenizer
  std::string out_dir;
  double val_fraction = 0.01;          // of documents, spread evenly through the input
  int64_t shard_tokens = 100'000'000;  // every shard but the last of a split holds exactly this
  int threads = 0;                     // 0: all cores
  std::string text_key = "text";       // the JSONL field holding a document
  // Tokens around each document, by their text: "" takes the tokenizer's end-of-text token and
  // the token its post-processor puts first (none for most); bos_token "none" puts none.
  std::string eos_token, bos_token;
  std::vector<std::string> extensions = {"txt", "text", "md", "rst", "jsonl"};
  bool overwrite = false;         // replace existing train-*.h5 / val-*.h5 in out_dir
  bool verbose = true;            // progress and summary on stderr
  PrepareGroup* group = nullptr;  // null or size 1: one process
};

struct SplitSummary {
  int64_t documents = 0;
  int64_t tokens = 0;
  std::vector<std::string> shards;
  std::string tokens_sha256;  // of the token stream as little-endian uint32, checked on read-back
};

struct PrepareSummary {
  SplitSummary train, val;
  int32_t eos_id = -1, bos_id = -1;  // bos_id -1: none
  uint64_t input_bytes = 0;
  double seconds = 0;  // tokenizing and writing, without the read-back check
  int threads = 0;     // per process
  int processes = 1;   // > 1: a parallel run (PrepareOptions::group)
};

// With a group of N > 1 processes each tokenizes a contiguous share of the inputs; the shards are
// the same (names, tokens, split, attributes) as one process writes. Every rank must call it.
PrepareSummary prepare_corpus(const PrepareOptions& options);

// True when document `index` (0-based, in input order) goes to validation: every 1/fraction-th
// document, so the split is deterministic and spread through the corpus.
bool is_validation_document(uint64_t index, double fraction);

}  // namespace mamba
