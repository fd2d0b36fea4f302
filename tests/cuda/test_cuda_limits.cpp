// The CUDA kernels are compiled for some layer shapes only; the backend says so up front, naming
// the config key, instead of failing at the first forward pass.
#include <gtest/gtest.h>

#include <string>

#include "kernels/cuda/cuda_backend.h"
#include "util/error.h"

namespace mamba {
namespace {

std::string error_of(const Backend& backend, int d_state, int d_conv) {
  try {
    backend.check_layer_shape(d_state, d_conv);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(CudaLimits, UnsupportedShapesNameTheKey) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device: cuda_device_count() is 0";
  const auto be = make_cuda_backend(0, true);
  EXPECT_EQ(error_of(*be, 16, 4), "");
  EXPECT_EQ(error_of(*be, 16, 2), "");
  EXPECT_NE(error_of(*be, 8, 4).find("model.d_state = 8"), std::string::npos);
  EXPECT_NE(error_of(*be, 16, 5).find("model.d_conv = 5"), std::string::npos);
  EXPECT_NE(error_of(*be, 16, 1).find("model.d_conv = 1"), std::string::npos);
}

}  // namespace
}  // namespace mamba
