// Finite-difference checks for hand-written backward passes run in fp32.
//
// The usual objective is f = sum(out * w) for a random w, accumulated in double, so that
// df/dout = w is what the backward pass is fed. Central differences with eps ~ 1e-3 then agree
// with a correct fp32 gradient to ~1e-4 relative, far below the ~1e-2 a wrong term produces.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace mamba::test {

// Uniform floats in [lo, hi), reproducible from the seed.
inline std::vector<float> random_vector(size_t n, uint32_t seed, float lo = -1.0f,
                                        float hi = 1.0f) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(gen);
  return v;
}

// sum_i a[i] * w[i], in double.
inline double weighted_sum(const std::vector<float>& a, const std::vector<float>& w) {
  double s = 0.0;
  for (size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * w[i];
  return s;
}

// The rows x cols logical elements of a matrix with row stride ld, densely packed.
inline std::vector<float> gather(const float* x, int64_t rows, int64_t cols, int64_t ld) {
  std::vector<float> out(rows * cols);
  for (int64_t r = 0; r < rows; ++r) {
    std::copy(x + r * ld, x + r * ld + cols, out.begin() + r * cols);
  }
  return out;
}

// Central differences of f with respect to the logical elements of the strided matrix x (rows x
// cols, row stride ld); x is restored afterwards. The divisor is the step actually taken in
// fp32, which differs from 2 * eps by rounding when |x| is not small.
inline std::vector<double> numerical_gradient(float* x, int64_t rows, int64_t cols, int64_t ld,
                                              const std::function<double()>& f, float eps = 1e-3f) {
  std::vector<double> g(rows * cols);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      float& xi = x[r * ld + c];
      const float orig = xi;
      const float hi = orig + eps;
      const float lo = orig - eps;
      xi = hi;
      const double f_hi = f();
      xi = lo;
      const double f_lo = f();
      xi = orig;
      g[r * cols + c] = (f_hi - f_lo) / (static_cast<double>(hi) - lo);
    }
  }
  return g;
}

// The larger of the norm-wise error ||a - n||_2 / ||n||_2 and the max-wise error
// ||a - n||_inf / ||n||_inf: the first catches errors spread over many elements, the second a
// single wrong element that the 2-norm would dilute.
inline double gradient_error(const std::vector<float>& analytic,
                             const std::vector<double>& numeric) {
  double diff2 = 0.0, ref2 = 0.0, diff_max = 0.0, ref_max = 0.0;
  for (size_t i = 0; i < numeric.size(); ++i) {
    const double d = analytic[i] - numeric[i];
    diff2 += d * d;
    ref2 += numeric[i] * numeric[i];
    diff_max = std::max(diff_max, std::abs(d));
    ref_max = std::max(ref_max, std::abs(numeric[i]));
  }
  const double tiny = 1e-30;
  return std::max(std::sqrt(diff2 / std::max(ref2, tiny)), diff_max / std::max(ref_max, tiny));
}

// Expects the analytic gradient to match the numeric one within tol, and checks that the test is
// sharp: the same gradient with its largest element off by 3% must fail it.
inline void expect_gradient_close(const std::vector<float>& analytic,
                                  const std::vector<double>& numeric, const std::string& what,
                                  double tol = 1e-2) {
  ASSERT_EQ(analytic.size(), numeric.size()) << what;
  const double err = gradient_error(analytic, numeric);
  EXPECT_LT(err, tol) << what;
  std::vector<float> wrong = analytic;
  const auto largest = std::max_element(wrong.begin(), wrong.end(),
                                        [](float a, float b) { return std::abs(a) < std::abs(b); });
  *largest *= 1.03f;
  EXPECT_GT(gradient_error(wrong, numeric), tol) << what << ": the check is too loose";
}

}  // namespace mamba::test
