// The text side of prepare: which files to read, and reading them in order as pieces small
// enough to spread over threads.
#pragma once
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

namespace mamba {

struct InputFile {
  std::string path;
  uint64_t bytes = 0;
  bool jsonl = false;  // one JSON object per line, its text in a string field; else plain text
};

// Expands the arguments of `mamba prepare`: a file is taken as given, a directory is searched
// recursively (sorted, hidden entries skipped) for files ending in one of `extensions`, and a
// pattern with * ? or [ is globbed. Files ending in .jsonl are JSONL. Throws mamba::Error naming
// the argument when it does not exist or matches no file.
std::vector<InputFile> find_inputs(const std::vector<std::string>& args,
                                   const std::vector<std::string>& extensions);

struct TextUnit {
  std::string text;  // plain text, or one raw JSONL line when `json`
  bool json = false;
  bool ends_document = false;  // the last unit of a document
  size_t file = 0;             // index into the inputs
  uint64_t line = 0;           // JSONL line number, for error messages
  uint64_t bytes = 0;          // input bytes this unit accounts for (progress)
};

// Hands out the inputs' documents in order: a plain-text file is one document, cut into
// segments of about `segment_bytes` that tokenize independently; a JSONL line is one document.
class CorpusReader {
 public:
  CorpusReader(const std::vector<InputFile>& files, size_t segment_bytes);
  bool next(TextUnit& unit);  // false when all inputs are read

 private:
  bool open_next_file();

  const std::vector<InputFile>& files_;
  size_t segment_bytes_;
  size_t file_ = 0;
  bool opened_ = false;
  std::string text_;          // the current plain-text file
  std::vector<size_t> cuts_;  // segment boundaries in text_
  size_t segment_ = 0;
  std::ifstream jsonl_;  // the current JSONL file
  uint64_t line_ = 0;
};

}  // namespace mamba
