// One exception type for every user-facing failure. The message is the whole story on one line:
// what went wrong, which file/key/value, and what to do. The CLI prints it and exits non-zero.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace mamba {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// Builds the message from any streamable pieces: throw_error("data error: shard ", path, " ...").
template <typename... Parts>
[[noreturn]] void throw_error(const Parts&... parts) {
  std::ostringstream os;
  (os << ... << parts);
  throw Error(os.str());
}

}  // namespace mamba
