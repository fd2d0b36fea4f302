// Backend::init_fill on the GPU against the CPU (the oracle): every kind of initialisation, bit
// for bit. The tensor is longer than one grid of the kernel's grid-stride loop, and the device
// buffer is poisoned first, so an element left unwritten or written twice with another value
// shows. The whole model's initialisation is compared in tests/test_init.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/backend.h"
#include "kernels/cuda/cuda_backend.h"

namespace mamba {
namespace {

TEST(CudaInitFill, EveryKindIsBitIdenticalToTheCpu) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device: cuda_device_count() is 0";
  const auto cpu = make_cpu_backend();
  const auto gpu = make_cuda_backend(0, true);
  const int64_t n = (int64_t(1) << 24) + 12345;  // past 65536 blocks of 256 threads
  const size_t bytes = size_t(n) * sizeof(float);
  std::vector<float> want(n), got(n), poison(n, std::nanf(""));
  float* device = static_cast<float*>(gpu->allocate(bytes));
  const InitKind kinds[] = {InitKind::Constant, InitKind::Normal, InitKind::Uniform,
                            InitKind::LogIndex, InitKind::InvSoftplus};
  for (InitKind kind : kinds) {
    InitFill f;
    f.kind = kind;
    f.n = n;
    f.seed = 20261130;
    f.stream = 17;
    f.value = 0.3;
    f.period = 37;
    f.log_lo = std::log(1e-3);
    f.log_hi = std::log(1e-1);
    f.floor = 1e-4;
    f.dst = want.data();
    cpu->init_fill(f);
    gpu->upload(device, poison.data(), bytes);
    f.dst = device;
    gpu->init_fill(f);
    gpu->download(got.data(), device, bytes);
    gpu->synchronize();
    int64_t first = -1;
    for (int64_t i = 0; i < n && first < 0; ++i) {
      if (std::memcmp(&got[i], &want[i], sizeof(float)) != 0) first = i;
    }
    EXPECT_EQ(first, -1) << "kind " << int(kind) << ": element " << first << " is "
                         << got[first < 0 ? 0 : first] << " on the GPU, "
                         << want[first < 0 ? 0 : first] << " on the CPU";
  }
  gpu->release(device);
}

}  // namespace
}  // namespace mamba
