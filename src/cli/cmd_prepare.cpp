// `mamba prepare`: tokenize text files, directories or JSONL into HDF5 train/val shards.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "cli/commands.h"
#include "data/prepare.h"
#include "data/progress.h"
#include "util/error.h"

namespace mamba::cli {

namespace {

const char* const kUsage = R"(usage: mamba prepare --tokenizer SPEC --out DIR [options] INPUT...

Tokenizes documents into HDF5 shards DIR/train-0000.h5, ... and DIR/val-0000.h5, ...
A plain-text file is one document, a .jsonl file holds one document per line ({"text": ...});
each document is followed by the end-of-text token, and preceded by a BOS token where the
tokenizer's post-processor puts one (Llama-2's <s>, Gemma's <bos>).

  INPUT               a text or .jsonl file, a directory (searched recursively), or a quoted glob
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
    else
      throw_error("prepare error: unknown option ", arg, " (mamba prepare --help)");
  }
  if (options.tokenizer.empty() || options.out_dir.empty() || options.inputs.empty()) {
    std::fprintf(stderr, "prepare error: --tokenizer, --out and at least one INPUT are needed\n%s",
                 kUsage);
    return 2;
  }

  const PrepareSummary s = prepare_corpus(options);
  print_split("train", s.train);
  print_split("val", s.val);
  std::printf("documents: %send with token %d\n",
              s.bos_id < 0 ? "" : ("start with token " + std::to_string(s.bos_id) + ", ").c_str(),
              s.eos_id);
  std::printf("throughput: %s in %.2f s = %.2f MB/s on %d thread%s\n",
              format_bytes(double(s.input_bytes)).c_str(), s.seconds,
              s.input_bytes / 1e6 / std::max(s.seconds, 1e-9), s.threads,
              s.threads == 1 ? "" : "s");
  std::printf("read back: shards identical to the token stream (train sha256 %.16s...)\n",
              s.train.tokens_sha256.c_str());
  return 0;
}

}  // namespace mamba::cli
