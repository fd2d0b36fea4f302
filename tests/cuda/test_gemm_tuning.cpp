// GEMM tuning (kernels/cuda/gemm.h, train.tune_gemms) through the backend's linear_forward: the
// tuned GEMM still computes the product (against the host, in double), its choices exported by one
// backend and adopted by another give the same bits, and a table from another device or a
// malformed one is refused.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "kernels/cuda/cuda_backend.h"
#include "util/error.h"
#include "util/rng.h"

namespace mamba {
namespace {

// Wide enough that cuBLASLt offers several algorithms to time.
constexpr int64_t kT = 2048;
constexpr int kIn = 256, kOut = 512;

// Host values that bf16 holds exactly (8 significant bits), so the host product is exact input.
std::vector<float> bf16_values(size_t n, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> v(n);
  for (float& x : v) x = float(int(rng.below(256)) - 128) / 64.0f;
  return v;
}

// One linear_forward of fixed inputs on a backend; returns the output's bytes (bf16, or fp32).
class Problem {
 public:
  explicit Problem(Backend& be) : be_(be) {
    inp_ = act_of(bf16_values(size_t(kT) * kIn, 1));
    weight_ = act_of(bf16_values(size_t(kOut) * kIn, 2));
  }
  ~Problem() {
    for (void* p : owned_) be_.release(p);
  }
  Problem(const Problem&) = delete;
  Problem& operator=(const Problem&) = delete;

  std::vector<char> run(ActType out_type) {
    const size_t bytes = size_t(kT) * kOut * (out_type == ActType::F32 ? 4 : 2);
    void* out = own(bytes);
    LinearForward op;
    op.inp = ConstAct{inp_, ActType::BF16};
    op.weight = ConstAct{weight_, ActType::BF16};
    op.out = Act{out, out_type};
    op.ld_inp = kIn;
    op.ld_out = kOut;
    op.T = kT;
    op.in_dim = kIn;
    op.out_dim = kOut;
    be_.linear_forward(op);
    std::vector<char> host(bytes);
    be_.download(host.data(), out, bytes);
    return host;
  }

 private:
  void* own(size_t bytes) {
    owned_.push_back(be_.allocate(bytes));
    return owned_.back();
  }
  void* act_of(const std::vector<float>& host) {
    void* f32 = own(host.size() * sizeof(float));
    be_.upload(f32, host.data(), host.size() * sizeof(float));
    void* act = own(host.size() * 2);
    be_.to_act(Act{act, ActType::BF16}, static_cast<const float*>(f32), int64_t(host.size()));
    return act;
  }

  Backend& be_;
  void* inp_ = nullptr;
  void* weight_ = nullptr;
  std::vector<void*> owned_;
};

bool no_gpu() {
  return cuda_device_count() == 0;
}

TEST(GemmTuning, TunedGemmComputesTheProduct) {
  if (no_gpu()) GTEST_SKIP() << "no CUDA device: cuda_device_count() is 0";
  const auto tuned = make_cuda_backend(0, true, true);
  const auto plain = make_cuda_backend(0, true, false);
  std::vector<char> bytes = Problem(*tuned).run(ActType::F32);
  Problem(*plain).run(ActType::F32);
  EXPECT_NE(tuned->gemm_algorithms(), "") << "tuning chose nothing";
  EXPECT_EQ(plain->gemm_algorithms(), "") << "an untuned backend reports choices";

  std::vector<float> got(size_t(kT) * kOut);
  std::memcpy(got.data(), bytes.data(), bytes.size());
  const std::vector<float> x = bf16_values(size_t(kT) * kIn, 1),
                           w = bf16_values(size_t(kOut) * kIn, 2);
  double err = 0, norm = 0;
  for (int64_t t = 0; t < kT; ++t) {
    for (int o = 0; o < kOut; ++o) {
      double want = 0;
      for (int i = 0; i < kIn; ++i) want += double(x[t * kIn + i]) * w[size_t(o) * kIn + i];
      err += std::pow(got[t * kOut + o] - want, 2);
      norm += want * want;
    }
  }
  // Products of bf16 values are exact in fp32; only the fp32 sums round.
  EXPECT_LE(std::sqrt(err / norm), 1e-6);
}

TEST(GemmTuning, AdoptedChoicesGiveTheSameBits) {
  if (no_gpu()) GTEST_SKIP() << "no CUDA device: cuda_device_count() is 0";
  const auto tuned = make_cuda_backend(0, true, true);
  const std::vector<char> want = Problem(*tuned).run(ActType::BF16);
  const std::string table = tuned->gemm_algorithms();
  ASSERT_NE(table, "");

  // Adopted before the problem is planned.
  const auto before = make_cuda_backend(0, true, false);
  ASSERT_TRUE(before->adopt_gemm_algorithms(table));
  EXPECT_EQ(Problem(*before).run(ActType::BF16), want);
  EXPECT_EQ(before->gemm_algorithms(), table);

  // Adopted by a backend that planned the problem with cuBLASLt's first choice already.
  const auto after = make_cuda_backend(0, true, false);
  Problem problem(*after);
  problem.run(ActType::BF16);
  ASSERT_TRUE(after->adopt_gemm_algorithms(table));
  EXPECT_EQ(problem.run(ActType::BF16), want);
  EXPECT_EQ(after->gemm_algorithms(), table);
}

TEST(GemmTuning, TablesOfOtherDevicesAndMalformedOnesAreRefused) {
  if (no_gpu()) GTEST_SKIP() << "no CUDA device: cuda_device_count() is 0";
  const auto tuned = make_cuda_backend(0, true, true);
  Problem(*tuned).run(ActType::BF16);
  const std::string table = tuned->gemm_algorithms();
  const size_t first_line = table.find('\n');
  ASSERT_NE(first_line, std::string::npos);
  const std::string header = table.substr(0, first_line);

  const auto be = make_cuda_backend(0, true, false);
  EXPECT_FALSE(be->adopt_gemm_algorithms("gemm-algorithms 1 cublasLt 1 sm_00 another device" +
                                         table.substr(first_line)));
  EXPECT_EQ(be->gemm_algorithms(), "") << "a refused table was adopted";
  try {
    be->adopt_gemm_algorithms(header + "\n1 2 3\n");
    ADD_FAILURE() << "a malformed table was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("line 2"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace mamba
