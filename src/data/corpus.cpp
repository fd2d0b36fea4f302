#include "data/corpus.h"

#include <algorithm>
#include <filesystem>

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

InputFile make_input(const std::string& path) {
  std::error_code ec;
  const uintmax_t size = fs::file_size(path, ec);
  if (ec) throw_error("prepare error: cannot read ", path, ": ", ec.message(), ": check the path");
  return {path, uint64_t(size), has_suffix(path, ".jsonl")};
}

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
        for (const std::string& ext : extensions) {
          if (has_suffix(name, "." + ext)) {
            found.push_back(it->path().string());
            break;
          }
        }
      }
      if (found.empty()) {
        std::string list;
        for (const std::string& ext : extensions) list += (list.empty() ? "." : ", .") + ext;
        throw_error("prepare error: directory ", arg, " holds no files ending in ", list,
                    ": check the path or pass --ext");
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

CorpusReader::CorpusReader(const std::vector<InputFile>& files, size_t segment_bytes)
    : files_(files), segment_bytes_(segment_bytes) {}

bool CorpusReader::open_next_file() {
  if (file_ >= files_.size()) return false;
  const InputFile& input = files_[file_];
  line_ = 0;
  segment_ = 0;
  if (input.jsonl) {
    jsonl_ = std::ifstream(input.path, std::ios::binary);
    if (!jsonl_) throw_error("prepare error: cannot read ", input.path, ": check the path");
  } else {
    text_ = read_file(input.path);
    cuts_.assign(1, 0);
    for (std::string_view s : split_into_segments(text_, segment_bytes_)) {
      cuts_.push_back(cuts_.back() + s.size());
    }
  }
  opened_ = true;
  return true;
}

bool CorpusReader::next(TextUnit& unit) {
  while (true) {
    if (!opened_ && !open_next_file()) return false;
    const InputFile& input = files_[file_];
    unit.file = file_;
    if (input.jsonl) {
      std::string line;
      while (std::getline(jsonl_, line)) {
        ++line_;
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
        unit.bytes = line.size() + 1;
        unit.text = std::move(line);
        unit.json = true;
        unit.ends_document = true;
        unit.line = line_;
        return true;
      }
      if (jsonl_.bad()) throw_error("prepare error: cannot read ", input.path, ": I/O error");
    } else if (!text_.empty() && segment_ + 1 < cuts_.size()) {
      unit.text.assign(text_, cuts_[segment_], cuts_[segment_ + 1] - cuts_[segment_]);
      unit.bytes = unit.text.size();
      unit.json = false;
      unit.line = 0;
      ++segment_;
      unit.ends_document = segment_ + 1 == cuts_.size();
      return true;
    }
    // This file is done (an empty text file is no document at all).
    opened_ = false;
    jsonl_ = std::ifstream();
    text_.clear();
    ++file_;
  }
}

}  // namespace mamba
