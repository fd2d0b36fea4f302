#include "data/corpus.h"

#include <algorithm>
#include <filesystem>

#include "data/input_stream.h"
#include "data/pretokenize.h"
#include "data/shard.h"
#include "data/text.h"
#include "util/error.h"

namespace mamba {

namespace fs = std::filesystem;

namespace {

bool has_suffix(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool is_glob(const std::string& s) {
  return s.find_first_of("*?[") != std::string::npos;
}

// A file, or a named pipe (prepare <(zcat ...)), whose size is then unknown.
InputFile make_input(const std::string& path) {
  std::error_code ec;
  const fs::file_status status = fs::status(path, ec);
  if (ec) throw_error("prepare error: cannot read ", path, ": ", ec.message(), ": check the path");
  const uintmax_t size = fs::is_regular_file(status) ? fs::file_size(path, ec) : 0;
  if (ec) throw_error("prepare error: cannot read ", path, ": ", ec.message(), ": check the path");
  return {path, uint64_t(size), has_suffix(strip_compression_suffix(path), ".jsonl")};
}

bool has_extension(const std::string& name, const std::vector<std::string>& extensions) {
  const std::string plain = strip_compression_suffix(name);
  for (const std::string& ext : extensions) {
    if (has_suffix(name, "." + ext) || has_suffix(plain, "." + ext)) return true;
  }
  return false;
}

constexpr size_t kReadBlock = 1 << 20;

}  // namespace

std::vector<InputFile> find_inputs(const std::vector<std::string>& args,
                                   const std::vector<std::string>& extensions) {
  std::vector<InputFile> inputs;
  for (const std::string& arg : args) {
    std::error_code ec;
    if (fs::is_directory(arg, ec)) {
      std::vector<std::string> found;
      fs::recursive_directory_iterator it(arg, fs::directory_options::skip_permission_denied, ec);
      if (ec) throw_error("prepare error: cannot list ", arg, ": ", ec.message());
      for (; it != fs::recursive_directory_iterator(); it.increment(ec)) {
        if (ec) throw_error("prepare error: cannot list ", arg, ": ", ec.message());
        const std::string name = it->path().filename().string();
        if (!name.empty() && name[0] == '.') {
          if (it->is_directory()) it.disable_recursion_pending();
          continue;
        }
        if (!it->is_regular_file()) continue;
        if (has_extension(name, extensions)) found.push_back(it->path().string());
      }
      if (found.empty()) {
        std::string list;
        for (const std::string& ext : extensions) list += (list.empty() ? "." : ", .") + ext;
        throw_error("prepare error: directory ", arg, " holds no files ending in ", list,
                    " (or those followed by .gz or .zst): check the path or pass --ext");
      }
      std::sort(found.begin(), found.end());
      for (const std::string& path : found) inputs.push_back(make_input(path));
    } else if (is_glob(arg)) {
      const std::vector<std::string> matches = glob_sorted(arg);
      if (matches.empty()) {
        throw_error("prepare error: no files match '", arg,
                    "': check the pattern (quoted, prepare expands it itself)");
      }
      for (const std::string& path : matches) inputs.push_back(make_input(path));
    } else if (fs::exists(arg, ec)) {
      inputs.push_back(make_input(arg));
    } else {
      throw_error("prepare error: input ", arg, " does not exist: pass text or .jsonl files, ",
                  "directories or quoted glob patterns");
    }
  }
  if (inputs.empty()) {
    throw_error("prepare error: no inputs: pass text or .jsonl files, directories or globs");
  }
  return inputs;
}

CorpusReader::CorpusReader(const std::vector<InputFile>& files, size_t segment_bytes,
                           size_t max_segment_bytes)
    : files_(files), segment_bytes_(segment_bytes), max_segment_bytes_(max_segment_bytes) {}

CorpusReader::~CorpusReader() = default;

bool CorpusReader::fill() {
  if (eof_) return false;
  // Drop what was handed out before growing the buffer, so it holds about one segment or line.
  if (begin_ > 0) {
    buffer_.erase(0, begin_);
    scanned_ -= begin_;
    begin_ = 0;
  }
  const size_t old_size = buffer_.size();
  buffer_.resize(old_size + kReadBlock);
  const size_t n = stream_->read(buffer_.data() + old_size, kReadBlock);
  buffer_.resize(old_size + n);
  eof_ = n == 0;
  return !eof_;
}

void CorpusReader::close_file() {
  stream_.reset();
  buffer_.clear();
  buffer_.shrink_to_fit();  // a long JSONL line must not pin its memory for the rest of the run
  begin_ = scanned_ = 0;
  eof_ = document_open_ = false;
  line_ = reported_ = 0;
  ++file_;
}

uint64_t CorpusReader::take_consumed() {
  const uint64_t consumed = stream_->consumed();
  const uint64_t delta = consumed - reported_;
  reported_ = consumed;
  return delta;
}

bool CorpusReader::next(TextUnit& unit) {
  while (file_ < files_.size()) {
    if (!stream_) stream_ = std::make_unique<InputStream>(files_[file_].path);
    unit.file = file_;
    if (files_[file_].jsonl) {
      size_t newline;
      while ((newline = buffer_.find('\n', scanned_)) == std::string::npos) {
        scanned_ = buffer_.size();
        if (!fill()) break;
      }
      if (newline == std::string::npos && begin_ == buffer_.size()) {
        close_file();
        continue;
      }
      const size_t end = newline == std::string::npos ? buffer_.size() : newline;
      ++line_;
      const bool blank = buffer_.find_first_not_of(" \t\r", begin_) >= end;
      unit.text.assign(buffer_, begin_, end - begin_);
      begin_ = scanned_ = std::min(end + 1, buffer_.size());
      if (blank) continue;
      unit.json = true;
      unit.ends_document = true;
      unit.line = line_;
      unit.bytes = take_consumed();
      return true;
    }
    // Plain text: read until a whole segment is sure to be in the buffer, or the file ends.
    while (buffer_.size() - begin_ <= max_segment_bytes_ && fill()) {
    }
    const std::string_view rest(buffer_.data() + begin_, buffer_.size() - begin_);
    if (rest.empty() && !document_open_) {  // an empty text file is no document at all
      close_file();
      continue;
    }
    const size_t end = eof_ && rest.size() <= max_segment_bytes_
                           ? rest.size()
                           : first_segment_end(rest, segment_bytes_, max_segment_bytes_);
    unit.text.assign(rest.data(), end);
    unit.json = false;
    unit.line = 0;
    unit.ends_document = eof_ && end == rest.size();
    unit.bytes = take_consumed();
    begin_ += end;
    document_open_ = true;
    if (unit.ends_document) close_file();
    return true;
  }
  return false;
}

}  // namespace mamba
