// The CUDA selective scan against its CPU twin (kernels/cpu/scan.h) on fresh random inputs.
// Inputs live where the model keeps them: z is the second half of [x | z] rows (ld_z = 2 d_inner)
// and B, C are slices of [dt | B | C] rows (ld_bc = R + 32). Every output the GPU writes is
// poisoned with NaN first, and the parts of the gradient buffers that belong to x and dt must
// still hold the poison afterwards. The bf16 runs give the CPU the same bf16-rounded inputs, so
// only the rounding of the outputs, the order of the sums and (bf16) the checkpoints differ.
// Tolerances (norm-wise relative error, ||gpu - cpu|| / ||cpu||):
//   fp32 path: forward outputs 1e-5, gradients 1e-4;
//   bf16 path: bf16 outputs 4e-3 (one rounding to bf16 is up to 2^-9 relative, ~1.1e-3 RMS),
//              last_state 1e-5; dA, dD, ddelta_bias 2e-3: the backward recomputes the states
//              from bf16 checkpoints (measured up to 1.1e-3 on the H200).
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "kernels/cpu/scan.h"
#include "kernels/cuda/act_type.h"
#include "kernels/cuda/scan.h"
#include "util/error.h"

namespace {

using mamba::ScanGrads;
using mamba::ScanInputs;
using mamba::ScanShape;
using mamba::cuda::ScanTuning;
using bf16 = __nv_bfloat16;

constexpr int kN = 16;

// A typed pointer as an activation argument.
template <typename T>
mamba::Act act(T* p) {
  return {p, mamba::ActTypeOf<T>::value};
}
template <typename T>
mamba::ConstAct act(const T* p) {
  return {p, mamba::ActTypeOf<T>::value};
}

template <typename T>
ScanInputs scan_inputs(const T* u, const T* delta, const T* B, const T* C, const T* z,
                       const float* A, const float* D, const float* bias) {
  return {act(u), act(delta), act(B), act(C), act(z), A, D, bias};
}
template <typename T>
ScanGrads scan_grads(T* du, T* ddelta, T* dB, T* dC, T* dz, float* dA, float* dD, float* dbias) {
  return {act(du), act(ddelta), act(dB), act(dC), act(dz), dA, dD, dbias, {}};
}

// Empty when a CUDA device is usable, else why not.
std::string no_gpu_reason() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) return cudaGetErrorString(e);
  if (n == 0) return "cudaGetDeviceCount found none";
  return "";
}

void ck(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t n) : n_(n) {
    ck(cudaMalloc(reinterpret_cast<void**>(&p_), std::max<size_t>(n, 1) * sizeof(T)), "cudaMalloc");
  }
  ~DeviceBuffer() { cudaFree(p_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  T* get() const { return p_; }
  size_t size() const { return n_; }
  void poison() { ck(cudaMemset(p_, 0xFF, n_ * sizeof(T)), "cudaMemset"); }  // NaN in bf16, fp32

 private:
  T* p_ = nullptr;
  size_t n_;
};

float to_float(float x) {
  return x;
}
float to_float(bf16 x) {
  return __bfloat162float(x);
}
template <typename T>
T from_float(float x);
template <>
float from_float<float>(float x) {
  return x;
}
template <>
bf16 from_float<bf16>(float x) {
  return __float2bfloat16(x);
}

template <typename T>
void upload(DeviceBuffer<T>& dst, const std::vector<float>& src) {
  std::vector<T> tmp(src.size());
  std::transform(src.begin(), src.end(), tmp.begin(), from_float<T>);
  ck(cudaMemcpy(dst.get(), tmp.data(), tmp.size() * sizeof(T), cudaMemcpyHostToDevice), "upload");
}

template <typename T>
std::vector<float> download(const DeviceBuffer<T>& src) {
  std::vector<T> tmp(src.size());
  ck(cudaMemcpy(tmp.data(), src.get(), tmp.size() * sizeof(T), cudaMemcpyDeviceToHost), "download");
  std::vector<float> out(tmp.size());
  std::transform(tmp.begin(), tmp.end(), out.begin(), [](T x) { return to_float(x); });
  return out;
}

float round_bf16(float x) {
  return __bfloat162float(__float2bfloat16(x));
}

// Columns [col0, col0 + ncols) of a row-major [rows, ld] matrix.
std::vector<float> columns(const std::vector<float>& m, int64_t rows, int64_t ld, int64_t col0,
                           int64_t ncols) {
  std::vector<float> out(rows * ncols);
  for (int64_t r = 0; r < rows; ++r)
    std::copy_n(m.begin() + r * ld + col0, ncols, out.begin() + r * ncols);
  return out;
}

// Norm-wise relative error; infinite when anything is not finite.
double rel_err(const std::vector<float>& got, const std::vector<float>& want) {
  if (got.size() != want.size()) return INFINITY;
  double num = 0, den = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    const double e = static_cast<double>(got[i]) - want[i];
    num += e * e;
    den += static_cast<double>(want[i]) * want[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

void expect_close(const std::string& what, const std::vector<float>& got,
                  const std::vector<float>& want, double tol) {
  const double err = rel_err(got, want);
  std::printf("    %-24s rel err %.3e (tol %.0e)\n", what.c_str(), err, tol);
  EXPECT_LE(err, tol) << what;
}

// d(delta_bias) adds ddelta over all tokens, and the sum can cancel: its error is measured against
// the scale of what it adds, the per-channel sums of |ddelta| (terms: [tokens, channels]), rather
// than against the sums themselves.
void expect_sum_close(const std::string& what, const std::vector<float>& got,
                      const std::vector<float>& want, const std::vector<float>& terms, double tol) {
  std::vector<double> scale(want.size(), 0.0);
  for (size_t i = 0; i < terms.size(); ++i) scale[i % want.size()] += std::fabs(terms[i]);
  double num = 0, den = 0;
  bool finite = got.size() == want.size();
  for (size_t c = 0; finite && c < want.size(); ++c) {
    finite = std::isfinite(got[c]);
    const double e = static_cast<double>(got[c]) - want[c];
    num += e * e;
    den += scale[c] * scale[c];
  }
  const double err = finite ? std::sqrt(num / std::max(den, 1e-30)) : INFINITY;
  std::printf("    %-24s err %.3e of sum |terms| (tol %.0e)\n", what.c_str(), err, tol);
  EXPECT_LE(err, tol) << what;
}

// One problem in the model's layout, all in fp32 on the host.
struct Problem {
  ScanShape s;
  int R = 0;                                   // dt columns before B in the x_proj rows
  std::vector<float> u, delta, xz, xbc, dout;  // xz: [T, 2 d_inner]; xbc: [T, R + 32]
  std::vector<float> A, D, bias, dA0, dD0, dbias0;
  int64_t tokens() const { return static_cast<int64_t>(s.batch) * s.seqlen; }
};

Problem make_problem(int batch, int64_t seqlen, int d_inner, int R, uint64_t seed,
                     bool round_to_bf16) {
  Problem p;
  p.R = R;
  p.s = {batch, seqlen, d_inner, kN, 2 * static_cast<int64_t>(d_inner), R + 2 * kN};
  const int64_t T = p.tokens();
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::uniform_real_distribution<float> unif(0.f, 1.f);
  auto fill = [&](std::vector<float>& v, size_t n, auto gen) {
    v.resize(n);
    for (auto& x : v) x = gen();
  };
  fill(p.u, T * d_inner, [&] { return normal(rng); });
  // Raw delta (the dt projection) in about [-3, 0], with a few large values that take
  // softplus's linear branch (argument above 20).
  fill(p.delta, T * d_inner, [&] {
    return unif(rng) < 0.002f ? 18.f + 12.f * unif(rng) : -3.f * unif(rng) + 0.5f * normal(rng);
  });
  fill(p.xz, T * 2 * d_inner, [&] { return normal(rng); });
  fill(p.xbc, T * p.s.ld_bc, [&] { return normal(rng); });
  fill(p.dout, T * d_inner, [&] { return normal(rng); });
  // A = -exp(A_log), A_log near log(1..16) as initialised; dt bias = softplus^-1 of
  // dt in [1e-3, 1e-1] (log-uniform), as the reference initialises it.
  p.A.resize(static_cast<size_t>(d_inner) * kN);
  for (int d = 0; d < d_inner; ++d)
    for (int n = 0; n < kN; ++n)
      p.A[d * kN + n] = -std::exp(std::log(n + 1.f) + 0.5f * (unif(rng) - 0.5f));
  fill(p.D, d_inner, [&] { return 0.5f + unif(rng); });
  fill(p.bias, d_inner, [&] {
    const float dt = std::exp(std::log(1e-3f) + unif(rng) * (std::log(1e-1f) - std::log(1e-3f)));
    return std::log(std::expm1(dt));
  });
  fill(p.dA0, static_cast<size_t>(d_inner) * kN, [&] { return normal(rng); });
  fill(p.dD0, d_inner, [&] { return normal(rng); });
  fill(p.dbias0, d_inner, [&] { return normal(rng); });
  if (round_to_bf16)
    for (auto* v : {&p.u, &p.delta, &p.xz, &p.xbc, &p.dout})
      std::transform(v->begin(), v->end(), v->begin(), round_bf16);
  return p;
}

struct Results {
  std::vector<float> out, last_state, du, ddelta, dz, dB, dC, dA, dD, dbias;
  std::vector<float> reformed;  // the output as the backward re-forms it
};

Results cpu_reference(const Problem& p) {
  const ScanShape& s = p.s;
  const int64_t T = p.tokens();
  Results r;
  r.out.resize(T * s.d_inner);
  r.last_state.resize(static_cast<size_t>(s.batch) * s.d_inner * kN);
  const ScanInputs in =
      scan_inputs(p.u.data(), p.delta.data(), p.xbc.data() + p.R, p.xbc.data() + p.R + kN,
                  p.xz.data() + s.d_inner, p.A.data(), p.D.data(), p.bias.data());
  mamba::cpu::selective_scan_forward(s, in, act(r.out.data()), r.last_state.data());
  r.du.resize(T * s.d_inner);
  r.ddelta.resize(T * s.d_inner);
  std::vector<float> dxz(T * s.ld_z), dxbc(T * s.ld_bc);
  r.dA = p.dA0, r.dD = p.dD0, r.dbias = p.dbias0;
  mamba::cpu::selective_scan_backward(
      s, in, act(p.dout.data()),
      scan_grads(r.du.data(), r.ddelta.data(), dxbc.data() + p.R, dxbc.data() + p.R + kN,
                 dxz.data() + s.d_inner, r.dA.data(), r.dD.data(), r.dbias.data()));
  r.dz = columns(dxz, T, s.ld_z, s.d_inner, s.d_inner);
  r.dB = columns(dxbc, T, s.ld_bc, p.R, kN);
  r.dC = columns(dxbc, T, s.ld_bc, p.R + kN, kN);
  return r;
}

// Forward then backward on the GPU. Checks on the way that the forward filled every checkpoint
// and that the x half of dxz and the dt columns of dxbc were left alone.
template <typename T>
Results gpu_run(const Problem& p, const ScanTuning& tuning) {
  const ScanShape& s = p.s;
  const int64_t T_ = p.tokens();
  const size_t td = T_ * s.d_inner;
  DeviceBuffer<T> u(td), delta(td), xz(T_ * s.ld_z), xbc(T_ * s.ld_bc), dout(td);
  DeviceBuffer<T> out(td), du(td), ddelta(td), dxz(T_ * s.ld_z), dxbc(T_ * s.ld_bc), reformed(td);
  DeviceBuffer<float> A(p.A.size()), D(p.D.size()), bias(p.bias.size());
  DeviceBuffer<float> dA(p.dA0.size()), dD(p.dD0.size()), dbias(p.dbias0.size());
  DeviceBuffer<float> last(static_cast<size_t>(s.batch) * s.d_inner * kN);
  DeviceBuffer<T> ckpt(mamba::cuda::scan_checkpoint_bytes(s, mamba::ActTypeOf<T>::value) /
                       sizeof(T));
  DeviceBuffer<char> ws(mamba::cuda::scan_workspace_bytes(s, tuning));
  upload(u, p.u), upload(delta, p.delta), upload(xz, p.xz), upload(xbc, p.xbc);
  upload(dout, p.dout), upload(A, p.A), upload(D, p.D), upload(bias, p.bias);
  upload(dA, p.dA0), upload(dD, p.dD0), upload(dbias, p.dbias0);
  for (auto* b : {&out, &du, &ddelta, &dxz, &dxbc, &reformed}) b->poison();
  last.poison(), ckpt.poison(), ws.poison();

  const T* z = xz.get() + s.d_inner;
  const T* B = xbc.get() + p.R;
  const T* C = B + kN;
  const ScanInputs in = scan_inputs(u.get(), delta.get(), B, C, z, A.get(), D.get(), bias.get());
  mamba::cuda::selective_scan_forward(s, in, act(out.get()), last.get(), ckpt.get(), ws.get(),
                                      nullptr, tuning);
  ck(cudaDeviceSynchronize(), "forward");
  const std::vector<float> ckpt_host = download(ckpt);
  EXPECT_TRUE(std::all_of(ckpt_host.begin(), ckpt_host.end(), [](float x) {
    return std::isfinite(x);
  })) << "the forward left checkpoints unwritten";
  ScanGrads grads = scan_grads(du.get(), ddelta.get(), dxbc.get() + p.R, dxbc.get() + p.R + kN,
                               dxz.get() + s.d_inner, dA.get(), dD.get(), dbias.get());
  grads.out = act(reformed.get());
  mamba::cuda::selective_scan_backward(s, in, act(dout.get()), ckpt.get(), grads, ws.get(), nullptr,
                                       tuning);
  ck(cudaDeviceSynchronize(), "backward");

  Results r;
  r.out = download(out), r.last_state = download(last), r.du = download(du);
  r.ddelta = download(ddelta), r.dA = download(dA), r.dD = download(dD);
  r.dbias = download(dbias), r.reformed = download(reformed);
  const std::vector<float> dxz_h = download(dxz), dxbc_h = download(dxbc);
  r.dz = columns(dxz_h, T_, s.ld_z, s.d_inner, s.d_inner);
  r.dB = columns(dxbc_h, T_, s.ld_bc, p.R, kN);
  r.dC = columns(dxbc_h, T_, s.ld_bc, p.R + kN, kN);
  const std::vector<float> x_half = columns(dxz_h, T_, s.ld_z, 0, s.d_inner);
  const std::vector<float> dt_cols = columns(dxbc_h, T_, s.ld_bc, 0, p.R);
  auto all_nan = [](const std::vector<float>& v) {
    return std::all_of(v.begin(), v.end(), [](float x) { return std::isnan(x); });
  };
  EXPECT_TRUE(all_nan(x_half)) << "the backward wrote into the x half of dxz";
  EXPECT_TRUE(all_nan(dt_cols)) << "the backward wrote into the dt columns of dxbc";
  return r;
}

template <typename T>
void compare_with_cpu(int batch, int64_t seqlen, int d_inner, int R, const ScanTuning& tuning,
                      uint64_t seed) {
  constexpr bool kBf16 = std::is_same_v<T, bf16>;
  std::printf("  %s batch %d seqlen %lld d_inner %d R %d segments %d backward states %d\n",
              kBf16 ? "bf16" : "fp32", batch, static_cast<long long>(seqlen), d_inner, R,
              tuning.segments, tuning.backward_states);
  const Problem p = make_problem(batch, seqlen, d_inner, R, seed, kBf16);
  const Results want = cpu_reference(p);
  const Results got = gpu_run<T>(p, tuning);
  const double fwd_tol = kBf16 ? 4e-3 : 1e-5, bwd_tol = kBf16 ? 4e-3 : 1e-4;
  expect_close("out", got.out, want.out, fwd_tol);
  expect_close("out re-formed by the backward", got.reformed, want.out, fwd_tol);
  expect_close("last_state", got.last_state, want.last_state, 1e-5);
  expect_close("du", got.du, want.du, bwd_tol);
  expect_close("ddelta", got.ddelta, want.ddelta, bwd_tol);
  expect_close("dz", got.dz, want.dz, bwd_tol);
  expect_close("dB", got.dB, want.dB, bwd_tol);
  expect_close("dC", got.dC, want.dC, bwd_tol);
  const double param_tol = kBf16 ? 2e-3 : 1e-4;
  expect_close("dA", got.dA, want.dA, param_tol);
  expect_close("dD", got.dD, want.dD, param_tol);
  expect_sum_close("ddelta_bias", got.dbias, want.dbias, want.ddelta, param_tol);
}

struct Case {
  int batch;
  int64_t seqlen;
  int d_inner, R, segments;
};

// Odd sequence lengths, partial chunks and channel blocks, both copy paths (R = 3 and d_inner
// = 100 misalign the rows, which sends the loads through the element-wise path), and segmented
// scans: chosen by the plan (one chunk per segment here) and forced to uneven segments. d_inner
// = 4 leaves most of a warp's 8 channels (and of its state-group lanes) empty. The backward runs
// with 4 states per thread in most cases; on the H200 (132 SMs) with 16 where the plan's blocks
// take between one and two waves of the 4-state one (3 x 1001 x 136 in 63 segments, 8 x 40 x
// 3200). EachBackwardMatchesCpu runs every case with each.
const Case kCases[] = {{1, 1, 8, 8, 0},       {2, 37, 64, 8, 0},   {3, 1001, 136, 48, 0},
                       {2, 203, 100, 3, 0},   {1, 4099, 64, 8, 0}, {1, 4099, 64, 8, 3},
                       {2, 1500, 200, 16, 5}, {3, 300, 4, 2, 0},   {8, 40, 3200, 16, 1}};

TEST(ScanCuda, Fp32MatchesCpu) {
  if (const std::string why = no_gpu_reason(); !why.empty())
    GTEST_SKIP() << "no CUDA device: " << why;
  uint64_t seed = 1;
  for (const Case& c : kCases)
    compare_with_cpu<float>(c.batch, c.seqlen, c.d_inner, c.R, {c.segments}, seed++);
}

TEST(ScanCuda, Bf16MatchesCpu) {
  if (const std::string why = no_gpu_reason(); !why.empty())
    GTEST_SKIP() << "no CUDA device: " << why;
  uint64_t seed = 100;
  for (const Case& c : kCases)
    compare_with_cpu<bf16>(c.batch, c.seqlen, c.d_inner, c.R, {c.segments}, seed++);
}

// Both backward kernels (4 and 16 states per thread) on every case, whatever the plan would pick
// on this GPU.
TEST(ScanCuda, EachBackwardMatchesCpu) {
  if (const std::string why = no_gpu_reason(); !why.empty())
    GTEST_SKIP() << "no CUDA device: " << why;
  uint64_t seed = 300;
  for (int states : {4, 16}) {
    for (const Case& c : kCases) {
      ScanTuning tuning{c.segments};
      tuning.backward_states = states;
      compare_with_cpu<bf16>(c.batch, c.seqlen, c.d_inner, c.R, tuning, seed++);
      compare_with_cpu<float>(c.batch, c.seqlen, c.d_inner, c.R, tuning, seed++);
    }
  }
}

void expect_bitwise_equal(const std::string& what, const std::vector<float>& a,
                          const std::vector<float>& b) {
  EXPECT_TRUE(a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0)
      << what << " differs between two runs";
}

TEST(ScanCuda, GradientsAreBitwiseReproducible) {
  if (const std::string why = no_gpu_reason(); !why.empty())
    GTEST_SKIP() << "no CUDA device: " << why;
  // Unsegmented, 7 segments and the plan's (63), with each backward kernel.
  for (int segments : {1, 7, 0}) {
    for (int states : {4, 16}) {
      const Problem p = make_problem(4, 2000, 256, 48, 7 + segments, true);
      const ScanTuning tuning{segments, states};
      const Results a = gpu_run<bf16>(p, tuning), b = gpu_run<bf16>(p, tuning);
      for (auto [name, x, y] : {std::tuple{"du", &a.du, &b.du},
                                {"ddelta", &a.ddelta, &b.ddelta},
                                {"dz", &a.dz, &b.dz},
                                {"dB", &a.dB, &b.dB},
                                {"dC", &a.dC, &b.dC},
                                {"dA", &a.dA, &b.dA},
                                {"dD", &a.dD, &b.dD},
                                {"ddelta_bias", &a.dbias, &b.dbias}})
        expect_bitwise_equal(std::string(name) + " (segments " + std::to_string(segments) +
                                 ", backward states " + std::to_string(states) + ")",
                             *x, *y);
    }
  }
}

// backward_states reaches the choice of kernel: the two backwards add the dB terms of a step over
// the block's channels in different orders (a 4-state warp holds 8 channels, a 16-state one 32),
// so their fp32 dB differ in the last bits, while both match the CPU (EachBackwardMatchesCpu).
TEST(ScanCuda, BackwardStatesPicksTheKernel) {
  if (const std::string why = no_gpu_reason(); !why.empty())
    GTEST_SKIP() << "no CUDA device: " << why;
  const Problem p = make_problem(2, 300, 256, 16, 11, false);
  const Results four = gpu_run<float>(p, {1, 4}), sixteen = gpu_run<float>(p, {1, 16});
  ASSERT_EQ(four.dB.size(), sixteen.dB.size());
  EXPECT_NE(std::memcmp(four.dB.data(), sixteen.dB.data(), four.dB.size() * sizeof(float)), 0)
      << "backward_states 4 and 16 gave bit-identical dB: the same kernel ran";
}

TEST(ScanCuda, RejectsUnsupportedShapes) {
  if (const std::string why = no_gpu_reason(); !why.empty())
    GTEST_SKIP() << "no CUDA device: " << why;
  EXPECT_THROW(mamba::cuda::scan_workspace_bytes({1, 16, 64, 8, 64, 16}), mamba::Error);
  EXPECT_THROW(mamba::cuda::scan_workspace_bytes({1, 16, 64, 16, 32, 32}), mamba::Error);
  EXPECT_THROW(mamba::cuda::scan_workspace_bytes({1, 0, 64, 16, 64, 32}), mamba::Error);
  EXPECT_THROW(mamba::cuda::scan_workspace_bytes({1, 16, 64, 16, 64, 32}, {0, 8}), mamba::Error);
}

// Activations of mixed types are refused before anything runs (so this needs no GPU), naming the
// op and the argument.
TEST(ScanCuda, RejectsMixedActivationTypes) {
  const ScanShape s{1, 16, 64, kN, 64, 2 * kN};
  std::vector<bf16> acts(16 * 64);
  std::vector<float> f32(64 * kN);
  const ScanInputs in = scan_inputs<bf16>(acts.data(), acts.data(), acts.data(), acts.data(),
                                          acts.data(), f32.data(), f32.data(), f32.data());
  std::string message;
  try {
    mamba::cuda::selective_scan_forward(s, in, act(f32.data()), nullptr, nullptr, nullptr, nullptr);
  } catch (const mamba::Error& e) {
    message = e.what();
  }
  EXPECT_NE(message.find("selective_scan_forward: out holds fp32"), std::string::npos) << message;
}

// batch * seqlen * d_inner above 2^31 elements, so 32-bit offsets would wrap. Only the last 64
// channels get random inputs and a nonzero dout (the CPU checks those); every other channel holds
// constants and dout = 0, so its gradients must come out exactly zero and its dB, dC
// contributions vanish. The checks read the whole outputs back in slices.
TEST(ScanCuda, Bf16OffsetsPast32Bits) {
  if (const std::string why = no_gpu_reason(); !why.empty())
    GTEST_SKIP() << "no CUDA device: " << why;
  const int d_inner = 16384, sample = 64, d_lo = d_inner - sample;
  const int64_t seqlen = 132001;  // 132001 * 16384 > 2^31
  const ScanShape s{1, seqlen, d_inner, kN, d_inner, 2 * kN};
  const Problem p = make_problem(1, seqlen, sample, 0, 42, true);

  const size_t td = static_cast<size_t>(seqlen) * d_inner;
  DeviceBuffer<bf16> u(td), delta(td), z(td), dout(td), out(td), du(td), ddelta(td), dz(td);
  DeviceBuffer<bf16> bc(seqlen * 2 * kN), dbc(seqlen * 2 * kN);
  DeviceBuffer<float> A(d_inner * kN), D(d_inner), bias(d_inner), dA(d_inner * kN), dD(d_inner),
      dbias(d_inner), last(d_inner * kN);
  DeviceBuffer<bf16> ckpt(mamba::cuda::scan_checkpoint_bytes(s, mamba::ActType::BF16) /
                          sizeof(bf16));
  DeviceBuffer<char> ws(mamba::cuda::scan_workspace_bytes(s));
  // Constants everywhere (bf16 0x3F3F = 0.746, 0xBFBF = -1.49), then the sampled columns.
  ck(cudaMemset(u.get(), 0x3F, td * 2), "memset"), ck(cudaMemset(z.get(), 0x3F, td * 2), "memset");
  ck(cudaMemset(delta.get(), 0xBF, td * 2), "memset");
  ck(cudaMemset(dout.get(), 0, td * 2), "memset");
  auto put_columns = [&](DeviceBuffer<bf16>& dst, const std::vector<float>& src, int64_t src_ld,
                         int64_t src_col) {
    const std::vector<float> cols = columns(src, seqlen, src_ld, src_col, sample);
    std::vector<bf16> tmp(cols.size());
    std::transform(cols.begin(), cols.end(), tmp.begin(), from_float<bf16>);
    ck(cudaMemcpy2D(dst.get() + d_lo, d_inner * 2, tmp.data(), sample * 2, sample * 2, seqlen,
                    cudaMemcpyHostToDevice),
       "cudaMemcpy2D");
  };
  put_columns(u, p.u, sample, 0), put_columns(delta, p.delta, sample, 0);
  put_columns(z, p.xz, 2 * sample, sample), put_columns(dout, p.dout, sample, 0);
  upload(bc, p.xbc);
  std::vector<float> A_h(d_inner * kN, -1.f), D_h(d_inner, 1.f), bias_h(d_inner, -3.f);
  std::vector<float> dA_h(d_inner * kN, 0.5f), dD_h(d_inner, 0.5f), dbias_h(d_inner, 0.5f);
  std::copy(p.A.begin(), p.A.end(), A_h.begin() + d_lo * kN);
  std::copy(p.D.begin(), p.D.end(), D_h.begin() + d_lo);
  std::copy(p.bias.begin(), p.bias.end(), bias_h.begin() + d_lo);
  std::copy(p.dA0.begin(), p.dA0.end(), dA_h.begin() + d_lo * kN);
  std::copy(p.dD0.begin(), p.dD0.end(), dD_h.begin() + d_lo);
  std::copy(p.dbias0.begin(), p.dbias0.end(), dbias_h.begin() + d_lo);
  upload(A, A_h), upload(D, D_h), upload(bias, bias_h);
  upload(dA, dA_h), upload(dD, dD_h), upload(dbias, dbias_h);
  for (auto* b : {&out, &du, &ddelta, &dz, &dbc}) b->poison();
  last.poison(), ckpt.poison(), ws.poison();

  const ScanInputs in = scan_inputs(u.get(), delta.get(), bc.get(), bc.get() + kN, z.get(), A.get(),
                                    D.get(), bias.get());
  mamba::cuda::selective_scan_forward(s, in, act(out.get()), last.get(), ckpt.get(), ws.get(),
                                      nullptr);
  mamba::cuda::selective_scan_backward(s, in, act(dout.get()), ckpt.get(),
                                       scan_grads(du.get(), ddelta.get(), dbc.get(), dbc.get() + kN,
                                                  dz.get(), dA.get(), dD.get(), dbias.get()),
                                       ws.get(), nullptr);
  ck(cudaDeviceSynchronize(), "scan");

  // Sampled columns against the CPU.
  const Results want = cpu_reference(p);
  auto get_columns = [&](const DeviceBuffer<bf16>& src) {
    std::vector<bf16> tmp(static_cast<size_t>(seqlen) * sample);
    ck(cudaMemcpy2D(tmp.data(), sample * 2, src.get() + d_lo, d_inner * 2, sample * 2, seqlen,
                    cudaMemcpyDeviceToHost),
       "cudaMemcpy2D");
    std::vector<float> outv(tmp.size());
    std::transform(tmp.begin(), tmp.end(), outv.begin(), [](bf16 x) { return to_float(x); });
    return outv;
  };
  auto tail = [&](const std::vector<float>& v, int per_channel) {
    return std::vector<float>(v.end() - sample * per_channel, v.end());
  };
  expect_close("out", get_columns(out), want.out, 4e-3);
  expect_close("du", get_columns(du), want.du, 4e-3);
  expect_close("ddelta", get_columns(ddelta), want.ddelta, 4e-3);
  expect_close("dz", get_columns(dz), want.dz, 4e-3);
  const std::vector<float> dbc_h = download(dbc);
  expect_close("dB", columns(dbc_h, seqlen, 2 * kN, 0, kN), want.dB, 4e-3);
  expect_close("dC", columns(dbc_h, seqlen, 2 * kN, kN, kN), want.dC, 4e-3);
  expect_close("last_state", tail(download(last), kN), want.last_state, 1e-5);
  const std::vector<float> dA_g = download(dA), dD_g = download(dD), dbias_g = download(dbias);
  expect_close("dA", tail(dA_g, kN), want.dA, 2e-3);
  expect_close("dD", tail(dD_g, 1), want.dD, 2e-3);
  expect_close("ddelta_bias", tail(dbias_g, 1), want.dbias, 2e-3);
  EXPECT_TRUE(std::all_of(dA_g.begin(), dA_g.begin() + d_lo * kN, [](float x) {
    return x == 0.5f;
  })) << "dA changed for channels with zero dout";

  // Everything else, a slice of rows at a time, on the raw bf16 bits: out finite, gradients
  // exactly zero.
  const int64_t rows = 4096;
  std::vector<uint16_t> bits(rows * d_inner);
  for (auto [name, buf, zero] : {std::tuple{"out", &out, false},
                                 {"du", &du, true},
                                 {"ddelta", &ddelta, true},
                                 {"dz", &dz, true}}) {
    int64_t bad = 0;
    for (int64_t r0 = 0; r0 < seqlen; r0 += rows) {
      const int64_t nrows = std::min(rows, seqlen - r0);
      ck(cudaMemcpy(bits.data(), buf->get() + r0 * d_inner, nrows * d_inner * 2,
                    cudaMemcpyDeviceToHost),
         "download");
      for (int64_t r = 0; r < nrows; ++r) {
        const uint16_t* row = bits.data() + r * d_inner;
        for (int d = 0; d < d_inner; ++d) {
          const bool finite = (row[d] & 0x7F80) != 0x7F80;
          const bool is_zero = (row[d] & 0x7FFF) == 0;
          bad += !finite || (zero && d < d_lo && !is_zero);
        }
      }
    }
    EXPECT_EQ(bad, 0) << name << ": elements unwritten, not finite or not zero where they must be";
  }
}

}  // namespace
