#include "data/pre_tokenizer.h"

#include "data/bpe.h"
#include "data/hf_json.h"

namespace mamba {

namespace {

// The split patterns of Llama-3 and Qwen2/3. Like GPT-2's, none of their alternatives continues
// past a '\n' that a printable character follows (newlines end ` ?[^\s\p{L}\p{N}]+[\r\n]*` and
// `\s*[\r\n]+`, and nothing else takes one), and no match starts before such a '\n' and ends after
// it, so a cut there leaves every word as it was.
// Hugging Face's punctuation: ASCII punctuation or any Unicode P* character.
const char* const kPunctuation = R"([\p{P}!-/:-@\[-`{-~])";

std::shared_ptr<const Regex> gpt2_regex() {
  static const auto regex = std::make_shared<const Regex>(kGpt2Pattern);
  return regex;
}

SplitBehavior behavior_of(const std::string& path, const hf::json& step) {
  const std::string b = hf::text(path, step, "behavior", "Isolated");
  if (b == "Removed") return SplitBehavior::kRemoved;
  if (b == "Isolated") return SplitBehavior::kIsolated;
  if (b == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (b == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (b == "Contiguous") return SplitBehavior::kContiguous;
  hf::corrupt(path, hf::type_of(step) + ".behavior", step["behavior"],
              "Removed, Isolated, MergedWithPrevious, MergedWithNext or Contiguous");
}

}  // namespace

void split_spans(std::string_view text, const std::vector<Regex::Span>& spans,
                 SplitBehavior behavior, const PieceSink& pieces) {
  // Hugging Face's rules: a match joins the piece before (or after) it unless that piece is a
  // match too; Contiguous joins runs of matches.
  std::vector<std::pair<size_t, size_t>> out;
  bool previous_match = false;
  if (behavior == SplitBehavior::kMergedWithNext) {
    for (size_t k = spans.size(); k-- > 0;) {
      const Regex::Span& s = spans[k];
      if (s.match && !previous_match && !out.empty())
        out.back().first = s.begin;
      else
        out.emplace_back(s.begin, s.end);
      previous_match = s.match;
    }
    for (size_t k = out.size(); k-- > 0;) {
      pieces(text.substr(out[k].first, out[k].second - out[k].first));
    }
    return;
  }
  for (const Regex::Span& s : spans) {
    const bool join =
        (behavior == SplitBehavior::kMergedWithPrevious && s.match && !previous_match) ||
        (behavior == SplitBehavior::kContiguous && s.match && previous_match);
    previous_match = s.match;
    if (behavior == SplitBehavior::kRemoved && s.match) continue;
    if (join && !out.empty())
      out.back().second = s.end;
    else
      out.emplace_back(s.begin, s.end);
  }
  for (const auto& [begin, end] : out) pieces(text.substr(begin, end - begin));
}

PreTokenizer PreTokenizer::byte_level() {
  PreTokenizer p;
  Step step;
  step.kind = Kind::kByteLevel;
  step.regex = gpt2_regex();
  p.steps_.push_back(step);
  return p;
}

PreTokenizer PreTokenizer::from_json(const nlohmann::json& j, const std::string& path) {
  PreTokenizer p;
  if (j.is_null()) return p;
  const auto split = [&](const std::string& pattern, bool literal, SplitBehavior behavior,
                         bool invert) {
    Step step;
    step.kind = Kind::kSplit;
    step.regex = std::make_shared<const Regex>(pattern, literal, path + " pre_tokenizer pattern");
    step.behavior = behavior;
    step.invert = invert;
    step.pattern_text = literal ? "" : pattern;
    return step;
  };
  for (const hf::json& s : hf::steps(path, j, "pretokenizers")) {
    const std::string type = hf::type_of(s);
    if (type == "ByteLevel") {
      Step step;
      step.kind = Kind::kByteLevel;
      step.prefix_space = hf::flag(path, s, "add_prefix_space", false);
      if (hf::flag(path, s, "use_regex", true)) step.regex = gpt2_regex();
      p.steps_.push_back(step);
    } else if (type == "Split") {
      bool literal = false;
      const std::string pattern = hf::pattern(path, s, literal);
      p.steps_.push_back(
          split(pattern, literal, behavior_of(path, s), hf::flag(path, s, "invert", false)));
    } else if (type == "Metaspace") {
      Step step;
      step.kind = Kind::kMetaspace;
      step.replacement = hf::text(path, s, "replacement", "\u2581");
      if (step.replacement.empty()) hf::corrupt(path, "Metaspace.replacement", s, "a character");
      // Older files say add_prefix_space instead of prepend_scheme.
      const std::string scheme =
          hf::text(path, s, "prepend_scheme",
                   hf::flag(path, s, "add_prefix_space", true) ? "always" : "never");
      if (scheme == "always")
        step.prepend = Prepend::kAlways;
      else if (scheme == "first")
        step.prepend = Prepend::kFirst;
      else if (scheme == "never")
        step.prepend = Prepend::kNever;
      else
        hf::corrupt(path, "Metaspace.prepend_scheme", s["prepend_scheme"],
                    "always, first or never");
      step.split = hf::flag(path, s, "split", true);
      step.regex = std::make_shared<const Regex>(step.replacement, true);
      p.steps_.push_back(step);
    } else if (type == "Digits") {
      // Rust's char::is_numeric: any N* character.
      p.steps_.push_back(split(R"(\p{N})", false,
                               hf::flag(path, s, "individual_digits", false)
                                   ? SplitBehavior::kIsolated
                                   : SplitBehavior::kContiguous,
                               false));
    } else if (type == "Punctuation") {
      p.steps_.push_back(split(kPunctuation, false, behavior_of(path, s), false));
    } else if (type == "Whitespace") {
      p.steps_.push_back(split(R"(\w+|[^\w\s]+)", false, SplitBehavior::kRemoved, true));
    } else if (type == "WhitespaceSplit") {
      p.steps_.push_back(split(R"(\s+)", false, SplitBehavior::kRemoved, false));
    } else {
      hf::unsupported(path, "the pre_tokenizer " + s.dump().substr(0, 80));
    }
  }
  return p;
}

void PreTokenizer::apply(std::string_view text, bool first, const PieceSink& word) const {
  if (text.empty()) return;
  if (steps_.empty()) {
    word(text);
    return;
  }
  // Every step but the last collects its pieces for the next; the last passes words straight on.
  // Steps make no empty pieces: regex spans are never empty, and neither is what joins them.
  std::vector<std::string> pieces, next;
  const PieceSink collect = [&](std::string_view p) { next.emplace_back(p); };
  for (size_t s = 0; s < steps_.size(); ++s) {
    const PieceSink& out = s + 1 == steps_.size() ? word : collect;
    next.clear();
    if (s == 0) {
      apply_step(steps_[s], text, first, out);
    } else {
      for (size_t k = 0; k < pieces.size(); ++k)
        apply_step(steps_[s], pieces[k], first && k == 0, out);
    }
    pieces.swap(next);
  }
}

std::vector<std::string> PreTokenizer::words(std::string_view text, bool first) const {
  std::vector<std::string> words;
  apply(text, first, [&](std::string_view w) { words.emplace_back(w); });
  return words;
}

void PreTokenizer::apply_step(const Step& step, std::string_view piece, bool first,
                              const PieceSink& out) const {
  std::vector<Regex::Span> spans;
  switch (step.kind) {
    case Kind::kSplit:
      step.regex->spans(piece, spans);
      if (step.invert) {
        for (Regex::Span& s : spans) s.match = !s.match;
      }
      split_spans(piece, spans, step.behavior, out);
      return;
    case Kind::kByteLevel: {
      std::string prefixed;
      if (step.prefix_space && !piece.empty() && piece[0] != ' ') {
        prefixed = " " + std::string(piece);
        piece = prefixed;
      }
      if (!step.regex) {
        out(to_byte_level(piece));
        return;
      }
      step.regex->spans(piece, spans);
      std::string word;
      for (const Regex::Span& s : spans) {
        word.clear();
        append_byte_level(piece.substr(s.begin, s.end - s.begin), word);
        out(word);
      }
      return;
    }
    case Kind::kMetaspace: {
      std::string text;
      for (char c : piece) {
        if (c == ' ')
          text += step.replacement;
        else
          text += c;
      }
      const bool prepend =
          step.prepend == Prepend::kAlways || (step.prepend == Prepend::kFirst && first);
      if (prepend && text.compare(0, step.replacement.size(), step.replacement) != 0) {
        text.insert(0, step.replacement);
      }
      if (!step.split) {
        out(text);
        return;
      }
      step.regex->spans(text, spans);
      split_spans(text, spans, SplitBehavior::kMergedWithNext, out);
      return;
    }
  }
}

bool PreTokenizer::byte_level_alphabet() const {
  for (const Step& s : steps_) {
    if (s.kind == Kind::kByteLevel) return true;
  }
  return false;
}

// Only GPT-2's regex: the cuts of split_into_segments include one between a punctuation mark and
// a letter, and Llama-3's and Qwen's patterns join a punctuation mark to the letters after it.
bool PreTokenizer::breaks_after_newlines() const {
  return steps_.size() == 1 && steps_[0].kind == Kind::kByteLevel && !steps_[0].prefix_space &&
         steps_[0].regex;
}

}  // namespace mamba
