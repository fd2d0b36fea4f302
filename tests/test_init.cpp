// Initialisation by counter-based random numbers (util/counter_rng.h, kernels/init_element.h):
// the portable math against the C library, the draws' distributions, the independence of each
// element from how the work is split, and the full model's initial weights on the CPU and the
// GPU, bit for bit (skips without a GPU; scripts/gpu/checkpoints.sh runs it on the GPU machine).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/cpu/init_fill.h"
#include "model/params.h"
#include "util/counter_rng.h"
#include "util/repro_math.h"
#include "util/rng.h"
#ifdef MAMBA_HAVE_CUDA
#include "kernels/cuda/cuda_backend.h"
#endif

namespace mamba {
namespace {

constexpr double kUlp = 0x1p-52;

// |got - want| within `ulps` units of the last place of want.
::testing::AssertionResult within_ulps(double got, double want, double ulps, double x) {
  const double err = std::fabs(got - want);
  if (err <= ulps * kUlp * std::fabs(want)) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "at x = " << x << ": got " << got << ", want " << want
                                       << ", error " << err / (kUlp * std::fabs(want)) << " ulp";
}

TEST(ReproMath, LogExpExpm1MatchTheCLibrary) {
  Rng rng(1);
  for (int i = 1; i <= 4096; ++i) {
    ASSERT_TRUE(within_ulps(repro::log(double(i)), std::log(double(i)), 2, i));
  }
  for (int i = 0; i < 200000; ++i) {
    const double x = std::exp2(rng.uniform(-60.0, 60.0));  // every binade, both sides of 1
    ASSERT_TRUE(within_ulps(repro::log(x), std::log(x), 2, x));
    const double e = rng.uniform(-40.0, 40.0);
    ASSERT_TRUE(within_ulps(repro::exp(e), std::exp(e), 2, e));
    const double m = rng.uniform(-1.0, 1.0) * std::exp2(-rng.uniform(0.0, 30.0));
    ASSERT_TRUE(within_ulps(repro::expm1(m), std::expm1(m), 2, m));
    const double b = rng.uniform(1.0, 30.0) * (i % 2 ? 1.0 : -1.0);  // past the series
    ASSERT_TRUE(within_ulps(repro::expm1(b), std::expm1(b), 3, b));
  }
}

TEST(ReproMath, CosOfATurnMatchesTheCLibrary) {
  // cos(2 pi w) is compared in long double, whose 2 pi w carries no rounding of a double's size.
  const long double two_pi = 6.283185307179586476925286766559L;
  for (int i = 0; i <= (1 << 20); ++i) {
    const double w = double(i) * 0x1p-20;
    const double want = double(cosl(two_pi * w));
    // Near the zeros of cos the error is absolute: relative to 1, the size of the terms.
    ASSERT_LE(std::fabs(repro::cos_2pi(w) - want), 4 * kUlp) << "w = " << w;
  }
}

TEST(CounterRng, DrawIIsTheSplitmixSequencesOutputI) {
  const uint64_t key = stream_key(42, 7);
  uint64_t state = key;
  for (uint64_t i = 0; i < 1000; ++i) {
    state += kSplitmixGamma;
    uint64_t x = state;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    ASSERT_EQ(counter_draw(key, i), x ^ (x >> 31)) << i;
  }
  EXPECT_NE(stream_key(42, 7), stream_key(42, 8));
  EXPECT_NE(stream_key(42, 7), stream_key(43, 7));
}

TEST(CounterRng, UniformAndNormalDrawsHaveTheirDistributions) {
  const int n = 1 << 20;
  const uint64_t key = stream_key(3, 1);
  double su = 0, suu = 0, sz = 0, szz = 0, beyond2 = 0;
  double umin = 1, umax = -1;
  for (int i = 0; i < n; ++i) {
    const uint64_t bits = counter_draw(key, uint64_t(i));
    const double u = draw_symmetric(bits);
    const double z = draw_normal(bits);
    su += u;
    suu += u * u;
    umin = std::min(umin, u);
    umax = std::max(umax, u);
    sz += z;
    szz += z * z;
    beyond2 += std::fabs(z) > 2.0;
  }
  // Standard errors at n = 2^20: mean of U[-1,1) 0.00056, of N(0,1) 0.001.
  EXPECT_NEAR(su / n, 0.0, 0.003);
  EXPECT_NEAR(suu / n, 1.0 / 3.0, 0.003);
  EXPECT_GE(umin, -1.0);
  EXPECT_LT(umax, 1.0);
  EXPECT_LT(umin, -0.999);
  EXPECT_GT(umax, 0.999);
  EXPECT_NEAR(sz / n, 0.0, 0.005);
  EXPECT_NEAR(szz / n, 1.0, 0.005);
  EXPECT_NEAR(beyond2 / n, 0.0455, 0.001);  // P(|z| > 2) of a normal
}

// Element i depends on nothing but (seed, stream, i): a shorter tensor is a prefix of a longer
// one, whatever the threads did.
TEST(InitFill, ElementsDependOnlyOnSeedStreamAndIndex) {
  for (InitKind kind : {InitKind::Normal, InitKind::Uniform, InitKind::InvSoftplus}) {
    std::vector<float> longer(100003), shorter(777);
    InitFill f;
    f.kind = kind;
    f.seed = 9;
    f.stream = 4;
    f.value = 0.5;
    f.log_lo = std::log(1e-3);
    f.log_hi = std::log(1e-1);
    f.floor = 1e-4;
    f.dst = longer.data();
    f.n = int64_t(longer.size());
    cpu::init_fill(f);
    f.dst = shorter.data();
    f.n = int64_t(shorter.size());
    cpu::init_fill(f);
    EXPECT_EQ(0, std::memcmp(shorter.data(), longer.data(), shorter.size() * sizeof(float)));
    f.stream = 5;
    cpu::init_fill(f);
    EXPECT_NE(shorter[0], longer[0]);
  }
}

TEST(InitFill, ConstantAndLogIndex) {
  std::vector<float> x(48);
  InitFill f;
  f.dst = x.data();
  f.n = 48;
  f.kind = InitKind::LogIndex;
  f.period = 16;
  cpu::init_fill(f);
  for (int i = 0; i < 48; ++i) EXPECT_EQ(x[i], std::log(float(i % 16 + 1))) << i;
  f.kind = InitKind::Constant;
  f.value = 1.0;
  cpu::init_fill(f);
  for (float v : x) EXPECT_EQ(v, 1.0f);
}

// Every tensor draws from its own stream: no two random tensors start alike.
TEST(ModelInit, EveryTensorHasItsOwnNumbers) {
  ModelConfig c;
  c.d_model = 64;
  c.n_layer = 3;
  c.vocab_size = 250;
  const ParamLayout layout(c);
  std::vector<float> p(layout.total());
  init_params(layout, p.data(), 1);
  const std::vector<ParamTensor>& t = layout.tensors();
  for (size_t a = 0; a < t.size(); ++a) {
    for (size_t b = a + 1; b < t.size(); ++b) {
      if (t[a].numel != t[b].numel || t[a].name.find("proj") == std::string::npos) continue;
      EXPECT_NE(0, std::memcmp(&p[t[a].offset], &p[t[b].offset], t[a].numel * sizeof(float)))
          << t[a].name << " and " << t[b].name;
    }
  }
}

// The property the GPU initialisation exists for: a run starts from the same weights wherever it
// starts. The CPU kernel (the oracle) and the CUDA kernel fill a whole 130M model.
TEST(ModelInit, CpuAndGpuInitialiseBitIdentically) {
#ifndef MAMBA_HAVE_CUDA
  GTEST_SKIP() << "built without the CUDA backend";
#else
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device: cuda_device_count() is 0";
  ModelConfig odd;  // odd sizes everywhere: no tensor is a multiple of a block
  odd.d_model = 24;
  odd.n_layer = 2;
  odd.vocab_size = 37;
  odd.d_state = 5;
  odd.dt_rank = 3;
  ModelConfig m130;  // the 130M model
  m130.d_model = 768;
  m130.n_layer = 24;
  m130.vocab_size = 50277;
  for (const ModelConfig& c : {odd, m130}) {
    const ParamLayout layout(c);
    const size_t bytes = size_t(layout.total()) * sizeof(float);
    std::vector<float> cpu(layout.total()), gpu(layout.total(), std::nanf(""));
    init_params(layout, cpu.data(), 1234);
    const auto backend = make_cuda_backend(0, true);
    float* device = static_cast<float*>(backend->allocate(bytes));
    backend->upload(device, gpu.data(), bytes);  // poison: an element left unwritten shows
    init_params(layout, device, 1234, *backend);
    backend->download(gpu.data(), device, bytes);
    backend->synchronize();
    backend->release(device);
    for (const ParamTensor& t : layout.tensors()) {
      ASSERT_EQ(0, std::memcmp(&cpu[t.offset], &gpu[t.offset], t.numel * sizeof(float)))
          << t.name << " differs between the CPU and the GPU";
    }
  }
#endif
}

}  // namespace
}  // namespace mamba
