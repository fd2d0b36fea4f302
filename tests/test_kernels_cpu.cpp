// The CPU kernels against naive loops, finite differences, the golden scan from the reference
// implementation, and themselves under different OpenMP thread counts.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "error_of.h"
#include "gradcheck.h"
#include "kernels/backend.h"
#include "kernels/cpu/adamw.h"
#include "kernels/cpu/conv1d.h"
#include "kernels/cpu/cross_entropy.h"
#include "kernels/cpu/embedding.h"
#include "kernels/cpu/linear.h"
#include "kernels/cpu/rmsnorm.h"
#include "kernels/cpu/scan.h"

namespace mamba::cpu {
namespace {

using test::expect_gradient_close;
using test::gather;
using test::random_vector;
using test::weighted_sum;

// Fills the padding of strided buffers, so that a kernel writing outside its columns shows.
constexpr float kSentinel = 12345.0f;

// Runs f with n OpenMP threads, then restores the previous setting.
template <typename F>
void with_threads(int n, F f) {
  const int previous = omp_get_max_threads();
  omp_set_num_threads(n);
  f();
  omp_set_num_threads(previous);
}

// Finite differences evaluate tiny objectives thousands of times; on a loaded machine waking an
// OpenMP team for each costs far more than the work, so they run on one thread. The analytic
// gradients keep the ambient thread count.
std::vector<double> serial_gradient(float* x, int64_t rows, int64_t cols, int64_t ld,
                                    const std::function<double()>& f) {
  std::vector<double> g;
  with_threads(1, [&] { g = test::numerical_gradient(x, rows, cols, ld, f); });
  return g;
}
std::vector<double> serial_gradient(std::vector<float>& x, const std::function<double()>& f) {
  const auto n = static_cast<int64_t>(x.size());
  return serial_gradient(x.data(), 1, n, n, f);
}

// max_i |a_i - b_i| / max(1, |b_i|).
double max_rel_diff(const std::vector<float>& a, const std::vector<double>& b) {
  double worst = 0.0;
  for (size_t i = 0; i < b.size(); ++i) {
    worst = std::max(worst, std::abs(a[i] - b[i]) / std::max(1.0, std::abs(b[i])));
  }
  return worst;
}

// Expects every element of the row-strided x outside columns [col0, col0 + cols), the kernel's
// own, to still hold the sentinel.
void expect_padding_untouched(const std::vector<float>& x, int64_t ld, int64_t col0, int64_t cols,
                              const std::string& what) {
  for (size_t i = 0; i < x.size(); ++i) {
    const int64_t c = static_cast<int64_t>(i) % ld;
    if (c >= col0 && c < col0 + cols) continue;
    ASSERT_EQ(x[i], kSentinel) << what << " written outside its columns at element " << i;
  }
}

std::vector<int32_t> random_ids(int64_t n, int vocab, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int32_t> dist(0, vocab - 1);
  std::vector<int32_t> ids(n);
  for (int32_t& id : ids) id = dist(gen);
  return ids;
}

// ---------------------------------------------------------------- embedding

TEST(KernelsCpu, EmbeddingForwardMatchesNaive) {
  const int V = 7, C = 19;
  const int64_t T = 37;
  const auto table = random_vector(V * C, 1);
  const auto ids = random_ids(T, V, 2);
  std::vector<float> out(T * C);
  embedding_forward(out.data(), ids.data(), table.data(), T, C);
  for (int64_t t = 0; t < T; ++t) {
    for (int c = 0; c < C; ++c) ASSERT_EQ(out[t * C + c], table[ids[t] * C + c]);
  }
}

TEST(KernelsCpu, EmbeddingBackwardMatchesFiniteDifferences) {
  // Fewer rows than tokens, so that ids repeat and their gradients must add up.
  const int V = 5, C = 19;
  const int64_t T = 37;
  auto table = random_vector(V * C, 3);
  const auto ids = random_ids(T, V, 4);
  const auto w = random_vector(T * C, 5);
  auto objective = [&] {
    std::vector<float> out(T * C);
    embedding_forward(out.data(), ids.data(), table.data(), T, C);
    return weighted_sum(out, w);
  };
  const auto initial = random_vector(V * C, 6);
  auto dtable = initial;
  embedding_backward(dtable.data(), w.data(), ids.data(), T, C);
  for (size_t i = 0; i < dtable.size(); ++i) dtable[i] -= initial[i];
  expect_gradient_close(dtable, serial_gradient(table, objective), "dtable");
}

// ---------------------------------------------------------------- rmsnorm

TEST(KernelsCpu, RmsNormForwardMatchesNaive) {
  const int C = 23;
  const int64_t T = 37;
  const float eps = 1e-5f;
  const auto hidden = random_vector(T * C, 10);
  const auto res_in = random_vector(T * C, 11);
  const auto weight = random_vector(C, 12, 0.5f, 1.5f);
  for (const bool with_residual : {true, false}) {
    std::vector<float> res_out(T * C), normed(T * C), rstd(T);
    residual_rmsnorm_forward(res_out.data(), normed.data(), rstd.data(), hidden.data(),
                             with_residual ? res_in.data() : nullptr, weight.data(), T, C, eps);
    std::vector<double> want_res(T * C), want_normed(T * C), want_rstd(T);
    for (int64_t t = 0; t < T; ++t) {
      double ss = 0.0;
      for (int c = 0; c < C; ++c) {
        const double r =
            static_cast<double>(hidden[t * C + c]) + (with_residual ? res_in[t * C + c] : 0.0);
        want_res[t * C + c] = r;
        ss += r * r;
      }
      want_rstd[t] = 1.0 / std::sqrt(ss / C + eps);
      for (int c = 0; c < C; ++c) {
        want_normed[t * C + c] = want_res[t * C + c] * want_rstd[t] * weight[c];
      }
    }
    EXPECT_LT(max_rel_diff(res_out, want_res), 1e-6) << "residual_out";
    EXPECT_LT(max_rel_diff(rstd, want_rstd), 1e-6) << "rstd";
    EXPECT_LT(max_rel_diff(normed, want_normed), 1e-6) << "normed";
  }
}

TEST(KernelsCpu, RmsNormBackwardMatchesFiniteDifferences) {
  const int C = 23;
  const int64_t T = 37;
  const float eps = 1e-5f;
  auto hidden = random_vector(T * C, 20);
  auto res_in = random_vector(T * C, 21);
  auto weight = random_vector(C, 22, 0.5f, 1.5f);
  // The objective also reads residual_out directly, as the next layer does through the residual
  // stream; that gradient must survive in dresidual.
  const auto w_normed = random_vector(T * C, 23);
  const auto w_res = random_vector(T * C, 24);
  std::vector<float> res_out(T * C), normed(T * C), rstd(T);
  auto forward = [&] {
    residual_rmsnorm_forward(res_out.data(), normed.data(), rstd.data(), hidden.data(),
                             res_in.data(), weight.data(), T, C, eps);
  };
  auto objective = [&] {
    forward();
    return weighted_sum(normed, w_normed) + weighted_sum(res_out, w_res);
  };

  forward();
  auto dresidual = w_res;
  const auto dweight_initial = random_vector(C, 25);
  auto dweight = dweight_initial;
  rmsnorm_backward(dresidual.data(), dweight.data(), w_normed.data(), res_out.data(), rstd.data(),
                   weight.data(), T, C);
  for (int c = 0; c < C; ++c) dweight[c] -= dweight_initial[c];

  expect_gradient_close(dresidual, serial_gradient(hidden, objective), "dhidden");
  expect_gradient_close(dresidual, serial_gradient(res_in, objective), "dresidual_in");
  expect_gradient_close(dweight, serial_gradient(weight, objective), "dweight");
}

// ---------------------------------------------------------------- linear

// Inputs and outputs are column slices of wider buffers, as [x | z] and [dt | B | C] are.
struct LinearCase {
  int64_t T = 37;
  int in_dim = 13, out_dim = 9;
  int64_t ld_inp = 17, ld_out = 12, inp_col0 = 3, out_col0 = 2;
  std::vector<float> inp = random_vector(T * ld_inp, 30);
  std::vector<float> weight = random_vector(out_dim * in_dim, 31);

  const float* x() const { return inp.data() + inp_col0; }
  std::vector<float> forward() const {
    std::vector<float> out(T * ld_out, kSentinel);
    linear_forward(out.data() + out_col0, ld_out, x(), ld_inp, weight.data(), T, in_dim, out_dim);
    return out;
  }
};

TEST(KernelsCpu, LinearForwardMatchesNaive) {
  const LinearCase lc;
  const auto out = lc.forward();
  expect_padding_untouched(out, lc.ld_out, lc.out_col0, lc.out_dim, "out");
  std::vector<double> want(lc.T * lc.out_dim);
  for (int64_t t = 0; t < lc.T; ++t) {
    for (int o = 0; o < lc.out_dim; ++o) {
      double s = 0.0;
      for (int i = 0; i < lc.in_dim; ++i) {
        s += static_cast<double>(lc.x()[t * lc.ld_inp + i]) * lc.weight[o * lc.in_dim + i];
      }
      want[t * lc.out_dim + o] = s;
    }
  }
  EXPECT_LT(max_rel_diff(gather(out.data() + lc.out_col0, lc.T, lc.out_dim, lc.ld_out), want),
            1e-5);
}

TEST(KernelsCpu, LinearBackwardMatchesFiniteDifferences) {
  LinearCase lc;
  const auto w = random_vector(lc.T * lc.out_dim, 32);
  // dout is itself a strided slice, as d[dt | B | C] is.
  std::vector<float> dout(lc.T * lc.ld_out, kSentinel);
  for (int64_t t = 0; t < lc.T; ++t) {
    std::copy(w.begin() + t * lc.out_dim, w.begin() + (t + 1) * lc.out_dim,
              dout.begin() + t * lc.ld_out + lc.out_col0);
  }
  auto objective = [&] {
    const auto out = lc.forward();
    return weighted_sum(gather(out.data() + lc.out_col0, lc.T, lc.out_dim, lc.ld_out), w);
  };
  const auto num_dinp =
      serial_gradient(lc.inp.data() + lc.inp_col0, lc.T, lc.in_dim, lc.ld_inp, objective);
  const auto num_dweight = serial_gradient(lc.weight, objective);

  const int64_t ld_dinp = lc.ld_inp;
  const auto dinp_initial = random_vector(lc.T * ld_dinp, 33);
  const auto dweight_initial = random_vector(lc.out_dim * lc.in_dim, 34);
  for (const bool accumulate : {false, true}) {
    std::vector<float> dinp_buf(lc.T * ld_dinp, kSentinel);
    float* dinp = dinp_buf.data() + lc.inp_col0;
    for (int64_t t = 0; t < lc.T; ++t) {
      for (int i = 0; i < lc.in_dim; ++i) dinp[t * ld_dinp + i] = dinp_initial[t * ld_dinp + i];
    }
    auto dweight = dweight_initial;
    linear_backward(dinp, ld_dinp, accumulate, dweight.data(), dout.data() + lc.out_col0, lc.ld_out,
                    lc.x(), lc.ld_inp, lc.weight.data(), lc.T, lc.in_dim, lc.out_dim);
    expect_padding_untouched(dinp_buf, ld_dinp, lc.inp_col0, lc.in_dim, "dinp");
    auto got_dinp = gather(dinp, lc.T, lc.in_dim, ld_dinp);
    if (accumulate) {
      for (int64_t t = 0; t < lc.T; ++t) {
        for (int i = 0; i < lc.in_dim; ++i) {
          got_dinp[t * lc.in_dim + i] -= dinp_initial[t * ld_dinp + i];
        }
      }
    }
    for (size_t i = 0; i < dweight.size(); ++i) dweight[i] -= dweight_initial[i];
    expect_gradient_close(got_dinp, num_dinp, accumulate ? "dinp (accumulate)" : "dinp");
    expect_gradient_close(dweight, num_dweight, "dweight");
  }

  // Without dinp (the first layer's input needs none) dweight is still accumulated.
  auto dweight = dweight_initial;
  linear_backward(nullptr, 0, false, dweight.data(), dout.data() + lc.out_col0, lc.ld_out, lc.x(),
                  lc.ld_inp, lc.weight.data(), lc.T, lc.in_dim, lc.out_dim);
  for (size_t i = 0; i < dweight.size(); ++i) dweight[i] -= dweight_initial[i];
  expect_gradient_close(dweight, num_dweight, "dweight (no dinp)");
}

// ---------------------------------------------------------------- conv1d

// x is the first D columns of a wider [x | z] buffer.
struct ConvCase {
  int batch = 2;
  int64_t seqlen;
  int D = 5, K = 4;
  int64_t ld_x = 2 * 5 + 1;
  std::vector<float> x;
  std::vector<float> weight = random_vector(D * K, 41, -0.5f, 0.5f);
  std::vector<float> bias = random_vector(D, 42, -0.5f, 0.5f);

  explicit ConvCase(int64_t L) : seqlen(L), x(random_vector(batch * L * ld_x, 40, -2.0f, 2.0f)) {}
  int64_t T() const { return batch * seqlen; }
  std::vector<float> forward() const {
    std::vector<float> out(T() * D);
    conv1d_silu_forward(out.data(), x.data(), ld_x, weight.data(), bias.data(), batch, seqlen, D,
                        K);
    return out;
  }
};

TEST(KernelsCpu, Conv1dForwardMatchesNaive) {
  // seqlen 3 < K: every output sees the zero padding before the start.
  for (const int64_t L : {37, 3}) {
    const ConvCase cc(L);
    const auto out = cc.forward();
    std::vector<double> want(cc.T() * cc.D);
    for (int b = 0; b < cc.batch; ++b) {
      for (int64_t s = 0; s < L; ++s) {
        for (int d = 0; d < cc.D; ++d) {
          double pre = cc.bias[d];
          for (int k = 0; k < cc.K; ++k) {
            const int64_t src = s + k - (cc.K - 1);
            if (src < 0) continue;
            pre += static_cast<double>(cc.weight[d * cc.K + k]) * cc.x[(b * L + src) * cc.ld_x + d];
          }
          want[(b * L + s) * cc.D + d] = pre / (1.0 + std::exp(-pre));
        }
      }
    }
    EXPECT_LT(max_rel_diff(out, want), 1e-6) << "seqlen " << L;
  }
}

TEST(KernelsCpu, Conv1dBackwardMatchesFiniteDifferences) {
  for (const int64_t L : {37, 3}) {
    ConvCase cc(L);
    const auto w = random_vector(cc.T() * cc.D, 43);
    auto objective = [&] { return weighted_sum(cc.forward(), w); };

    std::vector<float> dx(cc.T() * cc.ld_x, kSentinel);
    const auto dweight_initial = random_vector(cc.D * cc.K, 44);
    const auto dbias_initial = random_vector(cc.D, 45);
    auto dweight = dweight_initial;
    auto dbias = dbias_initial;
    conv1d_silu_backward(dx.data(), dweight.data(), dbias.data(), w.data(), cc.x.data(), cc.ld_x,
                         cc.weight.data(), cc.bias.data(), cc.batch, L, cc.D, cc.K);
    expect_padding_untouched(dx, cc.ld_x, 0, cc.D, "dx");
    for (size_t i = 0; i < dweight.size(); ++i) dweight[i] -= dweight_initial[i];
    for (size_t i = 0; i < dbias.size(); ++i) dbias[i] -= dbias_initial[i];

    const std::string at = " at seqlen " + std::to_string(L);
    expect_gradient_close(gather(dx.data(), cc.T(), cc.D, cc.ld_x),
                          serial_gradient(cc.x.data(), cc.T(), cc.D, cc.ld_x, objective),
                          "dx" + at);
    expect_gradient_close(dweight, serial_gradient(cc.weight, objective), "dweight" + at);
    expect_gradient_close(dbias, serial_gradient(cc.bias, objective), "dbias" + at);
  }
}

// ---------------------------------------------------------------- selective scan

// Random scan inputs laid out as the model does: z is the second half of an [x | z] buffer and B,
// C are slices of an [dt | B | C] buffer, each with one extra padding column.
double norm_rel_error(const std::vector<float>& got, const std::vector<float>& want) {
  double diff2 = 0.0, ref2 = 0.0;
  for (size_t i = 0; i < want.size(); ++i) {
    diff2 += (static_cast<double>(got[i]) - want[i]) * (static_cast<double>(got[i]) - want[i]);
    ref2 += static_cast<double>(want[i]) * want[i];
  }
  return std::sqrt(diff2 / ref2);
}

struct ScanCase {
  ScanShape s;
  int dt_rank = 3;
  std::vector<float> u, delta, A, D, delta_bias, xz, xbc;

  ScanCase(int batch, int64_t seqlen, int d_inner, int d_state, uint32_t seed)
      : s{batch, seqlen, d_inner, d_state, 2 * d_inner + 1, 3 + 2 * d_state + 1} {
    const int64_t T = batch * seqlen;
    u = random_vector(T * d_inner, seed);
    // delta' = softplus(delta + bias) spans roughly 0.05 .. 1.3, like trained models.
    delta = random_vector(T * d_inner, seed + 1, -2.0f, 0.5f);
    delta_bias = random_vector(d_inner, seed + 2, -1.0f, 0.0f);
    // A = -exp(A_log) as initialised (A_log = log(1..N)), jittered so channels differ.
    A = random_vector(d_inner * d_state, seed + 3, -0.2f, 0.2f);
    for (int d = 0; d < d_inner; ++d) {
      for (int n = 0; n < d_state; ++n) A[d * d_state + n] -= static_cast<float>(n + 1);
    }
    D = random_vector(d_inner, seed + 4);
    xz = random_vector(T * s.ld_z, seed + 5, -2.0f, 2.0f);
    xbc = random_vector(T * s.ld_bc, seed + 6);
  }
  int64_t T() const { return s.batch * s.seqlen; }
  const float* z() const { return xz.data() + s.d_inner; }
  const float* B() const { return xbc.data() + dt_rank; }
  const float* C() const { return xbc.data() + dt_rank + s.d_state; }
  ScanInputs inputs() const {
    return {f32_act(u.data()), f32_act(delta.data()), f32_act(B()),
            f32_act(C()),      f32_act(z()),          A.data(),
            D.data(),          delta_bias.data()};
  }

  void forward(std::vector<float>& out, std::vector<float>& last_state) const {
    out.assign(T() * s.d_inner, 0.0f);
    last_state.assign(static_cast<size_t>(s.batch) * s.d_inner * s.d_state, 0.0f);
    selective_scan_forward(s, inputs(), f32_act(out.data()), last_state.data());
  }
};

struct ScanGradVectors {
  std::vector<float> du, ddelta, dA, dD, ddelta_bias, dxz, dxbc;
  std::vector<float> out;  // the forward's output, re-formed by the backward
};

// dA, dD and ddelta_bias start from `initial` values so that accumulation shows; the strided
// buffers start as sentinels.
ScanGradVectors scan_backward(const ScanCase& sc, const std::vector<float>& dout, float initial) {
  const ScanShape& s = sc.s;
  ScanGradVectors g;
  g.du.assign(sc.T() * s.d_inner, 0.0f);
  g.ddelta.assign(sc.T() * s.d_inner, 0.0f);
  g.dA.assign(s.d_inner * s.d_state, initial);
  g.dD.assign(s.d_inner, initial);
  g.ddelta_bias.assign(s.d_inner, initial);
  g.dxz.assign(sc.T() * s.ld_z, kSentinel);
  g.dxbc.assign(sc.T() * s.ld_bc, kSentinel);
  g.out.assign(sc.T() * s.d_inner, kSentinel);
  const ScanGrads grads{f32_act(g.du.data()),
                        f32_act(g.ddelta.data()),
                        f32_act(g.dxbc.data() + sc.dt_rank),
                        f32_act(g.dxbc.data() + sc.dt_rank + s.d_state),
                        f32_act(g.dxz.data() + s.d_inner),
                        g.dA.data(),
                        g.dD.data(),
                        g.ddelta_bias.data(),
                        f32_act(g.out.data())};
  selective_scan_backward(s, sc.inputs(), f32_act(dout.data()), grads);
  return g;
}

// The model keeps no copy of the gated output for out_proj's backward: the scan backward
// re-forms it from the same math (only the compiler's FMA contraction can differ).
TEST(KernelsCpu, ScanBackwardReformsTheForwardOutput) {
  const ScanCase sc(2, 37, 5, 16, 21);
  std::vector<float> out, last_state;
  sc.forward(out, last_state);
  const ScanGradVectors g = scan_backward(sc, random_vector(out.size(), 22), 0.0f);
  EXPECT_LT(norm_rel_error(g.out, out), 1e-6);
}

TEST(KernelsCpu, ScanRejectsActivationsOfAnotherType) {
  const ScanCase sc(1, 4, 3, 2, 80);
  ScanInputs in = sc.inputs();
  in.delta.type = ActType::BF16;
  std::vector<float> out(sc.T() * sc.s.d_inner), last_state(sc.s.d_inner * sc.s.d_state);
  const std::string message = test::error_of(
      [&] { selective_scan_forward(sc.s, in, f32_act(out.data()), last_state.data()); });
  EXPECT_NE(message.find("selective_scan_forward: delta holds bf16"), std::string::npos) << message;
}

TEST(KernelsCpu, BackendRejectsActivationsOfAnotherType) {
  const auto be = make_cpu_backend();
  std::vector<float> x(4 * 3), w(2 * 3), out(4 * 2);
  LinearForward op;
  op.inp = {x.data(), ActType::BF16};
  op.ld_inp = 3;
  op.weight = f32_act(w.data());
  op.out = f32_act(out.data());
  op.ld_out = 2;
  op.T = 4;
  op.in_dim = 3;
  op.out_dim = 2;
  const std::string message = test::error_of([&] { be->linear_forward(op); });
  EXPECT_NE(message.find("linear_forward: inp holds bf16"), std::string::npos) << message;
}

// The backends read x and dout while they write dx: a dx that overlaps either is refused, on the
// CPU as on the GPU (tests/cuda: Conv1dBackwardRefusesAnOverlappingDx).
TEST(KernelsCpu, Conv1dBackwardRefusesAnOverlappingDx) {
  const auto be = make_cpu_backend();
  const Conv1dShape s{1, 40, 16, 4, 32};
  std::vector<float> x(40 * 32), dout(40 * 16), w(16 * 4, 0.1f), b(16), dw(16 * 4), db(16),
      dx(40 * 32);
  for (float* target : {x.data(), x.data() + 16, dout.data()}) {
    const std::string message = test::error_of([&] {
      be->conv1d_silu_backward(s, {f32_act(dout.data()),
                                   f32_act(x.data()),
                                   w.data(),
                                   b.data(),
                                   f32_act(target),
                                   dw.data(),
                                   db.data(),
                                   {}});
    });
    EXPECT_NE(message.find("dx overlaps x or dout"), std::string::npos) << message;
  }
  be->conv1d_silu_backward(s, {f32_act(dout.data()),
                               f32_act(x.data()),
                               w.data(),
                               b.data(),
                               f32_act(dx.data()),
                               dw.data(),
                               db.data(),
                               {}});  // apart: accepted
}

// x_proj's input gradient as the conv backward's low-rank term: the same dx, dweight and dbias
// as the conv backward of dout + a x weight, formed here by loops (a with row padding, ld_a >
// rank).
TEST(KernelsCpu, Conv1dBackwardAddsALowRankTerm) {
  const auto be = make_cpu_backend();
  const int batch = 2, D = 24, K = 4, rank = 5;
  const int64_t seqlen = 37, T = batch * seqlen, ld_x = 2 * D, ld_a = 7;
  const Conv1dShape s{batch, seqlen, D, K, ld_x};
  const auto x = random_vector(T * ld_x, 60), dout = random_vector(T * D, 61);
  const auto a = random_vector(T * ld_a, 62), weight = random_vector(int64_t(rank) * D, 63);
  const auto w = random_vector(int64_t(D) * K, 64, -0.5f, 0.5f), b = random_vector(D, 65);
  std::vector<float> total = dout;
  for (int64_t t = 0; t < T; ++t) {
    for (int d = 0; d < D; ++d) {
      for (int k = 0; k < rank; ++k) total[t * D + d] += a[t * ld_a + k] * weight[k * D + d];
    }
  }
  struct Grads {
    std::vector<float> dx, dw, db;
  };
  auto backward = [&](const std::vector<float>& g, const LowRankGrad& lowrank) {
    Grads r{std::vector<float>(T * ld_x), std::vector<float>(D * K), std::vector<float>(D)};
    Conv1dBackward op{f32_act(g.data()),    f32_act(x.data()), w.data(),    b.data(),
                      f32_act(r.dx.data()), r.dw.data(),       r.db.data(), {}};
    op.lowrank = lowrank;
    be->conv1d_silu_backward(s, op);
    return r;
  };
  const Grads want = backward(total, {});
  const Grads got = backward(dout, {f32_act(a.data()), ld_a, f32_act(weight.data()), rank});
  auto expect_near = [](const char* name, const std::vector<float>& g,
                        const std::vector<float>& e) {
    for (size_t i = 0; i < g.size(); ++i) {
      ASSERT_NEAR(g[i], e[i], 1e-5f * (1.0f + std::abs(e[i]))) << name << " at " << i;
    }
  };
  expect_near("dx", got.dx, want.dx);
  expect_near("dweight", got.dw, want.dw);
  expect_near("dbias", got.db, want.db);
  EXPECT_TRUE(be->conv_backward_takes_lowrank(s, Conv1dBackward{}));
}

std::vector<float> minus(std::vector<float> a, float b) {
  for (float& x : a) x -= b;
  return a;
}

TEST(KernelsCpu, ScanForwardMatchesNaive) {
  const ScanCase sc(2, 37, 5, 4, 50);
  const ScanShape& s = sc.s;
  std::vector<float> out, last_state;
  sc.forward(out, last_state);

  std::vector<double> want_out(sc.T() * s.d_inner);
  std::vector<double> want_last(static_cast<size_t>(s.batch) * s.d_inner * s.d_state);
  for (int b = 0; b < s.batch; ++b) {
    for (int d = 0; d < s.d_inner; ++d) {
      std::vector<double> h(s.d_state, 0.0);
      for (int64_t i = 0; i < s.seqlen; ++i) {
        const int64_t t = b * s.seqlen + i;
        const double x = static_cast<double>(sc.delta[t * s.d_inner + d]) + sc.delta_bias[d];
        const double dt = std::log1p(std::exp(x));
        const double u = sc.u[t * s.d_inner + d];
        double y = sc.D[d] * u;
        for (int n = 0; n < s.d_state; ++n) {
          h[n] = std::exp(dt * sc.A[d * s.d_state + n]) * h[n] + dt * sc.B()[t * s.ld_bc + n] * u;
          y += sc.C()[t * s.ld_bc + n] * h[n];
        }
        const double z = sc.z()[t * s.ld_z + d];
        want_out[t * s.d_inner + d] = y * z / (1.0 + std::exp(-z));
      }
      for (int n = 0; n < s.d_state; ++n) want_last[(b * s.d_inner + d) * s.d_state + n] = h[n];
    }
  }
  EXPECT_LT(max_rel_diff(out, want_out), 1e-5);
  EXPECT_LT(max_rel_diff(last_state, want_last), 1e-5);
}

TEST(KernelsCpu, ScanBackwardMatchesFiniteDifferences) {
  // seqlen 37 is odd and longer than any unrolling; d_inner 5 leaves a partial channel group.
  ScanCase sc(2, 37, 5, 4, 60);
  const ScanShape& s = sc.s;
  const auto w = random_vector(sc.T() * s.d_inner, 61);
  auto objective = [&] {
    std::vector<float> out, last_state;
    sc.forward(out, last_state);
    return weighted_sum(out, w);
  };
  const float initial = 0.25f;
  const ScanGradVectors g = scan_backward(sc, w, initial);
  expect_padding_untouched(g.dxz, s.ld_z, s.d_inner, s.d_inner, "dz");
  expect_padding_untouched(g.dxbc, s.ld_bc, sc.dt_rank, 2 * s.d_state, "dB, dC");

  const int64_t T = sc.T();
  float* z = sc.xz.data() + s.d_inner;
  float* B = sc.xbc.data() + sc.dt_rank;
  float* C = B + s.d_state;
  expect_gradient_close(g.du, serial_gradient(sc.u, objective), "du");
  expect_gradient_close(g.ddelta, serial_gradient(sc.delta, objective), "ddelta");
  expect_gradient_close(gather(g.dxz.data() + s.d_inner, T, s.d_inner, s.ld_z),
                        serial_gradient(z, T, s.d_inner, s.ld_z, objective), "dz");
  expect_gradient_close(gather(g.dxbc.data() + sc.dt_rank, T, s.d_state, s.ld_bc),
                        serial_gradient(B, T, s.d_state, s.ld_bc, objective), "dB");
  expect_gradient_close(gather(g.dxbc.data() + sc.dt_rank + s.d_state, T, s.d_state, s.ld_bc),
                        serial_gradient(C, T, s.d_state, s.ld_bc, objective), "dC");
  expect_gradient_close(minus(g.dA, initial), serial_gradient(sc.A, objective), "dA");
  expect_gradient_close(minus(g.dD, initial), serial_gradient(sc.D, objective), "dD");
  expect_gradient_close(minus(g.ddelta_bias, initial), serial_gradient(sc.delta_bias, objective),
                        "ddelta_bias");
}

TEST(KernelsCpu, ScanIsIndependentOfThreadCount) {
  // d_inner 37 spans three channel groups, the last one partial.
  const ScanCase sc(3, 41, 37, 16, 70);
  const auto dout = random_vector(sc.T() * sc.s.d_inner, 71);
  std::vector<float> out1, last1, out2, last2;
  ScanGradVectors g1, g2;
  with_threads(1, [&] {
    sc.forward(out1, last1);
    g1 = scan_backward(sc, dout, 0.0f);
  });
  for (const int threads : {2, 3}) {
    with_threads(threads, [&] {
      sc.forward(out2, last2);
      g2 = scan_backward(sc, dout, 0.0f);
    });
    EXPECT_EQ(out1, out2) << threads << " threads";
    EXPECT_EQ(last1, last2) << threads << " threads";
    EXPECT_EQ(g1.du, g2.du) << threads << " threads";
    EXPECT_EQ(g1.ddelta, g2.ddelta) << threads << " threads";
    EXPECT_EQ(g1.dA, g2.dA) << threads << " threads";
    EXPECT_EQ(g1.dD, g2.dD) << threads << " threads";
    EXPECT_EQ(g1.ddelta_bias, g2.ddelta_bias) << threads << " threads";
    EXPECT_EQ(g1.dxz, g2.dxz) << threads << " threads";
    EXPECT_EQ(g1.dxbc, g2.dxbc) << threads << " threads";
  }
}

// The F32 tensors of a safetensors file, by name.
std::map<std::string, std::vector<float>> read_safetensors_f32(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  uint64_t header_len = 0;
  in.read(reinterpret_cast<char*>(&header_len), sizeof header_len);
  std::string header(header_len, '\0');
  in.read(header.data(), static_cast<std::streamsize>(header_len));
  const std::vector<char> data((std::istreambuf_iterator<char>(in)),
                               std::istreambuf_iterator<char>());
  std::map<std::string, std::vector<float>> tensors;
  const auto entries = nlohmann::json::parse(header);
  for (auto it = entries.begin(); it != entries.end(); ++it) {
    const std::string& name = it.key();
    const auto& info = it.value();
    if (name == "__metadata__") continue;
    EXPECT_EQ(info.at("dtype"), "F32") << name;
    const uint64_t begin = info.at("data_offsets")[0], end = info.at("data_offsets")[1];
    std::vector<float> v((end - begin) / sizeof(float));
    std::memcpy(v.data(), data.data() + begin, end - begin);
    tensors[name] = std::move(v);
  }
  return tensors;
}

// (batch, rows, seqlen) channel-first -> token-major (batch * seqlen, ld), columns [0, rows).
std::vector<float> to_token_major(const std::vector<float>& x, int batch, int rows, int64_t seqlen,
                                  int64_t ld) {
  std::vector<float> out(batch * seqlen * ld, 0.0f);
  for (int b = 0; b < batch; ++b) {
    for (int r = 0; r < rows; ++r) {
      for (int64_t i = 0; i < seqlen; ++i) {
        out[(b * seqlen + i) * ld + r] = x[(static_cast<int64_t>(b) * rows + r) * seqlen + i];
      }
    }
  }
  return out;
}

TEST(KernelsCpu, ScanMatchesGolden) {
  auto g = read_safetensors_f32(std::string(MAMBA_TEST_DATA) + "/scan_small.safetensors");
  const int batch = 2, Dn = 8, N = 16;
  const int64_t L = 300;
  ASSERT_EQ(g["u"].size(), static_cast<size_t>(batch * Dn * L));
  ASSERT_EQ(g["B"].size(), static_cast<size_t>(batch * N * L));
  // B and C share one [T, 2N] buffer, as slices of x_proj's output do.
  const ScanShape s{batch, L, Dn, N, Dn, 2 * N};
  const auto u = to_token_major(g["u"], batch, Dn, L, Dn);
  const auto delta = to_token_major(g["delta"], batch, Dn, L, Dn);
  const auto z = to_token_major(g["z"], batch, Dn, L, Dn);
  const auto dout = to_token_major(g["dout"], batch, Dn, L, Dn);
  auto bc = to_token_major(g["B"], batch, N, L, 2 * N);
  const auto c_only = to_token_major(g["C"], batch, N, L, 2 * N);
  for (size_t i = 0; i < bc.size(); ++i) {
    if (static_cast<int64_t>(i) % (2 * N) >= N) bc[i] = c_only[i - N];
  }

  std::vector<float> out(batch * L * Dn), last_state(batch * Dn * N);
  const ScanInputs in{f32_act(u.data()),      f32_act(delta.data()), f32_act(bc.data()),
                      f32_act(bc.data() + N), f32_act(z.data()),     g["A"].data(),
                      g["D"].data(),          g["delta_bias"].data()};
  selective_scan_forward(s, in, f32_act(out.data()), last_state.data());
  EXPECT_LT(norm_rel_error(out, to_token_major(g["out"], batch, Dn, L, Dn)), 1e-5);
  EXPECT_LT(norm_rel_error(last_state, g["last_state"]), 1e-5);

  std::vector<float> du(out.size()), ddelta(out.size()), dz(out.size()), dbc(bc.size());
  std::vector<float> dA(Dn * N, 0.0f), dD(Dn, 0.0f), ddelta_bias(Dn, 0.0f);
  const ScanGrads grads{f32_act(du.data()),
                        f32_act(ddelta.data()),
                        f32_act(dbc.data()),
                        f32_act(dbc.data() + N),
                        f32_act(dz.data()),
                        dA.data(),
                        dD.data(),
                        ddelta_bias.data(),
                        {}};
  selective_scan_backward(s, in, f32_act(dout.data()), grads);
  std::vector<float> dB(batch * L * N), dC(batch * L * N);
  for (int64_t t = 0; t < batch * L; ++t) {
    for (int n = 0; n < N; ++n) {
      dB[t * N + n] = dbc[t * 2 * N + n];
      dC[t * N + n] = dbc[t * 2 * N + N + n];
    }
  }
  const double tol = 1e-4;
  EXPECT_LT(norm_rel_error(du, to_token_major(g["du"], batch, Dn, L, Dn)), tol) << "du";
  EXPECT_LT(norm_rel_error(ddelta, to_token_major(g["ddelta"], batch, Dn, L, Dn)), tol) << "ddelta";
  EXPECT_LT(norm_rel_error(dz, to_token_major(g["dz"], batch, Dn, L, Dn)), tol) << "dz";
  EXPECT_LT(norm_rel_error(dB, to_token_major(g["dB"], batch, N, L, N)), tol) << "dB";
  EXPECT_LT(norm_rel_error(dC, to_token_major(g["dC"], batch, N, L, N)), tol) << "dC";
  EXPECT_LT(norm_rel_error(dA, g["dA"]), tol) << "dA";
  EXPECT_LT(norm_rel_error(dD, g["dD"]), tol) << "dD";
  EXPECT_LT(norm_rel_error(ddelta_bias, g["ddelta_bias"]), tol) << "ddelta_bias";
}

// ---------------------------------------------------------------- cross-entropy

TEST(KernelsCpu, CrossEntropyForwardMatchesNaive) {
  const int Vp = 11;
  const int64_t T = 37;
  // Logits near 100 overflow exp in fp32 unless the row maximum is subtracted first.
  auto logits = random_vector(T * Vp, 80, 95.0f, 105.0f);
  const auto targets = random_ids(T, Vp, 81);
  double want = 0.0;
  for (int64_t t = 0; t < T; ++t) {
    double sum = 0.0;
    for (int v = 0; v < Vp; ++v) sum += std::exp(static_cast<double>(logits[t * Vp + v]));
    want += std::log(sum) - logits[t * Vp + targets[t]];
  }
  want /= T;
  const double loss = cross_entropy_forward(logits.data(), targets.data(), T, Vp);
  EXPECT_NEAR(loss, want, 1e-6 * want);
  EXPECT_EQ(cross_entropy_forward_backward(logits.data(), targets.data(), T, Vp, 1.0f), loss);
}

TEST(KernelsCpu, CrossEntropyBackwardMatchesFiniteDifferences) {
  const int Vp = 11;
  const int64_t T = 37;
  auto logits = random_vector(T * Vp, 82, -3.0f, 3.0f);
  const auto targets = random_ids(T, Vp, 83);
  auto objective = [&] { return cross_entropy_forward(logits.data(), targets.data(), T, Vp); };
  const auto numeric = serial_gradient(logits, objective);
  // grad_scale folds in gradient accumulation's 1/steps.
  const float grad_scale = 0.5f;
  auto dlogits = logits;
  cross_entropy_forward_backward(dlogits.data(), targets.data(), T, Vp, grad_scale);
  for (float& x : dlogits) x /= grad_scale;
  expect_gradient_close(dlogits, numeric, "dlogits");
}

// ---------------------------------------------------------------- AdamW

TEST(KernelsCpu, AdamWMatchesDoubleReference) {
  // Ordinary gradients, one that is zero (denominator = eps) and a tiny one (eps matters).
  const std::vector<float> param0 = {0.5f, -1.25f, 2.0f, 0.75f, -0.3f};
  const std::vector<std::vector<float>> grads = {{0.1f, -2.0f, 0.0f, 1e-9f, 0.3f},
                                                 {-0.05f, -1.5f, 0.0f, -2e-9f, 0.2f},
                                                 {0.2f, 0.5f, 0.0f, 1e-9f, -0.4f}};
  for (const float wd : {0.0f, 0.1f}) {
    AdamWHyper h{1e-3f, 0.9f, 0.95f, 1e-8f, wd, 0};
    auto param = param0;
    std::vector<float> m(param.size(), 0.0f), v(param.size(), 0.0f);
    std::vector<double> p_ref(param0.begin(), param0.end()), m_ref(param.size(), 0.0),
        v_ref(param.size(), 0.0);
    for (int step = 1; step <= 3; ++step) {
      h.step = step;
      const auto& g = grads[step - 1];
      adamw_update(param.data(), g.data(), m.data(), v.data(), static_cast<int64_t>(param.size()),
                   h);
      const double b1 = h.beta1, b2 = h.beta2, lr = h.lr, eps = h.eps;
      for (size_t i = 0; i < param.size(); ++i) {
        // m and v of the tiny gradient cancel; their errors scale with the gradients, not with m.
        double g_max = 0.0;
        for (const auto& gs : grads) g_max = std::max(g_max, std::abs(static_cast<double>(gs[i])));
        p_ref[i] *= 1.0 - lr * wd;
        m_ref[i] = b1 * m_ref[i] + (1.0 - b1) * g[i];
        v_ref[i] = b2 * v_ref[i] + (1.0 - b2) * g[i] * g[i];
        const double denom = std::sqrt(v_ref[i]) / std::sqrt(1.0 - std::pow(b2, step)) + eps;
        p_ref[i] -= lr / (1.0 - std::pow(b1, step)) * m_ref[i] / denom;
        EXPECT_NEAR(param[i], p_ref[i], 5e-7 * std::max(1.0, std::abs(p_ref[i])))
            << "param " << i << " step " << step << " wd " << wd;
        EXPECT_NEAR(m[i], m_ref[i], 1e-6 * g_max) << "m " << i << " step " << step;
        EXPECT_NEAR(v[i], v_ref[i], 1e-6 * g_max * g_max) << "v " << i << " step " << step;
      }
    }
  }
}

TEST(KernelsCpu, SumOfSquares) {
  // Long enough to span several of sum_of_squares' fixed chunks, the last one partial.
  const int64_t n = 3 * 65536 + 17;
  auto x = random_vector(n, 90);
  double want = 0.0;
  for (float v : x) want += static_cast<double>(v) * v;
  EXPECT_NEAR(sum_of_squares(x.data(), n), want, 1e-12 * want);
  // Over spans (the gradient norm of a ZeRO-1 shard): an empty one, one across chunk boundaries.
  const std::vector<Span> spans{{5, 0}, {7, 100}, {65000, 2 * 65536}, {n - 3, 3}};
  double want_spans = 0.0;
  for (const Span& s : spans) {
    for (int64_t i = s.offset; i < s.offset + s.count; ++i) want_spans += double(x[i]) * x[i];
  }
  EXPECT_NEAR(sum_of_squares(x.data(), spans.data(), int(spans.size())), want_spans,
              1e-12 * want_spans);
  EXPECT_EQ(sum_of_squares(x.data(), spans.data(), 0), 0.0);
}

// ---------------------------------------------------------------- determinism of the others

TEST(KernelsCpu, ReductionsAreIndependentOfThreadCount) {
  const int64_t T = 211;
  const int C = 67, V = 13, batch = 1, K = 4;
  const auto ids = random_ids(T, V, 100);
  const auto x = random_vector(T * C, 101);
  const auto dout = random_vector(T * C, 102);
  const auto weight = random_vector(C * K, 103);
  const auto bias = random_vector(C, 104);
  const auto logits = random_vector(T * V, 105, -4.0f, 4.0f);
  const auto big = random_vector(5 * 65536 + 3, 106);

  struct Results {
    std::vector<float> dtable, dres, dnw, dx, dw, db, dlogits;
    double loss = 0.0, ss = 0.0;
  };
  auto run = [&] {
    Results r;
    r.dtable.assign(V * C, 0.0f);
    embedding_backward(r.dtable.data(), dout.data(), ids.data(), T, C);

    std::vector<float> res(T * C), normed(T * C), rstd(T);
    residual_rmsnorm_forward(res.data(), normed.data(), rstd.data(), x.data(), nullptr, bias.data(),
                             T, C, 1e-5f);
    r.dres.assign(T * C, 0.0f);
    r.dnw.assign(C, 0.0f);
    rmsnorm_backward(r.dres.data(), r.dnw.data(), dout.data(), res.data(), rstd.data(), bias.data(),
                     T, C);

    r.dx.assign(T * C, 0.0f);
    r.dw.assign(C * K, 0.0f);
    r.db.assign(C, 0.0f);
    conv1d_silu_backward(r.dx.data(), r.dw.data(), r.db.data(), dout.data(), x.data(), C,
                         weight.data(), bias.data(), batch, T, C, K);

    r.dlogits = logits;
    r.loss = cross_entropy_forward_backward(r.dlogits.data(), ids.data(), T, V, 1.0f);
    r.ss = sum_of_squares(big.data(), static_cast<int64_t>(big.size()));
    return r;
  };
  Results one, three;
  with_threads(1, [&] { one = run(); });
  with_threads(3, [&] { three = run(); });
  EXPECT_EQ(one.dtable, three.dtable);
  EXPECT_EQ(one.dres, three.dres);
  EXPECT_EQ(one.dnw, three.dnw);
  EXPECT_EQ(one.dx, three.dx);
  EXPECT_EQ(one.dw, three.dw);
  EXPECT_EQ(one.db, three.db);
  EXPECT_EQ(one.dlogits, three.dlogits);
  EXPECT_EQ(one.loss, three.loss);
  EXPECT_EQ(one.ss, three.ss);
}

}  // namespace
}  // namespace mamba::cpu
