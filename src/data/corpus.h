// The text side of prepare: which files to read, and reading them in order as pieces small
// enough to spread over threads.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/input_stream.h"

namespace mamba {

struct InputFile {
  std::string path;
  uint64_t bytes = 0;  // of the file as stored (compressed size for .gz / .zst); 0 for a pipe
  bool jsonl = false;  // one JSON object per line, its text in a string field; else plain text
};

// Expands the arguments of `mamba prepare`: a file is taken as given, a directory is searched
// recursively (sorted, hidden entries skipped) for files ending in one of `extensions` (optionally
// followed by .gz or .zst), and a pattern with * ? or [ is globbed. Files ending in .jsonl (before
// any compression suffix) are JSONL. Throws mamba::Error naming the argument when it does not
// exist or matches no file.
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

// Hands out the inputs' documents in order, streaming: a plain-text file is one document, cut
// into segments of about `segment_bytes` (at most `max_segment_bytes`, see first_segment_end) that
// tokenize independently; a JSONL line is one document. Memory holds about one segment or one
// line, whatever the size of the file.
class CorpusReader {
 public:
  CorpusReader(const std::vector<InputFile>& files, size_t segment_bytes, size_t max_segment_bytes);
  ~CorpusReader();
  bool next(TextUnit& unit);  // false when all inputs are read

 private:
  bool fill();  // reads another block of the current file; false at its end
  void close_file();
  uint64_t take_consumed();

  const std::vector<InputFile>& files_;
  size_t segment_bytes_, max_segment_bytes_;
  size_t file_ = 0;
  std::unique_ptr<InputStream> stream_;
  std::string buffer_;  // read from the file, not yet handed out from begin_ on
  size_t begin_ = 0;
  size_t scanned_ = 0;  // JSONL: buffer_ holds no newline in [begin_, scanned_)
  bool eof_ = false;
  bool document_open_ = false;  // plain text: segments of this file were handed out
  uint64_t line_ = 0;
  uint64_t reported_ = 0;  // of stream_->consumed(), already counted in a unit's bytes
};

}  // namespace mamba
