// `mamba tokenize`: encode text to ids or decode ids to text with a chosen tokenizer, to see what
// a tokenizer does with some input.
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "data/text.h"
#include "data/tokenizer.h"
#include "util/error.h"

namespace mamba::cli {

namespace {

const char* const kUsage =
    R"(usage: mamba tokenize --tokenizer SPEC [--decode] [--show] [FILE | --text TEXT]

Encodes the text of FILE, TEXT or stdin and prints the token ids separated by spaces.
With --decode, reads token ids (separated by spaces, commas or newlines; [ ] allowed) and
writes the text they stand for, byte for byte, so that
  mamba tokenize --tokenizer T FILE | mamba tokenize --tokenizer T --decode
reproduces FILE.

  --tokenizer SPEC    byte | path/tokenizer.json | path/encoder.json (vocab.bpe beside it) |
                      a directory holding either
  --show              one token per line: its id and its bytes, escaped where not printable
)";

std::string read_stdin() {
  std::string bytes = read_stream(stdin);
  if (std::ferror(stdin)) throw_error("tokenize error: cannot read stdin");
  return bytes;
}

std::vector<int32_t> parse_ids(const std::string& text, const std::string& source) {
  const auto separator = [](char c) {
    return std::isspace(static_cast<unsigned char>(c)) || c == ',' || c == '[' || c == ']';
  };
  std::vector<int32_t> ids;
  size_t i = 0;
  while (i < text.size()) {
    if (separator(text[i])) {
      ++i;
      continue;
    }
    size_t end = i;
    while (end < text.size() && !separator(text[end])) ++end;
    const std::string word = text.substr(i, end - i);
    if (word.size() > 9 || word.find_first_not_of("0123456789") != std::string::npos) {
      throw_error("tokenize error: '", word, "' in ", source,
                  " is not a token id: pass numbers separated by spaces or commas");
    }
    ids.push_back(int32_t(std::stol(word)));
    i = end;
  }
  return ids;
}

// Printable ASCII as is, the rest as C escapes, so every byte of a token is visible.
std::string escape(const std::string& bytes) {
  std::string out;
  char hex[8];
  for (unsigned char c : bytes) {
    if (c == '\n')
      out += "\\n";
    else if (c == '\t')
      out += "\\t";
    else if (c == '\\' || c == '"')
      out += std::string("\\") + char(c);
    else if (c >= 0x20 && c < 0x7F)
      out += char(c);
    else {
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    }
  }
  return out;
}

}  // namespace

int tokenize(int argc, char** argv) {
  std::string spec, file, text;
  bool decode = false, show = false, have_text = false;
  for (int i = 0; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::printf("%s", kUsage);
      return 0;
    } else if (arg == "--decode") {
      decode = true;
    } else if (arg == "--show") {
      show = true;
    } else if ((arg == "--tokenizer" || arg == "--text") && i + 1 < argc) {
      (arg == "--text" ? text : spec) = argv[++i];
      have_text = have_text || arg == "--text";
    } else if (arg.rfind("--", 0) == 0) {
      throw_error("tokenize error: unknown option or missing value: ", arg,
                  " (mamba tokenize --help)");
    } else if (file.empty()) {
      file = arg;
    } else {
      throw_error("tokenize error: more than one input file (", file, ", ", arg, ")");
    }
  }
  if (spec.empty()) {
    std::fprintf(stderr, "tokenize error: --tokenizer is needed\n%s", kUsage);
    return 2;
  }
  if (have_text && !file.empty()) {
    throw_error("tokenize error: pass either FILE or --text, not both");
  }
  const std::unique_ptr<Tokenizer> tokenizer = load_tokenizer(spec);
  const std::string source = have_text ? "--text" : file.empty() ? "<stdin>" : file;
  const std::string input = have_text ? text : file.empty() ? read_stdin() : read_file(file);

  const std::vector<int32_t> ids = decode ? parse_ids(input, source) : tokenizer->encode(input);
  if (show) {
    for (int32_t id : ids) {
      std::printf("%d\t\"%s\"\n", id, escape(tokenizer->token_bytes(id)).c_str());
    }
  } else if (decode) {
    const std::string bytes = tokenizer->decode(ids);
    std::fwrite(bytes.data(), 1, bytes.size(), stdout);
  } else {
    std::string line;
    for (size_t i = 0; i < ids.size(); ++i) {
      if (i > 0) line += ' ';
      line += std::to_string(ids[i]);
    }
    std::printf("%s\n", line.c_str());
  }
  return 0;
}

}  // namespace mamba::cli
