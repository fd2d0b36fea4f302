// The message of the mamba::Error a call throws, for tests that check what a user is told.
#pragma once
#include <gtest/gtest.h>

#include <string>

#include "util/error.h"

namespace mamba::test {

// Fails the test when `f` throws nothing: every caller expects an error.
template <typename F>
std::string error_of(F f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected mamba::Error";
  return "";
}

}  // namespace mamba::test
