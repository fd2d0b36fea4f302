// Experiment config: YAML text + key=value overrides -> a validated ExperimentConfig, and back.
//
// Every key is listed once, in for_each_key, with its member and its range. Parsing, printing,
// comparison and the did-you-mean suggestions all walk that list, so they cannot drift apart.
// Scalars are read with our own rules (not yaml-cpp's conversions, which take 010 as octal and
// yes/on as true), so the file, the overrides and a printed config all read the same way.
#include "train/experiment_config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <type_traits>

#include "data/shard.h"
#include "data/text.h"
#include "train/hugging_face.h"
#include "util/error.h"

namespace mamba {
namespace {

// What a key accepts beyond its C++ type.
enum class Check {
  Any,             // every value of the type: bools, choices, free text
  Positive,        // > 0
  NonNegative,     // >= 0
  PositiveOrAuto,  // > 0, or the word auto (stored as 0)
  Fraction,        // in [0, 1): Adam's betas
  NonEmpty,        // a non-empty string
};

// A key's check and, for numbers, its largest sensible value: limits keep every product of sizes
// (batch x length x width) far from overflow, and catch values that are typos (1e9 for 1e3).
struct Range {
  Check check;
  double max = std::numeric_limits<double>::infinity();
  Range(Check c) : check(c) {}  // NOLINT(google-explicit-constructor): most keys need no limit
  Range(Check c, double upper) : check(c), max(upper) {}
};

// The one list of keys. Each visit passes the dotted path, the check and the member of every
// config given (none: just the key names; one: read or print it; two: compare them).
// A field added to a config struct must be added here too, or it is neither read nor printed.
template <typename Visit, typename... Config>
void for_each_key(Visit&& key, Config&... c) {
  key("model.d_model", Check::Positive, c.model.d_model...);
  key("model.n_layer", Check::Positive, c.model.n_layer...);
  key("model.vocab_size", Check::PositiveOrAuto, c.model.vocab_size...);
  key("model.pad_vocab_multiple", Check::Positive, c.model.pad_vocab_multiple...);
  key("model.d_state", Check::Positive, c.model.d_state...);
  key("model.d_conv", Check::Positive, c.model.d_conv...);
  key("model.expand", Check::Positive, c.model.expand...);
  key("model.dt_rank", Check::PositiveOrAuto, c.model.dt_rank...);
  key("model.norm_eps", Check::Positive, c.model.norm_eps...);
  key("model.init_from", Check::Any, c.init_from...);

  key("data.train", Check::NonEmpty, c.data.train...);
  key("data.val", Check::NonEmpty, c.data.val...);
  key("data.seq_len", {Check::Positive, 1 << 24}, c.data.seq_len...);
  key("data.tokenizer", Check::Any, c.data.tokenizer...);

  key("train.micro_batch", {Check::Positive, 1 << 20}, c.train.micro_batch...);
  key("train.global_batch", {Check::Positive, kMaxGlobalBatch}, c.train.global_batch...);
  key("train.grad_accum", {Check::Positive, 1 << 20}, c.train.grad_accum...);
  key("train.steps", Check::Positive, c.train.steps...);
  key("train.tokens", Check::Positive, c.train.tokens...);
  key("train.device", Check::Any, c.train.device...);
  key("train.precision", Check::Any, c.train.precision...);
  key("train.seed", Check::NonNegative, c.train.seed...);
  key("train.recompute", Check::Any, c.train.recompute...);
  key("train.keep_layer_inputs", Check::Any, c.train.keep_layer_inputs...);
  key("train.tune_gemms", Check::Any, c.train.tune_gemms...);
  key("train.on_nonfinite", Check::Any, c.train.on_nonfinite...);
  key("train.max_skipped_steps", {Check::Positive, 1 << 20}, c.train.max_skipped_steps...);

  key("optim.lr", Check::Positive, c.optim.lr...);
  key("optim.min_lr", Check::NonNegative, c.optim.min_lr...);
  key("optim.warmup", Check::NonNegative, c.optim.warmup...);
  key("optim.schedule", Check::Any, c.optim.schedule...);
  key("optim.beta1", Check::Fraction, c.optim.beta1...);
  key("optim.beta2", Check::Fraction, c.optim.beta2...);
  key("optim.eps", {Check::Positive, 1}, c.optim.eps...);
  key("optim.weight_decay", {Check::NonNegative, 1}, c.optim.weight_decay...);
  key("optim.clip", Check::NonNegative, c.optim.clip...);

  key("checkpoint.dir", Check::NonEmpty, c.checkpoint.dir...);
  key("checkpoint.interval", Check::NonNegative, c.checkpoint.interval...);
  key("checkpoint.keep_last", Check::NonNegative, c.checkpoint.keep_last...);
  key("checkpoint.resume", Check::NonEmpty, c.checkpoint.resume...);
  key("checkpoint.async", Check::Any, c.checkpoint.async...);

  key("log.interval", Check::Positive, c.log.interval...);
  key("log.eval_interval", Check::NonNegative, c.log.eval_interval...);
  key("log.eval_batches", {Check::Positive, 1 << 30}, c.log.eval_batches...);
  key("log.sample_interval", Check::NonNegative, c.log.sample_interval...);
  key("log.sample_tokens", {Check::Positive, 1 << 20}, c.log.sample_tokens...);
  key("log.sample_prompt", Check::Any, c.log.sample_prompt...);
  key("log.metrics", Check::NonEmpty, c.log.metrics...);
  key("log.tensorboard", Check::Any, c.log.tensorboard...);

  key("dist.bucket_mb", {Check::Positive, 1 << 16}, c.dist.bucket_mb...);
  key("dist.timeout_s", {Check::Positive, 1e6}, c.dist.timeout_s...);
  key("dist.bf16_grads", Check::Any, c.dist.bf16_grads...);
  key("dist.hierarchical", Check::Any, c.dist.hierarchical...);
  key("dist.shard_optimizer", Check::Any, c.dist.shard_optimizer...);
  key("dist.peer_copies", Check::Any, c.dist.peer_copies...);
}

std::vector<std::string> collect_keys() {
  std::vector<std::string> keys;
  for_each_key([&](const char* path, const Range&) { keys.push_back(path); });
  return keys;
}

const std::vector<std::string>& known_keys() {
  static const std::vector<std::string> keys = collect_keys();
  return keys;
}

std::string section_of(const std::string& path) {
  return path.substr(0, path.find('.'));
}
std::string name_of(const std::string& path) {
  return path.substr(path.find('.') + 1);
}

std::vector<std::string> collect_sections() {
  std::vector<std::string> sections;
  for (const std::string& key : known_keys()) {
    if (sections.empty() || sections.back() != section_of(key)) sections.push_back(section_of(key));
  }
  return sections;
}

const std::vector<std::string>& known_sections() {
  static const std::vector<std::string> sections = collect_sections();
  return sections;
}

bool contains(const std::vector<std::string>& list, const std::string& item) {
  return std::find(list.begin(), list.end(), item) != list.end();
}

// ---- did you mean ----

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); j++) prev[j] = j;
  for (size_t i = 1; i <= a.size(); i++) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); j++) {
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

// Scores the key name alone as well as the full path, so that a key put into the wrong
// section (train.lr) still finds its home (optim.lr) rather than a lookalike (train.seed).
std::string closest(const std::string& unknown, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_score = SIZE_MAX;
  for (const std::string& candidate : candidates) {
    size_t score = edit_distance(unknown, candidate);
    if (unknown.find('.') != std::string::npos && candidate.find('.') != std::string::npos) {
      score = std::min(score, edit_distance(name_of(unknown), name_of(candidate)) + 1);
    }
    if (score < best_score) {
      best_score = score;
      best = candidate;
    }
  }
  return best;
}

// ---- scalars: text <-> value ----

// The YAML names of an enum's values, in the order of its enumerators.
template <typename E>
struct Choices;
template <>
struct Choices<Device> {
  static constexpr std::array<const char*, 3> names{"auto", "cpu", "cuda"};
};
template <>
struct Choices<Precision> {
  static constexpr std::array<const char*, 2> names{"fp32", "bf16"};
};
template <>
struct Choices<Schedule> {
  static constexpr std::array<const char*, 3> names{"cosine", "linear", "constant"};
};

template <>
struct Choices<OnNonFinite> {
  static constexpr std::array<const char*, 2> names{"skip", "stop"};
};
template <>
struct Choices<AsyncSave> {
  static constexpr std::array<const char*, 3> names{"auto", "true", "false"};
};

template <typename E>
const char* choice_name(E value) {
  return Choices<E>::names[static_cast<size_t>(value)];
}

template <typename T>
constexpr bool is_int_v = std::is_integral_v<T> && !std::is_same_v<T, bool>;

template <typename Number>
bool in_range(Number value, const Range& range) {
  if (double(value) > range.max) return false;
  switch (range.check) {
    case Check::Positive:
    case Check::PositiveOrAuto:
      return value > 0;
    case Check::NonNegative:
      return value >= 0;
    case Check::Fraction:
      return value >= 0 && value < 1;
    default:
      return true;
  }
}

bool parse_int64(const std::string& text, int64_t& out) {
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, out);
  if (ec == std::errc() && ptr == end) return true;
  // Token budgets read better as 3.0e11: take float notation when it is a whole number.
  double real = 0;
  auto [real_end, real_ec] = std::from_chars(text.data(), end, real);
  if (real_ec != std::errc() || real_end != end || real != std::floor(real) ||
      std::fabs(real) >= 9.2e18) {
    return false;
  }
  out = static_cast<int64_t>(real);
  return true;
}

template <typename Int, std::enable_if_t<is_int_v<Int>, int> = 0>
bool parse(const std::string& text, const Range& range, Int& out) {
  if (range.check == Check::PositiveOrAuto && text == "auto") {
    out = 0;
    return true;
  }
  int64_t wide = 0;
  if (!parse_int64(text, wide) || !in_range(wide, range)) return false;
  if (wide < std::numeric_limits<Int>::min() || wide > std::numeric_limits<Int>::max())
    return false;
  out = static_cast<Int>(wide);
  return true;
}

template <typename Real, std::enable_if_t<std::is_floating_point_v<Real>, int> = 0>
bool parse(const std::string& text, const Range& range, Real& out) {
  const char* end = text.data() + text.size();
  Real value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end || !std::isfinite(value) || !in_range(value, range)) {
    return false;
  }
  out = value;
  return true;
}

bool parse(const std::string& text, const Range&, bool& out) {
  if (text != "true" && text != "false") return false;
  out = text == "true";
  return true;
}

// Strings end up in JSON (checkpoints, metrics), which holds only valid UTF-8.
bool parse(const std::string& text, const Range& range, std::string& out) {
  if (range.check == Check::NonEmpty && text.empty()) return false;
  std::string sanitized;
  if (sanitize_utf8(text, sanitized) != 0) return false;
  out = text;
  return true;
}

template <typename E, std::enable_if_t<std::is_enum_v<E>, int> = 0>
bool parse(const std::string& text, const Range&, E& out) {
  const auto& names = Choices<E>::names;
  for (size_t i = 0; i < names.size(); i++) {
    if (text == names[i]) {
      out = static_cast<E>(i);
      return true;
    }
  }
  return false;
}

// A null node (`key:` or `key: null`) unsets an optional key; for any other key it reads as the
// empty text, which only free-text keys accept.
template <typename T>
bool read(const YAML::Node& node, const Range& range, T& out) {
  return parse(node.IsNull() ? std::string() : node.Scalar(), range, out);
}

template <typename T>
bool read(const YAML::Node& node, const Range& range, std::optional<T>& out) {
  if (node.IsNull()) {
    out.reset();
    return true;
  }
  T value{};
  if (!read(node, range, value)) return false;
  out = value;
  return true;
}

// The shortest text that reads back as the same value.
template <typename Real, std::enable_if_t<std::is_floating_point_v<Real>, int> = 0>
std::string format(Real value, const Range&) {
  char buffer[64];
  auto [end, ec] = std::to_chars(buffer, buffer + sizeof(buffer), value);
  return std::string(buffer, ec == std::errc() ? end : buffer);
}

template <typename Int, std::enable_if_t<is_int_v<Int>, int> = 0>
std::string format(Int value, const Range& range) {
  return range.check == Check::PositiveOrAuto && value == 0 ? "auto" : std::to_string(value);
}

std::string format(bool value, const Range&) {
  return value ? "true" : "false";
}
std::string format(const std::string& value, const Range&) {
  return value;
}

template <typename E, std::enable_if_t<std::is_enum_v<E>, int> = 0>
std::string format(E value, const Range&) {
  return choice_name(value);
}

template <typename T>
std::string format(const std::optional<T>& value, const Range& range) {
  return value ? format(*value, range) : "null";
}

// A plain glob prints as itself; a mixture as a flow list of {name, path, weight}.
std::string format(const std::vector<DataSource>& sources, const Range& range);

void emit(YAML::Emitter& out, const std::vector<DataSource>& sources, const Range&) {
  if (!is_mixture(sources)) {
    out << sources.front().path;
    return;
  }
  out << YAML::Flow << YAML::BeginSeq;
  for (const DataSource& s : sources) {
    out << YAML::Flow << YAML::BeginMap << YAML::Key << "name" << YAML::Value << s.name << YAML::Key
        << "path" << YAML::Value << s.path << YAML::Key << "weight" << YAML::Value
        << format(s.weight, Check::Any) << YAML::EndMap;
  }
  out << YAML::EndSeq;
}

std::string format(const std::vector<DataSource>& sources, const Range& range) {
  YAML::Emitter out;
  emit(out, sources, range);
  return out.c_str();
}

template <typename T>
void emit(YAML::Emitter& out, const T& value, const Range& range) {
  out << format(value, range);
}

template <typename T>
void emit(YAML::Emitter& out, const std::optional<T>& value, const Range& range) {
  if (value) {
    emit(out, *value, range);
  } else {
    out << YAML::Null;
  }
}

// What a key expects, for messages.
std::string kind_of_int(Check check) {
  switch (check) {
    case Check::Positive:
      return "a positive integer";
    case Check::NonNegative:
      return "a non-negative integer";
    case Check::PositiveOrAuto:
      return "a positive integer or auto";
    default:
      return "an integer";
  }
}

std::string kind_of_real(Check check) {
  switch (check) {
    case Check::Positive:
      return "a positive number";
    case Check::NonNegative:
      return "a non-negative number";
    case Check::Fraction:
      return "a number in [0, 1)";
    default:
      return "a number";
  }
}

std::string up_to(const Range& range) {
  if (!std::isfinite(range.max)) return "";
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, " up to %.17g", range.max);
  return buffer;
}

template <typename Int, std::enable_if_t<is_int_v<Int>, int> = 0>
std::string expected(const Range& range, const Int&) {
  return kind_of_int(range.check) + up_to(range);
}

template <typename Real, std::enable_if_t<std::is_floating_point_v<Real>, int> = 0>
std::string expected(const Range& range, const Real&) {
  return kind_of_real(range.check) + up_to(range);
}

std::string expected(const Range&, const bool&) {
  return "true or false";
}

std::string expected(const Range& range, const std::string&) {
  return range.check == Check::NonEmpty ? "a non-empty string of valid UTF-8"
                                        : "a string of valid UTF-8";
}

template <typename E, std::enable_if_t<std::is_enum_v<E>, int> = 0>
std::string expected(const Range&, const E&) {
  const auto& names = Choices<E>::names;
  std::string list = "one of ";
  for (size_t i = 0; i < names.size(); i++) list += (i ? ", " : "") + std::string(names[i]);
  return list;
}

template <typename T>
std::string expected(const Range& range, const std::optional<T>&) {
  return expected(range, T{}) + " or null";
}

// ---- YAML tree ----

// Messages are one line: a value that spans lines is shown with its newlines escaped.
std::string one_line(const std::string& text) {
  std::string line;
  for (char ch : text) line += ch == '\n' ? std::string("\\n") : std::string(1, ch);
  return line;
}

std::string shown(const YAML::Node& node) {
  if (node.IsNull()) return "null";
  if (node.IsSequence()) return "a list";
  if (node.IsMap()) return "a mapping";
  return node.Scalar().empty() ? "\"\"" : one_line(node.Scalar());
}

YAML::Node load_yaml(const std::string& text, const std::string& source) {
  try {
    return YAML::Load(text);
  } catch (const YAML::Exception& e) {
    if (e.mark.is_null()) throw_error("config error: malformed YAML in ", source, ": ", e.msg);
    throw_error("config error: malformed YAML in ", source, " at line ", e.mark.line + 1,
                ", column ", e.mark.column + 1, ": ", e.msg);
  }
}

[[noreturn]] void unknown_key(const std::string& key, const std::string& where,
                              const std::vector<std::string>& candidates) {
  throw_error("config error: unknown key ", one_line(key), " in ", where, ": did you mean ",
              closest(key, candidates), "?");
}

// ---- data sources ----

// Source names become metric names (val_loss_<name>) and JSON keys.
bool valid_source_name(const std::string& name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
  });
}

// data.train / data.val: a glob, or a non-empty list of {name, path, weight} (weight default 1).
std::vector<DataSource> read_sources(const YAML::Node& node, const std::string& key,
                                     const std::string& where) {
  const char* expected =
      ": expected a glob of shards, or a list of sources such as "
      "[{name: web, path: \"web/train-*.h5\", weight: 0.7}, ...]";
  if (node.IsScalar() && !node.Scalar().empty()) {
    DataSource glob;
    if (!parse(node.Scalar(), Check::NonEmpty, glob.path)) {
      throw_error("config error: ", key, " = ", shown(node), " in ", where,
                  ": expected a string of valid UTF-8");
    }
    return {glob};
  }
  if (!node.IsSequence() || node.size() == 0) {
    throw_error("config error: ", key, " = ", shown(node), " in ", where, expected);
  }
  std::vector<DataSource> sources;
  for (size_t i = 0; i < node.size(); ++i) {
    const std::string item = key + "[" + std::to_string(i) + "]";
    const YAML::Node entry = node[i];
    if (!entry.IsMap()) {
      throw_error("config error: ", item, " = ", shown(entry), " in ", where,
                  ": expected a mapping {name, path, weight}");
    }
    for (const auto& field : entry) {
      const std::string name = field.first.Scalar();
      if (name != "name" && name != "path" && name != "weight") {
        unknown_key(item + "." + name, where, {item + ".name", item + ".path", item + ".weight"});
      }
    }
    DataSource s;
    const auto text = [&](const char* field, std::string& out, const char* what) {
      const YAML::Node value = entry[field];
      if (!value.IsDefined() || value.IsNull()) {
        throw_error("config error: missing key ", item, ".", field, " in ", where, ": expected ",
                    what);
      }
      if (!value.IsScalar() || !parse(value.Scalar(), Check::NonEmpty, out)) {
        throw_error("config error: ", item, ".", field, " = ", shown(value), " in ", where,
                    ": expected ", what);
      }
    };
    text("name", s.name, "a name of letters, digits, _, - and . (it names metrics)");
    if (!valid_source_name(s.name)) {
      throw_error("config error: ", item, ".name = ", one_line(s.name), " in ", where,
                  ": expected a name of letters, digits, _, - and . (it names metrics)");
    }
    text("path", s.path, "a glob of shards, e.g. web/train-*.h5");
    if (const YAML::Node weight = entry["weight"]; weight.IsDefined()) {
      if (!weight.IsScalar() || !parse(weight.Scalar(), Check::Positive, s.weight)) {
        throw_error("config error: ", item, ".weight = ", shown(weight), " in ", where,
                    ": expected a finite number > 0 (the source's share is weight / sum of "
                    "weights)");
      }
    }
    for (size_t j = 0; j < sources.size(); ++j) {
      if (sources[j].name == s.name) {
        throw_error("config error: ", item, ".name = ", s.name, " in ", where, " is also ", key,
                    "[", j, "].name: expected each source to have its own name");
      }
    }
    sources.push_back(s);
  }
  return sources;
}

// Rejects unknown and duplicate keys and sections that are not mappings, so that later
// lookups only meet sections that are mappings (or empty) and keys that exist.
void check_layout(const YAML::Node& root, const std::string& source) {
  if (root.IsNull()) return;
  if (!root.IsMap()) {
    throw_error("config error: ", source, " holds ", shown(root),
                ": expected a mapping of sections (model, data, train, optim, checkpoint, log)");
  }
  std::set<std::string> seen;
  for (const auto& section : root) {
    const std::string name = section.first.Scalar();
    if (!contains(known_sections(), name)) unknown_key(name, source, known_sections());
    if (!seen.insert(name).second)
      throw_error("config error: duplicate key ", name, " in ", source);
    if (section.second.IsNull()) continue;
    if (!section.second.IsMap()) {
      throw_error("config error: ", name, " = ", shown(section.second), " in ", source,
                  ": expected a mapping of ", name, ".* keys");
    }
    for (const auto& entry : section.second) {
      const std::string path = name + "." + entry.first.Scalar();
      if (!contains(known_keys(), path)) unknown_key(path, source, known_keys());
      if (!seen.insert(path).second) {
        throw_error("config error: duplicate key ", path, " in ", source);
      }
    }
  }
}

bool is_null_word(const std::string& text) {
  return text.empty() || text == "~" || text == "null" || text == "Null" || text == "NULL";
}

// Returns the keys the overrides set. The value is taken as plain text (so globs like *.h5 and
// prompts with colons need no quoting), except that null and the empty text unset the key.
std::set<std::string> apply_overrides(YAML::Node& root, const std::vector<std::string>& overrides) {
  std::set<std::string> paths;
  for (const std::string& text : overrides) {
    const size_t eq = text.find('=');
    if (eq == std::string::npos || eq == 0) {
      throw_error("config error: command-line override ", one_line(text),
                  " is not key=value: expected e.g. train.micro_batch=8");
    }
    const std::string path = text.substr(0, eq);
    const std::string value = text.substr(eq + 1);
    if (!contains(known_keys(), path)) {
      unknown_key(path, "command-line override " + one_line(text), known_keys());
    }
    root[section_of(path)][name_of(path)] =
        is_null_word(value) ? YAML::Node(YAML::NodeType::Null) : YAML::Node(value);
    paths.insert(path);
  }
  return paths;
}

// Where a key's value came from, for messages.
struct Origins {
  std::string source;
  std::set<std::string> overridden;

  std::string of(const std::string& path) const {
    return overridden.count(path) ? source + " (command-line override)" : source;
  }
};

// The node of a key, or an undefined node when the tree does not set it.
YAML::Node lookup(const YAML::Node& root, const std::string& path) {
  if (!root.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
  const YAML::Node section = root[section_of(path)];
  if (!section.IsDefined() || !section.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
  return section[name_of(path)];
}

// Defaults that depend on other keys.
void fill_derived(ExperimentConfig& c) {
  if (c.checkpoint.dir.empty()) {
    const std::string stem = std::filesystem::path(c.source).stem().string();
    c.checkpoint.dir = "runs/" + (stem.empty() ? std::string("default") : stem);
  }
  if (c.log.metrics.empty()) {
    c.log.metrics = (std::filesystem::path(c.checkpoint.dir) / "metrics.jsonl").string();
  }
}

// Rules that involve more than one key. Ranges of single keys were checked as they were read.
void check_consistency(const ExperimentConfig& c, const Origins& origins) {
  try {
    c.model.validate();
  } catch (const Error& e) {
    throw_error("config error: ", e.what(), " in ", origins.source);
  }
  if (c.data.train.empty()) {
    throw_error("config error: missing key data.train in ", origins.source,
                ": expected a glob of training shards, e.g. data/demo/train-*.h5, or a list of "
                "sources");
  }
  if (c.data.val.empty()) {
    throw_error("config error: missing key data.val in ", origins.source,
                ": expected a glob of validation shards, e.g. data/demo/val-*.h5, or a list of "
                "sources");
  }
  if (c.log.sample_interval > 0 && c.data.tokenizer.empty()) {
    throw_error("config error: log.sample_interval = ", c.log.sample_interval, " in ",
                origins.of("log.sample_interval"),
                ": expected 0 when data.tokenizer is not set (samples are decoded to text)");
  }
  const TrainConfig& t = c.train;
  if (t.steps && t.tokens) {
    throw_error("config error: train.steps = ", *t.steps, " and train.tokens = ", *t.tokens, " in ",
                origins.of("train.tokens"),
                ": expected only one of them (a step count or a token budget)");
  }
  if (!t.steps && !t.tokens) {
    throw_error("config error: train.steps and train.tokens both missing in ", origins.source,
                ": expected exactly one of them (a step count or a token budget)");
  }
  if (t.global_batch && t.grad_accum) {
    throw_error("config error: train.global_batch = ", *t.global_batch,
                " and train.grad_accum = ", *t.grad_accum, " in ", origins.of("train.grad_accum"),
                ": expected only one of them (global_batch = micro_batch x grad_accum x world)");
  }
  // The rest of this rule needs the world size: see ExperimentConfig::grad_accum.
  if (t.global_batch && *t.global_batch % t.micro_batch != 0) {
    throw_error("config error: train.global_batch = ", *t.global_batch, " in ",
                origins.of("train.global_batch"),
                ": expected a multiple of train.micro_batch = ", t.micro_batch);
  }
  if (t.device == Device::Cpu && t.precision == Precision::Bf16) {
    throw_error("config error: train.precision = bf16 in ", origins.of("train.precision"),
                ": expected fp32 with train.device = cpu (the CPU backend computes in fp32)");
  }
  if (t.device == Device::Cpu && t.tune_gemms) {
    throw_error("config error: train.tune_gemms = true in ", origins.of("train.tune_gemms"),
                ": GEMM tuning times cuBLASLt's algorithms on a GPU, and train.device = cpu; set "
                "train.tune_gemms=false");
  }
  if (t.recompute && t.keep_layer_inputs) {
    throw_error("config error: train.recompute = true in ", origins.of("train.recompute"),
                " with train.keep_layer_inputs = true in ", origins.of("train.keep_layer_inputs"),
                ": they contradict each other (recompute keeps less for backward, "
                "keep_layer_inputs more); set one of them to false");
  }
  if (t.device == Device::Cpu && c.dist.peer_copies) {
    throw_error("config error: dist.peer_copies = true in ", origins.of("dist.peer_copies"),
                ": copy-engine reduction moves gradients between GPUs, and train.device = cpu; "
                "set dist.peer_copies=false");
  }
  // Two dist switches that cannot be on together.
  const auto exclusive = [&](bool a, const char* key_a, bool b, const char* key_b,
                             const char* why) {
    if (!a || !b) return;
    throw_error("config error: ", key_a, " = true in ", origins.of(key_a), " with ", key_b,
                " = true is not supported", why, ": set one of them to false");
  };
  const DistConfig& d = c.dist;
  exclusive(d.shard_optimizer, "dist.shard_optimizer", d.bf16_grads, "dist.bf16_grads", "");
  exclusive(d.shard_optimizer, "dist.shard_optimizer", d.hierarchical, "dist.hierarchical",
            " (the sharded reduce-scatter is flat)");
  exclusive(d.peer_copies, "dist.peer_copies", d.bf16_grads, "dist.bf16_grads",
            " (the copies move fp32 gradients)");
  exclusive(d.peer_copies, "dist.peer_copies", d.hierarchical, "dist.hierarchical",
            " (the copies reduce within one node)");
  exclusive(d.peer_copies, "dist.peer_copies", d.shard_optimizer, "dist.shard_optimizer",
            " (the copies all-reduce)");
  if (c.dist.shard_optimizer && c.checkpoint.async == AsyncSave::On) {
    throw_error(
        "config error: checkpoint.async = true in ", origins.of("checkpoint.async"),
        " with dist.shard_optimizer = true is not supported (sharded runs save "
        "synchronously, each rank writing its own slices): set checkpoint.async to auto or false");
  }
  const OptimConfig& o = c.optim;
  if (o.min_lr > o.lr) {
    throw_error("config error: optim.min_lr = ", format(o.min_lr, Check::Any), " in ",
                origins.of("optim.min_lr"),
                ": expected at most optim.lr = ", format(o.lr, Check::Any));
  }
  if (t.steps && o.warmup > *t.steps) {
    throw_error("config error: optim.warmup = ", o.warmup, " in ", origins.of("optim.warmup"),
                ": expected at most train.steps = ", *t.steps);
  }
}

}  // namespace

const char* to_string(Device device) {
  return choice_name(device);
}
const char* to_string(Precision precision) {
  return choice_name(precision);
}
const char* to_string(Schedule schedule) {
  return choice_name(schedule);
}
const char* to_string(OnNonFinite action) {
  return choice_name(action);
}
const char* to_string(AsyncSave mode) {
  return choice_name(mode);
}

std::string ExperimentConfig::to_yaml() const {
  YAML::Emitter out;
  out.SetNullFormat(YAML::LowerNull);
  if (!source.empty()) {
    out << YAML::Comment("experiment config from " + one_line(source) + ", defaults filled in");
  }
  out << YAML::BeginMap;
  std::string open_section;
  for_each_key(
      [&](const char* path, const Range& range, const auto& member) {
        if (section_of(path) != open_section) {
          if (!open_section.empty()) out << YAML::EndMap;
          open_section = section_of(path);
          out << YAML::Key << open_section << YAML::Value << YAML::BeginMap;
        }
        out << YAML::Key << name_of(path) << YAML::Value;
        emit(out, member, range);
      },
      *this);
  out << YAML::EndMap << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

int ExperimentConfig::grad_accum(int world) const {
  if (world < 1) throw_error("config error: world size ", world, ": expected at least 1 process");
  if (train.grad_accum) return *train.grad_accum;
  if (!train.global_batch) return 1;
  const int64_t per_pass = int64_t{train.micro_batch} * world;
  if (*train.global_batch % per_pass != 0) {
    throw_error("config error: train.global_batch = ", *train.global_batch, " in ", source,
                ": expected a multiple of train.micro_batch x world = ", train.micro_batch, " x ",
                world, " = ", per_pass);
  }
  return static_cast<int>(*train.global_batch / per_pass);
}

int64_t ExperimentConfig::global_batch(int world) const {
  const int64_t sequences = int64_t{train.micro_batch} * grad_accum(world) * world;
  if (sequences > kMaxGlobalBatch) {
    throw_error("config error: train.micro_batch x train.grad_accum x world = ", train.micro_batch,
                " x ", grad_accum(world), " x ", world, " = ", sequences, " sequences per step in ",
                source, ": expected at most ", kMaxGlobalBatch,
                "; lower train.grad_accum or train.micro_batch");
  }
  return sequences;
}

int64_t ExperimentConfig::total_steps(int world) const {
  // Checks the batch for this world even when the steps are given, so that a bad world size
  // fails the same way however the run's length is set.
  const int64_t tokens_per_step = global_batch(world) * data.seq_len;
  if (train.steps) return *train.steps;
  const int64_t steps = (train.tokens.value() + tokens_per_step - 1) / tokens_per_step;
  if (optim.warmup > steps) {
    throw_error("config error: optim.warmup = ", optim.warmup, " in ", source,
                ": expected at most the ", steps, " steps that train.tokens = ", *train.tokens,
                " buys at ", tokens_per_step, " tokens per step");
  }
  return steps;
}

bool operator==(const ExperimentConfig& a, const ExperimentConfig& b) {
  bool equal = true;
  for_each_key(
      [&](const char*, const Range&, const auto& x, const auto& y) { equal = equal && x == y; }, a,
      b);
  return equal;
}

bool operator!=(const ExperimentConfig& a, const ExperimentConfig& b) {
  return !(a == b);
}

namespace {

// model.vocab_size: auto takes the vocabulary the training shards were made with.
void resolve_vocab(ExperimentConfig& c, const Origins& origins) {
  if (c.data.train.empty()) return;  // check_consistency reports it
  const std::string& glob = c.data.train.front().path;
  const std::vector<std::string> shards = glob_sorted(glob);
  if (shards.empty()) {
    throw_error("config error: model.vocab_size = auto in ", origins.of("model.vocab_size"),
                " reads the vocabulary of the training shards, but data.train = ", glob,
                " matches no file: run mamba prepare, or give model.vocab_size");
  }
  c.model.vocab_size = read_shard_info(shards.front()).vocab_size;
}

// The model section of model.init_from's source fills the model keys the text left unset; those
// it set must agree (the vocabulary by its padded size, which is all a Hugging Face config has).
void apply_init_from(ExperimentConfig& c, const YAML::Node& root, const Origins& origins) {
  const WeightsSource weights = find_weights(c.init_from);
  if (!weights.model) return;
  ExperimentConfig theirs = c;
  theirs.model = *weights.model;
  const bool vocab_set = lookup(root, "model.vocab_size").IsDefined();
  for_each_key(
      [&](const char* path, const Range& range, auto& mine, const auto& from) {
        const std::string key = path;
        if (section_of(key) != "model" || key == "model.init_from" || key == "model.vocab_size" ||
            key == "model.pad_vocab_multiple") {
          return;
        }
        if (!lookup(root, key).IsDefined()) {
          mine = from;
        } else if (!(mine == from)) {
          throw_error("config error: ", key, " = ", format(mine, range), " in ", origins.of(key),
                      ", but model.init_from = ", c.init_from, " holds a model with ", name_of(key),
                      " = ", format(from, range), ": remove ", key, " or make it agree");
        }
      },
      c, theirs);
  if (!vocab_set) {
    c.model.vocab_size = weights.model->vocab_size;
    c.model.pad_vocab_multiple = weights.model->pad_vocab_multiple;
  } else if (c.model.padded_vocab() != weights.model->padded_vocab()) {
    throw_error("config error: model.vocab_size = ", c.model.vocab_size, " (padded to ",
                c.model.padded_vocab(), ") in ", origins.of("model.vocab_size"),
                ", but model.init_from = ", c.init_from, " holds an embedding of ",
                weights.model->padded_vocab(), " rows: remove model.vocab_size or make it agree");
  }
}

}  // namespace

ExperimentConfig parse_experiment_config(const std::string& yaml_text, const std::string& source,
                                         const std::vector<std::string>& overrides,
                                         Sources sources) {
  YAML::Node root = load_yaml(yaml_text, source);
  check_layout(root, source);
  const Origins origins{source, apply_overrides(root, overrides)};

  ExperimentConfig c;
  c.source = source;
  for_each_key(
      [&](const char* path, const Range& range, auto& member) {
        const YAML::Node node = lookup(root, path);
        if (!node.IsDefined()) return;
        if constexpr (std::is_same_v<std::decay_t<decltype(member)>, std::vector<DataSource>>) {
          member = read_sources(node, path, origins.of(path));
        } else if (node.IsMap() || node.IsSequence() || !read(node, range, member)) {
          throw_error("config error: ", path, " = ", shown(node), " in ", origins.of(path),
                      ": expected ", expected(range, member));
        }
      },
      c);
  if (sources == Sources::Read && c.model.vocab_size == 0) resolve_vocab(c, origins);
  if (sources == Sources::Read && !c.init_from.empty()) apply_init_from(c, root, origins);
  fill_derived(c);
  check_consistency(c, origins);
  return c;
}

ExperimentConfig load_experiment_config(const std::string& path,
                                        const std::vector<std::string>& overrides) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    throw_error("config error: cannot read ", path, ": it is a directory, expected a YAML file");
  }
  std::ifstream in(path);
  if (!in) throw_error("config error: cannot read ", path, ": ", std::strerror(errno));
  std::stringstream text;
  text << in.rdbuf();
  return parse_experiment_config(text.str(), path, overrides);
}

}  // namespace mamba
