// Reading tokenizer.json settings: every accessor names the file and the key in its error, so a
// bad or unsupported file gets one line saying what to change.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "util/error.h"

namespace mamba::hf {

using nlohmann::json;

// j["type"], or "" when j is not an object with a string type.
inline std::string type_of(const json& j) {
  return j.is_object() && j.contains("type") && j["type"].is_string() ? j["type"].get<std::string>()
                                                                      : "";
}

// j[key], or null when absent (j.value() would copy).
inline const json& member(const json& j, const char* key) {
  static const json null;
  return j.is_object() && j.contains(key) ? j[key] : null;
}

[[noreturn]] inline void unsupported(const std::string& path, const std::string& what) {
  throw_error("tokenizer error: ", path, " uses ", what,
              ", which is not supported (docs/data.md lists what is): use a BPE tokenizer.json, ",
              "GPT-2's encoder.json + vocab.bpe, or 'byte'");
}

[[noreturn]] inline void corrupt(const std::string& path, const std::string& where,
                                 const json& value, const char* expected) {
  throw_error("tokenizer error: ", path, " sets ", where, " to ", value.dump().substr(0, 80),
              ", expected ", expected, ": the file is corrupt");
}

// An optional boolean setting; null or absent means the default.
inline bool flag(const std::string& path, const json& object, const char* key, bool default_value) {
  const json& v = member(object, key);
  if (v.is_null()) return default_value;
  if (!v.is_boolean()) corrupt(path, key, v, "true or false");
  return v.get<bool>();
}

// An optional string setting; null or absent means the default.
inline std::string text(const std::string& path, const json& object, const char* key,
                        const std::string& default_value = "") {
  const json& v = member(object, key);
  if (v.is_null()) return default_value;
  if (!v.is_string()) corrupt(path, key, v, "a string");
  return v.get<std::string>();
}

// A pattern object {"String": "..."} or {"Regex": "..."}; `literal` says which.
inline std::string pattern(const std::string& path, const json& object, bool& literal) {
  const json& p = member(object, "pattern");
  if (p.is_object() && p.contains("String") && p["String"].is_string()) {
    literal = true;
    return p["String"].get<std::string>();
  }
  if (p.is_object() && p.contains("Regex") && p["Regex"].is_string()) {
    literal = false;
    return p["Regex"].get<std::string>();
  }
  corrupt(path, type_of(object) + ".pattern", p, "{\"String\": ...} or {\"Regex\": ...}");
}

// The steps of a Sequence (under `key`), or the object itself as a one-step list.
inline json steps(const std::string& path, const json& j, const char* key) {
  if (type_of(j) != "Sequence") return json::array({j});
  const json& list = member(j, key);
  if (!list.is_array()) corrupt(path, std::string("Sequence.") + key, list, "a list");
  json flat = json::array();
  for (const json& step : list) {
    for (const json& s : steps(path, step, key)) flat.push_back(s);
  }
  return flat;
}

}  // namespace mamba::hf
