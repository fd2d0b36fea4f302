// Tokenizer throughput: loads each tokenizer, encodes a text twice on one thread and prints one
// JSON line per tokenizer with the load time, MB/s of the first pass (a cold word cache, as for
// text never seen) and of the second (every word cached, as deep into a large corpus), and bytes
// per token.
//   bench_tokenizers [--text FILE] TOKENIZER...
// TOKENIZER is any --tokenizer spec (byte, a tokenizer.json, encoder.json, a directory). Without
// --text, the text is the demo corpus's three books joined (scripts/fetch_demo_data.sh).
// Example, after scripts/fetch_tokenizers.sh:
//   build/bench_tokenizers tests/data/tokenizer/encoder.json data/tokenizers/*/tokenizer.json
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "data/text.h"
#include "data/tokenizer.h"
#include "util/clock.h"
#include "util/error.h"

using mamba::seconds_since;

namespace {

std::string demo_books() {
  const std::string deb = "data/sources/deb/";
  const char* books[] = {
      "golang-github-pierrec-lz4-dev_2.5.2-2_all/usr/share/gocode/src/github.com/pierrec/lz4/"
      "testdata/pg1661.txt",
      "golang-github-pierrec-lz4-dev_2.5.2-2_all/usr/share/gocode/src/github.com/pierrec/lz4/"
      "testdata/Mark.Twain-Tom.Sawyer.txt",
      "golang-github-andybalholm-brotli-dev_1.0.4-3_all/usr/share/gocode/src/github.com/"
      "andybalholm/brotli/testdata/Isaac.Newton-Opticks.txt"};
  std::string text;
  for (const char* b : books) text += mamba::read_file(deb + b);
  return text;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::string text_file;
    std::vector<std::string> specs;
    for (int i = 1; i < argc; ++i) {
      if (!std::strcmp(argv[i], "--text") && i + 1 < argc) {
        text_file = argv[++i];
      } else {
        specs.push_back(argv[i]);
      }
    }
    if (specs.empty()) {
      std::fprintf(stderr, "usage: bench_tokenizers [--text FILE] TOKENIZER...\n");
      return 2;
    }
    const std::string text = text_file.empty() ? demo_books() : mamba::read_file(text_file);
    for (const std::string& spec : specs) {
      auto start = std::chrono::steady_clock::now();
      const std::unique_ptr<mamba::Tokenizer> tokenizer = mamba::load_tokenizer(spec);
      const double load_s = seconds_since(start);
      std::vector<int32_t> ids;
      double pass_s[2];
      for (double& seconds : pass_s) {
        ids.clear();
        start = std::chrono::steady_clock::now();
        tokenizer->encode(text, ids);
        seconds = seconds_since(start);
      }
      std::printf(
          "{\"tokenizer\": \"%s\", \"kind\": \"%s\", \"vocab_size\": %d, \"load_s\": %.2f, "
          "\"bytes\": %zu, \"tokens\": %zu, \"bytes_per_token\": %.3f, \"mb_per_s\": %.2f, "
          "\"cached_mb_per_s\": %.2f}\n",
          spec.c_str(), tokenizer->name().c_str(), tokenizer->vocab_size(), load_s, text.size(),
          ids.size(), double(text.size()) / double(std::max<size_t>(ids.size(), 1)),
          text.size() / 1e6 / pass_s[0], text.size() / 1e6 / pass_s[1]);
      std::fflush(stdout);
    }
  } catch (const mamba::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
