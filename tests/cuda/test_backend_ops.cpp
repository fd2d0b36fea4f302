// The CUDA backend against the CPU backend (the oracle), op by op through the Backend interface:
// the same random inputs go to both, and each output is compared by its norm-wise relative error
// ||gpu - cpu|| / ||cpu||. Every output buffer is poisoned with NaN (all bits set) first, so an
// element the GPU leaves unwritten fails the comparison; where an output has a row stride wider
// than its rows, the gap must still hold the poison afterwards. Every backward op runs twice on
// the GPU and must give bit-identical results.
//
// Both CUDA modes run (the test parameter). Tolerances:
//   fp32 mode: outputs 1e-5, gradients 1e-4 (order of the sums, fast-math exp);
//   bf16 mode: activation inputs are rounded to bf16 on the host, so both backends see the same
//     values; outputs stored in bf16 carry one rounding (2^-9 relative, ~1.5e-3 RMS) and
//     gradients computed from bf16 intermediates (dlogits) a little more: 1e-2. Outputs the GPU
//     keeps in fp32 are held to the fp32 figures, but for the LM head's loss, formed from bf16
//     logits: 1e-4.
// Each comparison prints its error ("[err] ..."), which docs/cuda_backend_notes.md records.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "../error_of.h"
#include "kernels/backend.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/skinny_gemm.h"

namespace mamba {
namespace {

constexpr double kOutTol = 1e-5;
constexpr double kGradTol = 1e-4;
constexpr double kBf16Tol = 1e-2;

// ---------------------------------------------------------------- host-side helpers

uint16_t bf16_bits(float f) {  // round to nearest even
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
float from_bf16_bits(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
float round_bf16(float f) {
  return from_bf16_bits(bf16_bits(f));
}

std::vector<float> uniform(size_t n, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// ||got - want|| / ||want||; infinite when got holds a NaN or an infinity.
double rel_error(const std::vector<float>& got, const std::vector<float>& want) {
  if (got.size() != want.size()) return INFINITY;
  double diff = 0.0, ref = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    const double d = static_cast<double>(got[i]) - want[i];
    diff += d * d;
    ref += static_cast<double>(want[i]) * want[i];
  }
  return ref > 0.0 ? std::sqrt(diff / ref) : std::sqrt(diff);
}

// Columns [c0, c0 + width) of a [rows, ld] matrix, densely packed.
std::vector<float> columns(const std::vector<float>& m, int64_t rows, int64_t ld, int64_t c0,
                           int64_t width) {
  std::vector<float> out(rows * width);
  for (int64_t r = 0; r < rows; ++r) {
    std::copy_n(m.begin() + r * ld + c0, width, out.begin() + r * width);
  }
  return out;
}

bool all_nan(const std::vector<float>& v) {
  return std::all_of(v.begin(), v.end(), [](float x) { return std::isnan(x); });
}

void expect_close(const std::string& what, const std::vector<float>& got,
                  const std::vector<float>& want, double tol) {
  const double err = rel_error(got, want);
  std::printf("[err] %-58s %.2e (tol %.0e)\n", what.c_str(), err, tol);
  EXPECT_LE(err, tol) << what;
}

void expect_same_bits(const std::string& what, const std::vector<float>& a,
                      const std::vector<float>& b) {
  ASSERT_EQ(a.size(), b.size()) << what;
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0)
      << what << ": two runs on the same inputs differ";
}

// ---------------------------------------------------------------- buffers on a backend

// Device memory of one backend, released with the object.
class Buffer {
 public:
  Buffer(Backend& be, size_t bytes, ActType type = ActType::F32)
      : be_(&be), p_(be.allocate(bytes)), type_(type) {}
  ~Buffer() {
    if (p_) be_->release(p_);
  }
  Buffer(Buffer&& o) noexcept : be_(o.be_), p_(std::exchange(o.p_, nullptr)), type_(o.type_) {}
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer& operator=(Buffer&&) = delete;

  void* get() const { return p_; }
  float* f32() const { return static_cast<float*>(p_); }
  int32_t* i32() const { return static_cast<int32_t*>(p_); }
  Act act(int64_t offset = 0) const { return Act{p_, type_}.at(offset); }  // from element offset
  ActType type() const { return type_; }

 private:
  Backend* be_;
  void* p_;
  ActType type_;
};

Buffer f32_buffer(Backend& be, const std::vector<float>& host) {
  Buffer b(be, host.size() * sizeof(float));
  be.upload(b.get(), host.data(), host.size() * sizeof(float));
  return b;
}

Buffer i32_buffer(Backend& be, const std::vector<int32_t>& host) {
  Buffer b(be, host.size() * sizeof(int32_t));
  be.upload(b.get(), host.data(), host.size() * sizeof(int32_t));
  return b;
}

// Activations in the backend's type (host values already rounded where it is bf16).
Buffer act_buffer(Backend& be, const std::vector<float>& host) {
  if (be.act_type() == ActType::F32) return f32_buffer(be, host);
  std::vector<uint16_t> bits(host.size());
  std::transform(host.begin(), host.end(), bits.begin(), bf16_bits);
  Buffer b(be, bits.size() * sizeof(uint16_t), ActType::BF16);
  be.upload(b.get(), bits.data(), bits.size() * sizeof(uint16_t));
  return b;
}

// n elements of `type`, all bits set: NaN in fp32 and in bf16.
Buffer poisoned(Backend& be, size_t n, ActType type) {
  const std::vector<unsigned char> ones(n * type_bytes(type), 0xFF);
  Buffer b(be, ones.size(), type);
  be.upload(b.get(), ones.data(), ones.size());
  return b;
}
Buffer poisoned_f32(Backend& be, size_t n) {
  return poisoned(be, n, ActType::F32);
}
Buffer poisoned_act(Backend& be, size_t n) {
  return poisoned(be, n, be.act_type());
}

std::vector<float> read_f32(Backend& be, const Buffer& b, size_t n) {
  std::vector<float> host(n);
  be.download(host.data(), b.get(), n * sizeof(float));
  return host;
}

std::vector<float> read_act(Backend& be, const Buffer& b, size_t n) {
  if (b.type() == ActType::F32) return read_f32(be, b, n);
  std::vector<uint16_t> bits(n);
  be.download(bits.data(), b.get(), n * sizeof(uint16_t));
  std::vector<float> host(n);
  std::transform(bits.begin(), bits.end(), host.begin(), from_bf16_bits);
  return host;
}

// The LM head's loss of normed [T, C] against the targets, without gradients or logits.
LmHeadLoss lm_head_loss_only(const Buffer& normed, const Buffer& E, const Buffer& targets,
                             int64_t T, int C, int Vp) {
  LmHeadLoss op;
  op.normed = normed.act();
  op.E = E.act();
  op.targets = targets.i32();
  op.T = T;
  op.C = C;
  op.Vp = Vp;
  return op;
}

// ---------------------------------------------------------------- the fixture

// Parameter: the CUDA backend's mode (false: fp32 activations, true: bf16).
class CudaVsCpu : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device: cuda_device_count() is 0";
    cpu_ = make_cpu_backend();
    gpu_ = make_cuda_backend(0, GetParam());
  }

  bool bf16() const { return GetParam(); }
  // Activation inputs: rounded to bf16 in bf16 mode so that both backends see the same values.
  std::vector<float> act_values(size_t n, uint64_t seed, float lo = -1.0f, float hi = 1.0f) const {
    std::vector<float> v = uniform(n, seed, lo, hi);
    if (bf16()) std::transform(v.begin(), v.end(), v.begin(), round_bf16);
    return v;
  }
  // Tolerance of an output stored in the activation type.
  double act_tol(double fp32_tol) const { return bf16() ? kBf16Tol : fp32_tol; }
  // The scan's fp32 parameter gradients: with bf16 activations its backward recomputes the
  // states from bf16 checkpoints.
  double scan_param_tol() const { return bf16() ? 2e-3 : kGradTol; }
  std::string label(const std::string& what) const {
    return std::string(bf16() ? "bf16 " : "fp32 ") + what;
  }

  std::unique_ptr<Backend> cpu_, gpu_;
};

INSTANTIATE_TEST_SUITE_P(Modes, CudaVsCpu, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "bf16" : "fp32";
                         });

// ---------------------------------------------------------------- embedding

TEST_P(CudaVsCpu, Embedding) {
  struct Shape {
    int64_t T;
    int C, vocab;
  };
  for (const Shape sh : {Shape{37, 64, 50}, Shape{1000, 96, 300}, Shape{4099, 48, 7}}) {
    const std::string tag = "T=" + std::to_string(sh.T) + " C=" + std::to_string(sh.C) +
                            " V=" + std::to_string(sh.vocab);
    // Skewed ids (u^3), so some rows collect many tokens, as frequent words do.
    std::vector<int32_t> ids(sh.T);
    const std::vector<float> u = uniform(sh.T, 1, 0.0f, 1.0f);
    for (int64_t t = 0; t < sh.T; ++t) {
      ids[t] = std::min(sh.vocab - 1, static_cast<int>(sh.vocab * u[t] * u[t] * u[t]));
    }
    const auto table = uniform(static_cast<size_t>(sh.vocab) * sh.C, 2);
    const auto dout = uniform(sh.T * sh.C, 3);
    const auto dtable0 = uniform(static_cast<size_t>(sh.vocab) * sh.C, 4);

    auto run = [&](Backend& be) {
      Buffer d_ids = i32_buffer(be, ids), d_table = f32_buffer(be, table);
      Buffer out = poisoned_f32(be, sh.T * sh.C);
      be.embedding_forward({d_ids.i32(), d_table.f32(), out.f32(), sh.T, sh.C});
      Buffer d_dout = f32_buffer(be, dout), dtable = f32_buffer(be, dtable0);
      be.embedding_backward({d_ids.i32(), d_dout.f32(), dtable.f32(), sh.T, sh.C});
      return std::make_pair(read_f32(be, out, sh.T * sh.C),
                            read_f32(be, dtable, static_cast<size_t>(sh.vocab) * sh.C));
    };
    const auto want = run(*cpu_);
    const auto got = run(*gpu_);
    const auto again = run(*gpu_);
    expect_close(label("embedding_forward out " + tag), got.first, want.first, 0.0);
    expect_close(label("embedding_backward dtable " + tag), got.second, want.second, kGradTol);
    expect_same_bits("embedding_backward dtable " + tag, got.second, again.second);
  }
}

// ---------------------------------------------------------------- rmsnorm

TEST_P(CudaVsCpu, ResidualRmsnormForward) {
  // Up to 64 rows and C <= 4096 take the block-per-row kernel (decoding), the others a warp per
  // row, 4 channels per lane at a time when C % 4 == 0 (one at a time for C = 301); C = 5000 with
  // few rows falls back to the warp per row.
  for (const auto& shape : {std::pair<int64_t, int>{37, 64},
                            {1000, 768},
                            {3001, 100},
                            {500, 301},
                            {1, 2048},
                            {16, 4096},
                            {5, 1000},
                            {2, 5000}}) {
    const int64_t T = shape.first;
    const int C = shape.second;
    for (const bool with_residual : {false, true}) {
      const std::string tag = "T=" + std::to_string(T) + " C=" + std::to_string(C) +
                              (with_residual ? " +residual" : "");
      const auto hidden = uniform(T * C, 10, -2.0f, 2.0f);
      const auto residual = uniform(T * C, 11, -2.0f, 2.0f);
      const auto weight = uniform(C, 12, 0.5f, 1.5f);
      // write_residual false: the recomputation in backward, which leaves residual_out alone.
      auto run = [&](Backend& be, bool write_residual = true) {
        Buffer h = f32_buffer(be, hidden), r = f32_buffer(be, residual), w = f32_buffer(be, weight);
        Buffer r_out = poisoned_f32(be, T * C), normed = poisoned_act(be, T * C),
               rstd = poisoned_f32(be, T);
        RmsNormForward op;
        op.hidden = h.f32();
        op.residual_in = with_residual ? r.f32() : nullptr;
        op.weight = w.f32();
        op.residual_out = write_residual ? r_out.f32() : nullptr;
        op.normed = normed.act();
        op.rstd = rstd.f32();
        op.T = T;
        op.C = C;
        op.eps = 1e-5f;
        be.residual_rmsnorm_forward(op);
        return std::vector<std::vector<float>>{read_f32(be, r_out, T * C),
                                               read_act(be, normed, T * C), read_f32(be, rstd, T)};
      };
      const auto want = run(*cpu_);
      const auto got = run(*gpu_);
      expect_close(label("rmsnorm_forward residual_out " + tag), got[0], want[0], kOutTol);
      expect_close(label("rmsnorm_forward normed " + tag), got[1], want[1], act_tol(kOutTol));
      expect_close(label("rmsnorm_forward rstd " + tag), got[2], want[2], kOutTol);
      const auto recomputed = run(*gpu_, false);
      EXPECT_TRUE(all_nan(recomputed[0])) << "residual_out was written " << tag;
      expect_same_bits("rmsnorm_forward normed without residual_out " + tag, recomputed[1], got[1]);
      expect_same_bits("rmsnorm_forward rstd without residual_out " + tag, recomputed[2], got[2]);
    }
  }
}

TEST_P(CudaVsCpu, RmsnormBackward) {
  // The CUDA kernels: a block per tile of 16 rows (a dweight partial each), a warp per row. With
  // C % 4 == 0 and C <= 2048 (bf16) or 1536 (fp32) the row stays in registers, in N = 2, 4, 6, 8,
  // 12 or 16 (bf16 only) chunks of 32 lanes x 4 channels, the smallest N that holds C: N = 2 (C =
  // 4, 64, 100, 132, 200), 4 (384), 6 (768, the largest two blocks an SM take in bf16; 516 leaves
  // the sixth chunk empty), 8 (1024, its largest C), 12 (1536, its largest C; 1152 leaves three
  // chunks empty), 16 in bf16 (2048; 1540 leaves three chunks empty). Above (2052, 2560, and in
  // fp32 1540 and 2048) the row is read twice, 4 channels at a time; with C % 4 != 0 one at a
  // time (301, 7, 5, 130). A last tile the rows do not fill (T = 37, 1000, 3001, 129, 500, 45,
  // 203, 100, 3, 40, 31, 50, 17, 33, 9), one row (T = 1 with C = 768, 5, 1536), whole tiles only
  // (T = 64, 16); a last chunk the channels do not fill (C = 132, 200, 301, 130, 516, 1540, 2052)
  // or a single chunk not filled (C = 4, 64, 100, 7, 5).
  const std::pair<int64_t, int> shapes[] = {
      {37, 64},   {1000, 768}, {3001, 100}, {129, 2560}, {500, 301}, {1, 768}, {1, 5},    {45, 7},
      {203, 200}, {100, 2048}, {64, 2048},  {16, 130},   {129, 132}, {3, 4},   {40, 384}, {16, 516},
      {31, 1024}, {50, 1152},  {1, 1536},   {17, 1536},  {33, 1540}, {9, 2052}};
  for (const auto& shape : shapes) {
    const int64_t T = shape.first;
    const int C = shape.second;
    const std::string tag = "T=" + std::to_string(T) + " C=" + std::to_string(C);
    const auto dnormed = act_values(T * C, 20);
    const auto x = uniform(T * C, 21, -2.0f, 2.0f);
    const auto rstd = uniform(T, 22, 0.5f, 2.0f);
    const auto weight = uniform(C, 23, 0.5f, 1.5f);
    const auto dresidual0 = uniform(T * C, 24);
    const auto dweight0 = uniform(C, 25);
    struct Result {
      std::vector<float> dres, dweight, dres_act;
    };
    // with_copy: dresidual_act asked for too, which must change nothing else.
    auto run = [&](Backend& be, bool with_copy) {
      Buffer g = act_buffer(be, dnormed), xb = f32_buffer(be, x), r = f32_buffer(be, rstd),
             w = f32_buffer(be, weight);
      Buffer dres = f32_buffer(be, dresidual0), dw = f32_buffer(be, dweight0);
      Buffer copy = poisoned_act(be, T * C);
      RmsNormBackward op;
      op.dnormed = g.act();
      op.residual_out = xb.f32();
      op.rstd = r.f32();
      op.weight = w.f32();
      op.dresidual = dres.f32();
      op.dweight = dw.f32();
      if (with_copy) op.dresidual_act = copy.act();
      op.T = T;
      op.C = C;
      be.rmsnorm_backward(op);
      return Result{read_f32(be, dres, T * C), read_f32(be, dw, C),
                    with_copy ? read_act(be, copy, T * C) : std::vector<float>{}};
    };
    const Result want = run(*cpu_, true);
    const Result got = run(*gpu_, true);
    const Result again = run(*gpu_, false);
    expect_close(label("rmsnorm_backward dresidual " + tag), got.dres, want.dres, kGradTol);
    expect_close(label("rmsnorm_backward dweight " + tag), got.dweight, want.dweight, kGradTol);
    expect_same_bits("rmsnorm_backward dresidual " + tag, got.dres, again.dres);
    expect_same_bits("rmsnorm_backward dweight " + tag, got.dweight, again.dweight);
    for (int64_t i = 0; i < T * C; ++i) {
      ASSERT_EQ(want.dres_act[i], want.dres[i]) << "CPU rmsnorm_backward dresidual_act at " << i;
      const float expected = bf16() ? round_bf16(got.dres[i]) : got.dres[i];
      ASSERT_EQ(got.dres_act[i], expected)
          << label("rmsnorm_backward dresidual_act") << " at " << i;
    }
  }
}

// ---------------------------------------------------------------- linear (cuBLASLt)

TEST_P(CudaVsCpu, Linear) {
  struct Shape {
    int64_t T;
    int in, out;
    int64_t ld_inp, ld_out;  // ld_out is also ld_dout, ld_inp also ld_dinp
  };
  // The last shape has odd sizes: rows start at 2-byte alignment in bf16.
  for (const Shape sh :
       {Shape{37, 64, 96, 64, 96}, Shape{1000, 200, 72, 232, 80}, Shape{513, 33, 17, 40, 21}}) {
    const std::string tag = "T=" + std::to_string(sh.T) + " in=" + std::to_string(sh.in) +
                            " out=" + std::to_string(sh.out) + " ld=" + std::to_string(sh.ld_inp) +
                            "/" + std::to_string(sh.ld_out);
    const auto inp = act_values(sh.T * sh.ld_inp, 30);
    const auto weight = act_values(static_cast<size_t>(sh.out) * sh.in, 31);
    const auto dout = act_values(sh.T * sh.ld_out, 32);
    const auto dinp0 = act_values(sh.T * sh.ld_inp, 33);
    const auto dweight0 = uniform(static_cast<size_t>(sh.out) * sh.in, 34);
    const size_t n_out = sh.T * sh.ld_out, n_in = sh.T * sh.ld_inp;

    struct Result {
      std::vector<float> out, out_f32, dinp_set, dinp_acc, dweight;
    };
    auto run = [&](Backend& be) {
      Buffer x = act_buffer(be, inp), w = act_buffer(be, weight), g = act_buffer(be, dout);
      Buffer out = poisoned_act(be, n_out), out_f32 = poisoned_f32(be, n_out);
      LinearForward fwd;
      fwd.inp = x.act();
      fwd.ld_inp = sh.ld_inp;
      fwd.weight = w.act();
      fwd.out = out.act();
      fwd.ld_out = sh.ld_out;
      fwd.T = sh.T;
      fwd.in_dim = sh.in;
      fwd.out_dim = sh.out;
      be.linear_forward(fwd);
      fwd.out = out_f32.act();
      be.linear_forward(fwd);
      Buffer dinp_set = poisoned_act(be, n_in), dinp_acc = act_buffer(be, dinp0);
      Buffer dweight = f32_buffer(be, dweight0);
      LinearBackward bwd;
      bwd.dout = g.act();
      bwd.ld_dout = sh.ld_out;
      bwd.inp = x.act();
      bwd.ld_inp = sh.ld_inp;
      bwd.weight = w.act();
      bwd.dinp = dinp_set.act();
      bwd.ld_dinp = sh.ld_inp;
      bwd.accumulate_dinp = false;
      bwd.dweight = dweight.f32();
      bwd.T = sh.T;
      bwd.in_dim = sh.in;
      bwd.out_dim = sh.out;
      be.linear_backward(bwd);
      bwd.dinp = dinp_acc.act();
      bwd.accumulate_dinp = true;
      be.linear_backward(bwd);
      return Result{read_act(be, out, n_out), read_f32(be, out_f32, n_out),
                    read_act(be, dinp_set, n_in), read_act(be, dinp_acc, n_in),
                    read_f32(be, dweight, static_cast<size_t>(sh.out) * sh.in)};
    };
    const Result want = run(*cpu_);
    const Result got = run(*gpu_);
    const Result again = run(*gpu_);
    auto rows_out = [&](const std::vector<float>& m) {
      return columns(m, sh.T, sh.ld_out, 0, sh.out);
    };
    auto rows_in = [&](const std::vector<float>& m) {
      return columns(m, sh.T, sh.ld_inp, 0, sh.in);
    };
    expect_close(label("linear_forward out " + tag), rows_out(got.out), rows_out(want.out),
                 act_tol(kOutTol));
    expect_close(label("linear_forward fp32 out " + tag), rows_out(got.out_f32),
                 rows_out(want.out_f32), kOutTol);
    expect_close(label("linear_backward dinp (=) " + tag), rows_in(got.dinp_set),
                 rows_in(want.dinp_set), act_tol(kGradTol));
    expect_close(label("linear_backward dinp (+=) " + tag), rows_in(got.dinp_acc),
                 rows_in(want.dinp_acc), act_tol(kGradTol));
    expect_close(label("linear_backward dweight (2x +=) " + tag), got.dweight, want.dweight,
                 kGradTol);
    if (sh.ld_out > sh.out) {
      EXPECT_TRUE(all_nan(columns(got.out, sh.T, sh.ld_out, sh.out, sh.ld_out - sh.out)))
          << "linear_forward wrote past out_dim " << tag;
    }
    if (sh.ld_inp > sh.in) {
      EXPECT_TRUE(all_nan(columns(got.dinp_set, sh.T, sh.ld_inp, sh.in, sh.ld_inp - sh.in)))
          << "linear_backward wrote past in_dim " << tag;
    }
    expect_same_bits("linear_backward dinp " + tag, got.dinp_acc, again.dinp_acc);
    expect_same_bits("linear_backward dweight " + tag, got.dweight, again.dweight);
  }
}

// A few rows (decoding): bf16 goes to the skinny kernel (kernels/cuda/skinny_gemm.h) where its
// alignment rules hold, and to cuBLASLt where they do not; fp32 always to cuBLASLt. Shapes cover
// one and two 8-row tiles, partial tiles of features, in_dim tails short of a 128-wide chunk, one
// warp per block, many warps sharing in_dim, and few features with in_dim split over a cluster.
TEST_P(CudaVsCpu, LinearFewRows) {
  struct Shape {
    int64_t T;
    int in, out;
    int64_t ld_inp, ld_out;
    int64_t inp_offset;  // elements: a misaligned slice must fall back, not misread
    bool skinny;         // the bf16 path expected
  };
  const Shape shapes[] = {
      {1, 64, 37, 64, 37, 0, true},        {5, 200, 100, 208, 103, 0, true},
      {16, 2056, 100, 2056, 100, 0, true}, {9, 768, 3000, 776, 3001, 0, true},
      {16, 128, 4096, 160, 4096, 0, true}, {16, 4096, 160, 4096, 168, 0, true},
      {1, 1536, 80, 1536, 80, 0, true},    {3, 33, 21, 40, 21, 0, false},
      {4, 128, 64, 136, 64, 1, false},     {17, 64, 48, 64, 48, 0, false},
  };
  for (const Shape& sh : shapes) {
    const std::string tag = "T=" + std::to_string(sh.T) + " in=" + std::to_string(sh.in) +
                            " out=" + std::to_string(sh.out) + " ld=" + std::to_string(sh.ld_inp) +
                            "/" + std::to_string(sh.ld_out) + " +" + std::to_string(sh.inp_offset);
    const auto inp = act_values(sh.inp_offset + sh.T * sh.ld_inp, 40);
    const auto weight = act_values(static_cast<size_t>(sh.out) * sh.in, 41);
    const size_t n_out = sh.T * sh.ld_out;
    struct Result {
      std::vector<float> out, out_f32;
    };
    // rows: how many of the T rows to multiply (all, or the first alone).
    auto run = [&](Backend& be, int64_t rows) {
      Buffer x = act_buffer(be, inp), w = act_buffer(be, weight);
      Buffer out = poisoned_act(be, n_out), out_f32 = poisoned_f32(be, n_out);
      LinearForward fwd;
      fwd.inp = x.act(sh.inp_offset);
      fwd.ld_inp = sh.ld_inp;
      fwd.weight = w.act();
      fwd.out = out.act();
      fwd.ld_out = sh.ld_out;
      fwd.T = rows;
      fwd.in_dim = sh.in;
      fwd.out_dim = sh.out;
      if (&be == gpu_.get() && bf16() && rows == sh.T) {
        EXPECT_EQ(cuda::skinny_linear_fits(fwd.inp.data, fwd.ld_inp, fwd.weight.data, rows, sh.in,
                                           sh.out),
                  sh.skinny)
            << tag;
      }
      be.linear_forward(fwd);
      fwd.out = out_f32.act();
      be.linear_forward(fwd);
      return Result{read_act(be, out, n_out), read_f32(be, out_f32, n_out)};
    };
    const Result want = run(*cpu_, sh.T);
    const Result got = run(*gpu_, sh.T);
    const Result again = run(*gpu_, sh.T);
    const Result first = run(*gpu_, 1);
    auto rows_out = [&](const std::vector<float>& m, int64_t rows) {
      return columns(m, rows, sh.ld_out, 0, sh.out);
    };
    expect_close(label("linear_forward few rows out " + tag), rows_out(got.out, sh.T),
                 rows_out(want.out, sh.T), act_tol(kOutTol));
    expect_close(label("linear_forward few rows fp32 out " + tag), rows_out(got.out_f32, sh.T),
                 rows_out(want.out_f32, sh.T), kOutTol);
    if (sh.ld_out > sh.out) {
      EXPECT_TRUE(all_nan(columns(got.out, sh.T, sh.ld_out, sh.out, sh.ld_out - sh.out)))
          << "linear_forward wrote past out_dim " << tag;
      EXPECT_TRUE(all_nan(columns(got.out_f32, sh.T, sh.ld_out, sh.out, sh.ld_out - sh.out)))
          << "linear_forward (fp32 out) wrote past out_dim " << tag;
    }
    expect_same_bits("linear_forward few rows " + tag, got.out_f32, again.out_f32);
    // A sequence's result must not depend on the others decoded beside it.
    if (sh.skinny && bf16()) {
      expect_same_bits("linear_forward row 0 alone vs in the batch " + tag,
                       rows_out(first.out_f32, 1), rows_out(got.out_f32, 1));
    }
    EXPECT_TRUE(all_nan(std::vector<float>(first.out_f32.begin() + sh.ld_out, first.out_f32.end())))
        << "linear_forward with T = 1 wrote past its row " << tag;
  }
  // Called directly with a problem it does not take, the kernel refuses before reading anything.
  EXPECT_THROW(cuda::skinny_linear_forward<float>(nullptr, 21, nullptr, 40, nullptr, 3, 33, 21, 1,
                                                  1, nullptr),
               Error);
  EXPECT_THROW(cuda::skinny_linear_forward<float>(nullptr, 21, nullptr, 40, nullptr, 17, 32, 21, 1,
                                                  1, nullptr),
               Error);
}

// ---------------------------------------------------------------- conv1d + SiLU

TEST_P(CudaVsCpu, Conv1dSilu) {
  struct Shape {
    int batch;
    int64_t seqlen;
    int D, K;
  };
  // The CUDA kernels take tiles of 128 steps (runs of 32 a thread) and 128 channels in bf16 where
  // D is even (two a thread), else 64; rows staged by 16-byte copies where D and ld_x make rows of
  // whole 16 bytes, else one element at a time (D = 42 in bf16, 33). Last tiles the steps do not
  // fill (seqlen 37, 200, 1000, 70, 131, 300, 260), in one tile (37, 70) or after whole ones, with
  // a run cut short (its steps in a loop, not unrolled: 5 at 37, 12 at 300) and runs left empty;
  // channel blocks the channels do not fill (D = 200, 136, 96 in bf16, 40, 42, 33).
  for (const Shape sh :
       {Shape{2, 37, 64, 4}, Shape{3, 200, 96, 4}, Shape{1, 1000, 40, 3}, Shape{2, 70, 42, 3},
        Shape{2, 131, 33, 2}, Shape{2, 300, 200, 4}, Shape{1, 260, 136, 2}}) {
    const std::string tag = "batch=" + std::to_string(sh.batch) +
                            " seqlen=" + std::to_string(sh.seqlen) + " D=" + std::to_string(sh.D) +
                            " K=" + std::to_string(sh.K);
    const int64_t T = sh.batch * sh.seqlen;
    const int64_t ld_x = 2 * sh.D;  // x is the first half of in_proj's [x | z] rows
    const auto x = act_values(T * ld_x, 40, -2.0f, 2.0f);
    const auto weight = uniform(static_cast<size_t>(sh.D) * sh.K, 41, -0.5f, 0.5f);
    const auto bias = uniform(sh.D, 42, -0.5f, 0.5f);
    const auto dout = act_values(T * sh.D, 43);
    const auto dweight0 = uniform(static_cast<size_t>(sh.D) * sh.K, 44);
    const auto dbias0 = uniform(sh.D, 45);
    auto run = [&](Backend& be) {
      Buffer xb = act_buffer(be, x), w = f32_buffer(be, weight), b = f32_buffer(be, bias),
             g = act_buffer(be, dout);
      Buffer out = poisoned_act(be, T * sh.D), dx = poisoned_act(be, T * ld_x);
      Buffer dw = f32_buffer(be, dweight0), db = f32_buffer(be, dbias0);
      const Conv1dShape s{sh.batch, sh.seqlen, sh.D, sh.K, ld_x};
      be.conv1d_silu_forward(s, {xb.act(), w.f32(), b.f32(), out.act()});
      be.conv1d_silu_backward(
          s, {g.act(), xb.act(), w.f32(), b.f32(), dx.act(), dw.f32(), db.f32(), {}});
      return std::vector<std::vector<float>>{
          read_act(be, out, T * sh.D), read_act(be, dx, T * ld_x),
          read_f32(be, dw, static_cast<size_t>(sh.D) * sh.K), read_f32(be, db, sh.D)};
    };
    const auto want = run(*cpu_);
    const auto got = run(*gpu_);
    const auto again = run(*gpu_);
    expect_close(label("conv1d_silu_forward out " + tag), got[0], want[0], act_tol(kOutTol));
    expect_close(label("conv1d_silu_backward dx " + tag), columns(got[1], T, ld_x, 0, sh.D),
                 columns(want[1], T, ld_x, 0, sh.D), act_tol(kGradTol));
    expect_close(label("conv1d_silu_backward dweight " + tag), got[2], want[2], kGradTol);
    expect_close(label("conv1d_silu_backward dbias " + tag), got[3], want[3], kGradTol);
    EXPECT_TRUE(all_nan(columns(got[1], T, ld_x, sh.D, sh.D)))
        << "conv1d_silu_backward wrote into z's half of dx " << tag;
    for (int i = 1; i < 4; ++i) expect_same_bits("conv1d_silu_backward " + tag, got[i], again[i]);
  }
}

// x_proj's input gradient as the conv backward's low-rank term. In bf16 the CUDA kernel adds it to
// the staged dout rows with tensor cores, rounded to bf16 once, as accumulating it into dout first
// would; the oracle is the CPU backward of that sum, formed here in double and rounded. Ranks of
// one, five and six k steps, a's rows padded (ld_a > rank), several tiles with a last one cut
// short (300, 260), one short tile (37), a channel block not filled (D = 136). In fp32 the CUDA
// backend declines the term and refuses it with a one-line error.
TEST_P(CudaVsCpu, Conv1dBackwardWithALowRankTerm) {
  struct Shape {
    int batch;
    int64_t seqlen;
    int D, K, rank;
    int64_t ld_a;
  };
  for (const Shape sh : {Shape{2, 300, 256, 4, 80, 80}, Shape{1, 260, 136, 3, 96, 104},
                         Shape{3, 37, 64, 2, 16, 24}}) {
    const std::string tag = "batch=" + std::to_string(sh.batch) +
                            " seqlen=" + std::to_string(sh.seqlen) + " D=" + std::to_string(sh.D) +
                            " K=" + std::to_string(sh.K) + " rank=" + std::to_string(sh.rank);
    const int64_t T = sh.batch * sh.seqlen, ld_x = 2 * sh.D;
    const auto x = act_values(T * ld_x, 70, -2.0f, 2.0f);
    const auto weight = uniform(static_cast<size_t>(sh.D) * sh.K, 71, -0.5f, 0.5f);
    const auto bias = uniform(sh.D, 72, -0.5f, 0.5f);
    const auto dout = act_values(T * sh.D, 73);
    const auto a = act_values(T * sh.ld_a, 74);
    const auto w_lr = act_values(static_cast<size_t>(sh.rank) * sh.D, 75, -0.2f, 0.2f);
    std::vector<float> total(T * sh.D);
    for (int64_t t = 0; t < T; ++t) {
      for (int d = 0; d < sh.D; ++d) {
        double sum = dout[t * sh.D + d];
        for (int k = 0; k < sh.rank; ++k) sum += double(a[t * sh.ld_a + k]) * w_lr[k * sh.D + d];
        total[t * sh.D + d] = bf16() ? round_bf16(float(sum)) : float(sum);
      }
    }
    const Conv1dShape s{sh.batch, sh.seqlen, sh.D, sh.K, ld_x};
    // The conv backward of g; with the low-rank term where `lowrank`.
    auto run = [&](Backend& be, const std::vector<float>& g, bool lowrank) {
      Buffer xb = act_buffer(be, x), w = f32_buffer(be, weight), b = f32_buffer(be, bias),
             gb = act_buffer(be, g), ab = act_buffer(be, a), wl = act_buffer(be, w_lr);
      Buffer dx = poisoned_act(be, T * ld_x), dw = f32_buffer(be, std::vector<float>(sh.D * sh.K)),
             db = f32_buffer(be, std::vector<float>(sh.D));
      Conv1dBackward op{gb.act(), xb.act(), w.f32(), b.f32(), dx.act(), dw.f32(), db.f32(), {}};
      if (lowrank) op.lowrank = {ab.act(), sh.ld_a, wl.act(), sh.rank};
      if (lowrank && !be.conv_backward_takes_lowrank(s, op)) {
        const std::string message = test::error_of([&] { be.conv1d_silu_backward(s, op); });
        EXPECT_NE(message.find("accumulate it into dout first"), std::string::npos) << message;
        return std::vector<std::vector<float>>{};
      }
      be.conv1d_silu_backward(s, op);
      return std::vector<std::vector<float>>{read_act(be, dx, T * ld_x),
                                             read_f32(be, dw, static_cast<size_t>(sh.D) * sh.K),
                                             read_f32(be, db, sh.D)};
    };
    const auto want = run(*cpu_, total, false);
    const auto got = run(*gpu_, dout, true);
    if (!bf16()) {
      EXPECT_TRUE(got.empty()) << "the fp32 CUDA backward took a low-rank term " << tag;
      continue;
    }
    ASSERT_EQ(got.size(), 3u) << "the bf16 CUDA backward declined a low-rank term " << tag;
    expect_close(label("conv1d lowrank dx " + tag), columns(got[0], T, ld_x, 0, sh.D),
                 columns(want[0], T, ld_x, 0, sh.D), act_tol(kGradTol));
    expect_close(label("conv1d lowrank dweight " + tag), got[1], want[1], kGradTol);
    expect_close(label("conv1d lowrank dbias " + tag), got[2], want[2], kGradTol);
    expect_same_bits("conv1d lowrank dx " + tag, got[0], run(*gpu_, dout, true)[0]);
  }
}

// The CUDA backward reads x and dout while it writes dx: a dx that overlaps either is refused.
TEST_P(CudaVsCpu, Conv1dBackwardRefusesAnOverlappingDx) {
  const Conv1dShape s{1, 40, 16, 4, 32};
  const int64_t T = s.batch * s.seqlen;
  Buffer x = poisoned_act(*gpu_, T * s.ld_x), g = poisoned_act(*gpu_, T * s.D),
         w = f32_buffer(*gpu_, std::vector<float>(s.D * s.K, 0.1f)),
         b = f32_buffer(*gpu_, std::vector<float>(s.D, 0.0f)),
         dw = f32_buffer(*gpu_, std::vector<float>(s.D * s.K, 0.0f)),
         db = f32_buffer(*gpu_, std::vector<float>(s.D, 0.0f));
  for (const Act dx : {x.act(), x.act().at(s.D), g.act()}) {
    const std::string message = test::error_of([&] {
      gpu_->conv1d_silu_backward(s,
                                 {g.act(), x.act(), w.f32(), b.f32(), dx, dw.f32(), db.f32(), {}});
    });
    EXPECT_NE(message.find("dx overlaps x or dout"), std::string::npos) << message;
  }
}

// ---------------------------------------------------------------- the selective scan

// The scan kernels have their own tests (test_scan_cuda.cpp); this checks the backend's wiring:
// strides, the saved checkpoints between forward and backward, the workspace, last_state.
TEST_P(CudaVsCpu, SelectiveScan) {
  constexpr int N = 16;
  constexpr int R = 4;  // dt_rank: B and C sit at columns [R, R + N) and [R + N, R + 2N)
  for (const auto& shape : {std::pair<int, int64_t>{2, 37}, {1, 300}}) {
    const int batch = shape.first;
    const int64_t seqlen = shape.second;
    const int Dn = 64;
    const ScanShape s{batch, seqlen, Dn, N, 2 * Dn, R + 2 * N};
    const std::string tag = "batch=" + std::to_string(batch) + " seqlen=" + std::to_string(seqlen);
    const int64_t T = batch * seqlen;
    const auto u = act_values(T * Dn, 50);
    const auto delta = act_values(T * Dn, 51, -3.0f, 0.5f);
    const auto xz = act_values(T * s.ld_z, 52);  // z is the second half
    const auto bc = act_values(T * s.ld_bc, 53);
    std::vector<float> A = uniform(static_cast<size_t>(Dn) * N, 54, 0.0f, 2.5f);
    for (float& a : A) a = -std::exp(a);
    const auto D = uniform(Dn, 55);
    const auto delta_bias = uniform(Dn, 56, -2.0f, 0.0f);
    const auto dout = act_values(T * Dn, 57);
    const auto dA0 = uniform(static_cast<size_t>(Dn) * N, 58);
    const auto dD0 = uniform(Dn, 59);
    const auto dbias0 = uniform(Dn, 60);

    auto run = [&](Backend& be) {
      Buffer ub = act_buffer(be, u), db = act_buffer(be, delta), xzb = act_buffer(be, xz),
             bcb = act_buffer(be, bc), Ab = f32_buffer(be, A), Db = f32_buffer(be, D),
             biasb = f32_buffer(be, delta_bias), g = act_buffer(be, dout);
      Buffer out = poisoned_act(be, T * Dn), last = poisoned_f32(be, int64_t{batch} * Dn * N);
      Buffer saved(be, be.scan_saved_bytes(s));
      const ScanInputs in{ub.act(),    db.act(), bcb.act(R), bcb.act(R + N),
                          xzb.act(Dn), Ab.f32(), Db.f32(),   biasb.f32()};
      be.selective_scan_forward(s, in, out.act(), last.f32(), saved.get());
      Buffer du = poisoned_act(be, T * Dn), ddelta = poisoned_act(be, T * Dn),
             dxz = poisoned_act(be, T * s.ld_z), dbc = poisoned_act(be, T * s.ld_bc);
      Buffer dA = f32_buffer(be, dA0), dD = f32_buffer(be, dD0), dbias = f32_buffer(be, dbias0);
      Buffer reformed = poisoned_act(be, T * Dn);
      const ScanGrads grads{du.act(), ddelta.act(), dbc.act(R),  dbc.act(R + N), dxz.act(Dn),
                            dA.f32(), dD.f32(),     dbias.f32(), reformed.act()};
      be.selective_scan_backward(s, in, g.act(), saved.get(), grads);
      return std::vector<std::vector<float>>{
          read_act(be, out, T * Dn),     read_f32(be, last, int64_t{batch} * Dn * N),
          read_act(be, du, T * Dn),      read_act(be, ddelta, T * Dn),
          read_act(be, dxz, T * s.ld_z), read_act(be, dbc, T * s.ld_bc),
          read_f32(be, dA, Dn * N),      read_f32(be, dD, Dn),
          read_f32(be, dbias, Dn),       read_act(be, reformed, T * Dn)};
    };
    const auto want = run(*cpu_);
    const auto got = run(*gpu_);
    const auto again = run(*gpu_);
    expect_close(label("scan_forward out " + tag), got[0], want[0], act_tol(kOutTol));
    expect_close(label("scan_forward last_state " + tag), got[1], want[1], kOutTol);
    expect_close(label("scan_backward du " + tag), got[2], want[2], act_tol(kGradTol));
    expect_close(label("scan_backward ddelta " + tag), got[3], want[3], act_tol(kGradTol));
    expect_close(label("scan_backward dz " + tag), columns(got[4], T, s.ld_z, Dn, Dn),
                 columns(want[4], T, s.ld_z, Dn, Dn), act_tol(kGradTol));
    expect_close(label("scan_backward dB " + tag), columns(got[5], T, s.ld_bc, R, N),
                 columns(want[5], T, s.ld_bc, R, N), act_tol(kGradTol));
    expect_close(label("scan_backward dC " + tag), columns(got[5], T, s.ld_bc, R + N, N),
                 columns(want[5], T, s.ld_bc, R + N, N), act_tol(kGradTol));
    expect_close(label("scan_backward dA " + tag), got[6], want[6], scan_param_tol());
    expect_close(label("scan_backward dD " + tag), got[7], want[7], scan_param_tol());
    expect_close(label("scan_backward ddelta_bias " + tag), got[8], want[8], scan_param_tol());
    expect_close(label("scan_backward re-formed out " + tag), got[9], want[0], act_tol(kOutTol));
    EXPECT_TRUE(all_nan(columns(got[4], T, s.ld_z, 0, Dn))) << "dz wrote into x's half " << tag;
    EXPECT_TRUE(all_nan(columns(got[5], T, s.ld_bc, 0, R))) << "dB wrote into dt's columns " << tag;
    for (int i = 2; i < 10; ++i) expect_same_bits("scan_backward " + tag, got[i], again[i]);
  }
}

// ---------------------------------------------------------------- LM head + cross-entropy

TEST_P(CudaVsCpu, LmHeadLoss) {
  struct Shape {
    int64_t T;
    int C, Vp;
  };
  // 3000 tokens over a GPT-NeoX-sized vocabulary (one partial chunk), 9000 tokens over a small
  // one (two full chunks of 4096 and a partial one), a vocabulary of no whole 8-logit groups
  // (the kernel's one-at-a-time path) and one too large for the bf16 backward that stages a row in
  // shared memory (over 65536 logits).
  for (const Shape sh : {Shape{3000, 64, 50280}, Shape{9000, 32, 2000}, Shape{500, 32, 1001},
                         Shape{300, 16, 70000}}) {
    const std::string tag =
        "T=" + std::to_string(sh.T) + " C=" + std::to_string(sh.C) + " Vp=" + std::to_string(sh.Vp);
    const auto normed = act_values(sh.T * sh.C, 70, -2.0f, 2.0f);
    const auto E = act_values(static_cast<size_t>(sh.Vp) * sh.C, 71, -0.5f, 0.5f);
    std::vector<int32_t> targets(sh.T);
    std::mt19937 rng(72);
    for (auto& t : targets) t = static_cast<int32_t>(rng() % (sh.Vp - 3));  // the padding unused
    const auto dE0 = uniform(static_cast<size_t>(sh.Vp) * sh.C, 73, -1e-3f, 1e-3f);
    const float grad_scale = 0.5f;

    struct Result {
      double loss, loss_forward_only;
      std::vector<float> dnormed, dE;
    };
    auto run = [&](Backend& be) {
      Buffer x = act_buffer(be, normed), e = act_buffer(be, E), t = i32_buffer(be, targets);
      Buffer dnormed = poisoned_act(be, sh.T * sh.C), dE = f32_buffer(be, dE0);
      Result r;
      LmHeadLoss op = lm_head_loss_only(x, e, t, sh.T, sh.C, sh.Vp);
      op.grad_scale = grad_scale;
      r.loss_forward_only = be.lm_head_loss(op);
      op.dnormed = dnormed.act();
      op.dE = dE.f32();
      r.loss = be.lm_head_loss(op);
      r.dnormed = read_act(be, dnormed, sh.T * sh.C);
      r.dE = read_f32(be, dE, static_cast<size_t>(sh.Vp) * sh.C);
      return r;
    };
    const Result want = run(*cpu_);
    const Result got = run(*gpu_);
    const Result again = run(*gpu_);
    // In bf16 mode the logits are bf16 (fp32-accumulated, rounded once): each carries an error of
    // up to 2^-9 relative, unbiased, so the mean loss moves by ~1e-5 relative here (a host
    // simulation of these two shapes, with other random values, gives 4e-6 and 9e-6). fp32 mode
    // keeps kOutTol.
    expect_close(label("lm_head_loss loss " + tag), {static_cast<float>(got.loss)},
                 {static_cast<float>(want.loss)}, bf16() ? 1e-4 : kOutTol);
    EXPECT_EQ(got.loss, got.loss_forward_only) << "forward-only loss differs " << tag;
    // In bf16 mode dlogits are formed from bf16 logits and rounded to bf16 before the two GEMMs
    // (the host simulation: ~1.2e-3 for dnormed, against ~5e-4 with fp32 logits).
    expect_close(label("lm_head_loss dnormed " + tag), got.dnormed, want.dnormed,
                 act_tol(kGradTol));
    expect_close(label("lm_head_loss dE " + tag), got.dE, want.dE, act_tol(kGradTol));
    EXPECT_EQ(got.loss, again.loss) << "two runs give different losses " << tag;
    expect_same_bits("lm_head_loss dnormed " + tag, got.dnormed, again.dnormed);
    expect_same_bits("lm_head_loss dE " + tag, got.dE, again.dE);
  }
}

TEST_P(CudaVsCpu, LmHeadLogits) {
  const int64_t T = 37;
  const int C = 64, Vp = 1000;
  const auto normed = act_values(T * C, 80, -2.0f, 2.0f);
  const auto E = act_values(static_cast<size_t>(Vp) * C, 81, -0.5f, 0.5f);
  std::vector<int32_t> targets(T);
  for (int64_t t = 0; t < T; ++t) targets[t] = static_cast<int32_t>((t * 7919) % Vp);
  auto run = [&](Backend& be) {
    Buffer x = act_buffer(be, normed), e = act_buffer(be, E), t = i32_buffer(be, targets);
    Buffer logits = poisoned_f32(be, T * Vp);
    LmHeadLoss op = lm_head_loss_only(x, e, t, T, C, Vp);
    op.logits_out = logits.f32();
    const double loss = be.lm_head_loss(op);
    return std::make_pair(loss, read_f32(be, logits, T * Vp));
  };
  const auto want = run(*cpu_);
  const auto got = run(*gpu_);
  expect_close(label("lm_head_loss logits_out T=37 Vp=1000"), got.second, want.second, kOutTol);
  expect_close(label("lm_head_loss loss (with logits_out)"), {static_cast<float>(got.first)},
               {static_cast<float>(want.first)}, kOutTol);
}

// ---------------------------------------------------------------- elementwise, optimizer

TEST_P(CudaVsCpu, Elementwise) {
  const int64_t n = 1000003;
  const auto a = uniform(n, 90, -3.0f, 3.0f);
  const auto b = uniform(n, 91);
  const auto c = uniform(n, 92);
  auto run = [&](Backend& be) {
    Buffer ab = f32_buffer(be, a), bb = f32_buffer(be, b), cb = f32_buffer(be, c);
    Buffer act = poisoned_act(be, n), nexp = poisoned_f32(be, n);
    be.to_act(act.act(), ab.f32(), n);
    be.negative_exp(nexp.f32(), ab.f32(), n);
    be.mul_accumulate(cb.f32(), ab.f32(), bb.f32(), n);
    const double ssq = be.sum_of_squares(ab.f32(), n);
    const double ssq_again = be.sum_of_squares(ab.f32(), n);
    EXPECT_EQ(ssq, ssq_again) << be.name() << ": sum_of_squares is not deterministic";
    return std::make_tuple(read_act(be, act, n), read_f32(be, nexp, n), read_f32(be, cb, n), ssq);
  };
  const auto want = run(*cpu_);
  const auto got = run(*gpu_);
  std::vector<float> act_want = std::get<0>(want);
  if (bf16()) std::transform(act_want.begin(), act_want.end(), act_want.begin(), round_bf16);
  expect_close(label("to_act"), std::get<0>(got), act_want, 0.0);
  expect_close(label("negative_exp"), std::get<1>(got), std::get<1>(want), kOutTol);
  expect_close(label("mul_accumulate"), std::get<2>(got), std::get<2>(want), kOutTol);
  const double ssq_err = std::abs(std::get<3>(got) - std::get<3>(want)) / std::get<3>(want);
  std::printf("[err] %-58s %.2e (tol %.0e)\n", label("sum_of_squares").c_str(), ssq_err, 1e-12);
  EXPECT_LE(ssq_err, 1e-12);
}

// The sum of squares over spans as a ZeRO-1 rank's gradient norm takes it: spans with gaps
// between them, an empty one, one shorter than a block, one longer than the fixed grid covers in
// one sweep, and more spans than a grid's second dimension holds (65535). The CUDA sum over all
// spans equals, bit for bit, its sums of the spans one by one added in order (what the norm was
// before the spans went into one pass), and the CPU's within 1e-12.
TEST_P(CudaVsCpu, SumOfSquaresOverSpans) {
  const int64_t n = 3'000'000;
  const auto x = uniform(n, 93, -2.0f, 2.0f);
  std::vector<Span> spans{{10, 0}, {17, 200}, {1000, 262'144 * 3 + 77}, {1'500'000, 1'000'001}};
  for (int64_t at = 2'600'000; spans.size() < 70'000; at += 5) spans.push_back({at, 1 + at % 4});
  Buffer xb = f32_buffer(*gpu_, x);
  const int count = int(spans.size());
  const double got = gpu_->sum_of_squares_of_spans(xb.f32(), spans.data(), count);
  EXPECT_EQ(got, gpu_->sum_of_squares_of_spans(xb.f32(), spans.data(), count))
      << "not deterministic";
  double one_by_one = 0.0;
  for (const Span& s : spans) one_by_one += gpu_->sum_of_squares(xb.f32() + s.offset, s.count);
  EXPECT_EQ(got, one_by_one);
  const double want = cpu_->sum_of_squares_of_spans(x.data(), spans.data(), count);
  const double err = std::abs(got - want) / want;
  std::printf("[err] %-58s %.2e (tol %.0e)\n", label("sum_of_squares_of_spans").c_str(), err,
              1e-12);
  EXPECT_LE(err, 1e-12);
  EXPECT_EQ(gpu_->sum_of_squares_of_spans(xb.f32(), spans.data(), 0), 0.0);
}

// What both AdamW tests step: the segments and the starting values, and one step of them.
struct AdamWCase {
  std::vector<AdamWSegment> segments{{0, 0, 1, true},
                                     {5, 1, 1000, false},
                                     {1005, 1001, 70001, true},
                                     {71100, 71002, 29000, false},
                                     {100104, 100004, 5003, true}};
  int64_t n = 105107, packed = 105007;
  std::vector<float> param0 = uniform(n, 100), grad = uniform(n, 101, -0.1f, 0.1f),
                     m0 = uniform(packed, 102, -0.01f, 0.01f),
                     v0 = uniform(packed, 103, 0.0f, 1e-4f);

  // The segments' part of param0, packed as the moments are.
  std::vector<float> packed_param0() const {
    std::vector<float> out(packed);
    for (const AdamWSegment& s : segments) {
      std::copy_n(param0.begin() + s.offset, s.count, out.begin() + s.packed);
    }
    return out;
  }
  // Which elements of the flat buffer the segments hold.
  std::vector<bool> covered() const {
    std::vector<bool> out(n, false);
    for (const AdamWSegment& s : segments) std::fill_n(out.begin() + s.offset, s.count, true);
    return out;
  }

  struct Result {
    std::vector<float> p, m, v, copy;
  };
  // One adamw_step on `be` from the starting values, the weights packed or not. The compute copy
  // starts poisoned, or (copy_is_params) is the fp32 params themselves.
  Result step(Backend& be, const AdamWHyper& h, bool packed_params, bool copy_is_params) const {
    Buffer p = f32_buffer(be, packed_params ? packed_param0() : param0), g = f32_buffer(be, grad),
           m = f32_buffer(be, m0), v = f32_buffer(be, v0);
    Buffer copy = poisoned_act(be, n);
    AdamWStep op{p.f32(),
                 g.f32(),
                 m.f32(),
                 v.f32(),
                 copy_is_params ? f32_act(p.f32()) : copy.act(),
                 segments.data(),
                 int(segments.size())};
    op.packed_params = packed_params;
    be.adamw_step(op, h);
    Result r{read_f32(be, p, size_t(packed_params ? packed : n)),
             read_f32(be, m, packed),
             read_f32(be, v, packed),
             {}};
    r.copy = copy_is_params ? r.p : read_act(be, copy, n);
    return r;
  }
};

// x - x0, element by element: the update itself, which a norm over x would hide.
std::vector<float> update_of(const std::vector<float>& x, const std::vector<float>& x0) {
  std::vector<float> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = x[i] - x0[i];
  return out;
}

// One adamw_step over segments as an optimizer passes them: several tensors, with and without
// weight decay, one longer than many blocks, gaps between them (another rank's slices), and moments
// packed; the last segment starts on a multiple of 4 in both buffers (16-byte accesses) and its
// last block ends mid-quad. Outside the segments nothing may change: params keep their values and
// the compute copy its poison. The compute copy must be the updated params in the activation type
// (rounded to nearest even, as to_act does); on the fp32 path it aliases the params.
TEST_P(CudaVsCpu, AdamW) {
  const AdamWCase c;
  const std::vector<bool> covered = c.covered();
  for (const int64_t step : {1, 7}) {
    // Step 7 also clips: the gradients are taken times grad_scale.
    const AdamWHyper h{3e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, step, step == 7 ? 0.37f : 1.0f};
    const AdamWCase::Result want = c.step(*cpu_, h, false, cpu_->act_type() == ActType::F32);
    const AdamWCase::Result got = c.step(*gpu_, h, false, gpu_->act_type() == ActType::F32);
    const std::string tag = " step=" + std::to_string(step);
    expect_close(label("adamw param update" + tag), update_of(got.p, c.param0),
                 update_of(want.p, c.param0), kOutTol);
    expect_close(label("adamw m" + tag), got.m, want.m, kOutTol);
    expect_close(label("adamw v" + tag), got.v, want.v, kOutTol);
    for (int64_t i = 0; i < c.n; ++i) {
      if (covered[i]) {
        const float expected = bf16() ? round_bf16(got.p[i]) : got.p[i];
        ASSERT_EQ(got.copy[i], expected) << label("adamw compute copy") << tag << " at " << i;
      } else {
        ASSERT_EQ(got.p[i], c.param0[i])
            << label("adamw param outside the segments") << " at " << i;
        if (bf16()) {
          ASSERT_TRUE(std::isnan(got.copy[i])) << "compute copy written outside at " << i;
        }
      }
    }
  }
}

// The same step with the weights packed as the moments are (ZeRO-1's master shard,
// AdamWStep::packed_params): the GPU's packed weights and compute copy are the bits of its
// unpacked step, the CPU's packed update agrees within tolerance, and the compute copy keeps its
// poison outside the segments.
TEST_P(CudaVsCpu, AdamWPackedMaster) {
  const AdamWCase c;
  const AdamWHyper h{3e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 3};
  const AdamWCase::Result got = c.step(*gpu_, h, true, false),
                          whole = c.step(*gpu_, h, false, false),
                          want = c.step(*cpu_, h, true, false);
  const std::vector<float> packed0 = c.packed_param0();
  expect_close(label("adamw packed master update"), update_of(got.p, packed0),
               update_of(want.p, packed0), kOutTol);
  for (const AdamWSegment& s : c.segments) {
    for (int64_t j = 0; j < s.count; ++j) {
      ASSERT_EQ(got.p[s.packed + j], whole.p[s.offset + j]) << label("packed master") << " " << j;
      ASSERT_EQ(got.copy[s.offset + j], whole.copy[s.offset + j])
          << label("compute copy from the packed master") << " at " << s.offset + j;
    }
  }
  const std::vector<bool> covered = c.covered();
  for (int64_t i = 0; i < c.n; ++i) {
    if (!covered[i]) {
      ASSERT_TRUE(std::isnan(got.copy[i])) << "compute copy written at " << i;
    }
  }
}

// ---------------------------------------------------------------- recurrent mode

// Several steps in a row, so that the states carry: each step's outputs and the final states.
TEST_P(CudaVsCpu, RecurrentSteps) {
  const int steps = 4, N = 16, rank = 3;
  for (const int batch : {1, 5}) {
    for (const int K : {2, 3, 4}) {
      const int D = 200;  // d_inner: not a multiple of the block
      const int64_t ld_x = 2 * D, ld_bc = rank + 2 * N;
      const std::string tag = "batch=" + std::to_string(batch) + " K=" + std::to_string(K);
      const auto xz = act_values(size_t(steps) * batch * ld_x, 200);
      const auto xdbl = act_values(size_t(steps) * batch * ld_bc, 201);
      const auto delta = act_values(size_t(steps) * batch * D, 202);
      const auto conv_w = uniform(size_t(D) * K, 203, -0.5f, 0.5f);
      const auto conv_b = uniform(D, 204);
      const auto A = uniform(size_t(D) * N, 205, -2.0f, -0.1f);
      const auto Dskip = uniform(D, 206);
      const auto delta_bias = uniform(D, 207, -4.0f, 0.5f);
      const auto conv_state0 = act_values(size_t(batch) * D * (K - 1), 208);
      const auto ssm_state0 = uniform(size_t(batch) * D * N, 209);
      auto run = [&](Backend& be) {
        Buffer w = f32_buffer(be, conv_w), b = f32_buffer(be, conv_b), a = f32_buffer(be, A),
               dskip = f32_buffer(be, Dskip), bias = f32_buffer(be, delta_bias);
        Buffer conv_state = f32_buffer(be, conv_state0), ssm_state = f32_buffer(be, ssm_state0);
        std::vector<std::vector<float>> outs;
        for (int s = 0; s < steps; ++s) {
          Buffer x = act_buffer(be, std::vector<float>(xz.begin() + s * batch * ld_x,
                                                       xz.begin() + (s + 1) * batch * ld_x));
          Buffer bc = act_buffer(be, std::vector<float>(xdbl.begin() + s * batch * ld_bc,
                                                        xdbl.begin() + (s + 1) * batch * ld_bc));
          Buffer dt = act_buffer(be, std::vector<float>(delta.begin() + s * batch * D,
                                                        delta.begin() + (s + 1) * batch * D));
          Buffer xc = poisoned_act(be, size_t(batch) * D), y = poisoned_act(be, size_t(batch) * D);
          Conv1dStep conv;
          conv.x = x.act();
          conv.weight = w.f32();
          conv.bias = b.f32();
          conv.state = conv_state.f32();
          conv.out = xc.act();
          be.conv1d_silu_step({batch, 1, D, K, ld_x}, conv);
          ScanInputs in;
          in.u = xc.act();
          in.delta = dt.act();
          in.B = bc.act(rank);
          in.C = bc.act(rank + N);
          in.z = x.act(D);
          in.A = a.f32();
          in.D = dskip.f32();
          in.delta_bias = bias.f32();
          be.selective_scan_step({batch, 1, D, N, ld_x, ld_bc}, in, y.act(), ssm_state.f32());
          outs.push_back(read_act(be, xc, size_t(batch) * D));
          outs.push_back(read_act(be, y, size_t(batch) * D));
        }
        outs.push_back(read_f32(be, conv_state, size_t(batch) * D * (K - 1)));
        outs.push_back(read_f32(be, ssm_state, size_t(batch) * D * N));
        return outs;
      };
      const auto want = run(*cpu_);
      const auto got = run(*gpu_);
      // In bf16 mode the GPU rounds the conv's output (the scan's u) to bf16 and the CPU does
      // not, so the scan's output and state carry that rounding too.
      for (int s = 0; s < steps; ++s) {
        const std::string at = tag + " step " + std::to_string(s);
        expect_close(label("conv1d_silu_step out " + at), got[2 * s], want[2 * s],
                     act_tol(kOutTol));
        expect_close(label("selective_scan_step out " + at), got[2 * s + 1], want[2 * s + 1],
                     act_tol(kOutTol));
      }
      expect_close(label("conv1d_silu_step state " + tag), got[2 * steps], want[2 * steps], 0.0);
      expect_close(label("selective_scan_step state " + tag), got[2 * steps + 1],
                   want[2 * steps + 1], act_tol(kOutTol));
    }
  }
}

TEST_P(CudaVsCpu, ArgmaxRows) {
  const int rows = 7, n = 50277;
  const int64_t ld = 50280;
  std::vector<float> x = uniform(size_t(rows) * ld, 210, -10.0f, 10.0f);
  // Row 1 ties at two places (the first wins); row 2's best is the last candidate; row 3's best
  // sits in the padding past n, which must be ignored.
  x[1 * ld + 700] = x[1 * ld + 30000] = 50.0f;
  x[2 * ld + n - 1] = 60.0f;
  x[3 * ld + n + 1] = 70.0f;
  auto run = [&](Backend& be) {
    Buffer xb = f32_buffer(be, x), out = poisoned_f32(be, rows);
    be.argmax_rows({xb.f32(), static_cast<int32_t*>(out.get()), rows, n, ld});
    std::vector<int32_t> host(rows);
    be.download(host.data(), out.get(), rows * sizeof(int32_t));
    return host;
  };
  const auto want = run(*cpu_);
  EXPECT_EQ(want[1], 700);
  EXPECT_EQ(want[2], n - 1);
  EXPECT_LT(want[3], n);
  EXPECT_EQ(run(*gpu_), want);
}

// A recorded step replays the same work; a new key records anew; a step that cannot be recorded
// is an error that leaves the backend usable.
TEST_P(CudaVsCpu, StepRecorder) {
  const int64_t n = 1000;
  Buffer x = f32_buffer(*gpu_, std::vector<float>(n, 1.0f));
  Buffer one = f32_buffer(*gpu_, std::vector<float>(n, 1.0f)),
         two = f32_buffer(*gpu_, std::vector<float>(n, 2.0f));
  const auto recorder = gpu_->make_step_recorder();
  auto twice = [&] { gpu_->mul_accumulate(x.f32(), x.f32(), one.f32(), n); };  // x += x
  for (int i = 0; i < 4; ++i) recorder->run(1, twice);  // run, record + replay, replay, replay
  EXPECT_EQ(read_f32(*gpu_, x, n), std::vector<float>(n, 16.0f));
  Buffer other = f32_buffer(*gpu_, std::vector<float>(n, 1.0f));
  auto thrice = [&] { gpu_->mul_accumulate(other.f32(), other.f32(), two.f32(), n); };
  for (int i = 0; i < 3; ++i) recorder->run(2, thrice);
  EXPECT_EQ(read_f32(*gpu_, other, n), std::vector<float>(n, 27.0f));
  EXPECT_EQ(read_f32(*gpu_, x, n), std::vector<float>(n, 16.0f));
  // A download synchronizes: not allowed while recording (the second call with key 3).
  std::vector<float> host(n);
  auto syncing = [&] { gpu_->download(host.data(), x.f32(), n * sizeof(float)); };
  recorder->run(3, syncing);
  const std::string message = test::error_of([&] { recorder->run(3, syncing); });
  EXPECT_NE(message.find("cuda error"), std::string::npos) << message;
  recorder->run(4, twice);
  EXPECT_EQ(read_f32(*gpu_, x, n), std::vector<float>(n, 32.0f));
}

// ---------------------------------------------------------------- the backend itself

// An activation of the other type is refused where the op reads it, naming the op and argument.
TEST_P(CudaVsCpu, RejectsActivationsOfAnotherType) {
  const ActType other = bf16() ? ActType::F32 : ActType::BF16;
  const int64_t T = 8;
  const int C = 16;
  Buffer f = poisoned_f32(*gpu_, T * C), normed = poisoned(*gpu_, T * C, other),
         rstd = poisoned_f32(*gpu_, T);
  RmsNormForward op;
  op.hidden = f.f32();
  op.residual_in = nullptr;
  op.weight = f.f32();
  op.residual_out = f.f32();
  op.normed = normed.act();
  op.rstd = rstd.f32();
  op.T = T;
  op.C = C;
  op.eps = 1e-5f;
  const std::string message = test::error_of([&] { gpu_->residual_rmsnorm_forward(op); });
  EXPECT_NE(message.find(std::string("residual_rmsnorm_forward: normed holds ") + type_name(other)),
            std::string::npos)
      << message;
}

TEST_P(CudaVsCpu, MemoryAndIdentity) {
  EXPECT_EQ(gpu_->act_bytes(), bf16() ? 2u : 4u);
  EXPECT_EQ(gpu_->name().rfind("cuda:0 (", 0), 0u) << gpu_->name();
  std::printf("[info] %s, peak_flops %.3g\n", gpu_->name().c_str(), gpu_->peak_flops());
  const size_t before = gpu_->peak_memory();
  const size_t n = size_t{1} << 24;
  const auto host = uniform(n, 110);
  {
    Buffer b = f32_buffer(*gpu_, host);
    EXPECT_EQ(read_f32(*gpu_, b, n), host);
    gpu_->fill_zero(b.get(), n * sizeof(float));
    const auto zeros = read_f32(*gpu_, b, n);
    EXPECT_TRUE(std::all_of(zeros.begin(), zeros.end(), [](float x) { return x == 0.0f; }));
  }
  EXPECT_GE(gpu_->peak_memory(), before + n * sizeof(float));
}

// The peak the backend reports (what bench_train prints) is what the device gives the process:
// every allocation, the cuBLASLt workspace and the ops' scratch, and what the process holds
// outside them, without counting anything twice. Measured with cudaMemGetInfo around a backend
// that runs the op with the largest temporary memory (the chunked LM head with its gradient).
// With NCCL's buffers: NcclMemory.ReportedPeakCountsTheCommunicators (tests/, 2 GPUs).
TEST(CudaBackendMemory, PeakIsWhatTheDeviceGives) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device: cuda_device_count() is 0";
  ASSERT_EQ(cudaFree(nullptr), cudaSuccess);  // the context exists before the first reading
  size_t free_before = 0, free_after = 0, total = 0;
  ASSERT_EQ(cudaMemGetInfo(&free_before, &total), cudaSuccess);
  auto be = make_cuda_backend(0, true);
  const int64_t T = 8192;
  const int C = 768, Vp = 50304;
  Buffer x = act_buffer(*be, uniform(T * C, 120)),
         e = act_buffer(*be, uniform(int64_t{Vp} * C, 121));
  std::vector<int32_t> targets(T);
  for (int64_t t = 0; t < T; ++t) targets[t] = static_cast<int32_t>(t * 7919 % Vp);
  Buffer tg = i32_buffer(*be, targets), dnormed = poisoned_act(*be, T * C);
  Buffer dE = f32_buffer(*be, std::vector<float>(int64_t{Vp} * C, 0.0f));
  LmHeadLoss op = lm_head_loss_only(x, e, tg, T, C, Vp);
  op.dnormed = dnormed.act();
  op.dE = dE.f32();
  EXPECT_TRUE(std::isfinite(be->lm_head_loss(op)));
  be->synchronize();
  ASSERT_EQ(cudaMemGetInfo(&free_after, &total), cudaSuccess);
  const double mib = 1 << 20;
  const double used = double(free_before - free_after) / mib, peak = be->peak_memory() / mib;
  std::printf("[info] device memory taken %.1f MiB, reported peak %.1f MiB\n", used, peak);
  // The backend measures what it holds outside its allocations (cudaMalloc's rounding to 2 MiB
  // pages, the cuBLASLt handle, lazily loaded kernels) as this test does.
  EXPECT_LE(peak, used + 16) << "the backend counts memory it does not hold";
  EXPECT_LE(used, peak + 16) << "device memory taken outside the backend's count";
}

// Memory the process takes on the device behind the backend's back, as NCCL does for its
// communicators' buffers, counts in the peak: 256 MiB taken with cudaMalloc directly show in
// outside_memory() and peak_memory() at the next reading, outside_memory() drops when they are
// given back (it is measured, not accumulated), and the peak keeps them. peak_allocated() counts
// the backend's own allocations only, at their high-water mark.
TEST(CudaBackendMemory, PeakCountsMemoryTakenOutsideTheBackend) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device: cuda_device_count() is 0";
  auto be = make_cuda_backend(0, true);
  const size_t mib = 1 << 20, taken = 256 * mib;
  Buffer own(*be, 64 * mib);
  // Nothing released yet, so the peak is the current use and the outside memory adds to it.
  const size_t own_peak = be->peak_allocated();
  const size_t peak_before = be->peak_memory(), outside_before = be->outside_memory();
  void* behind = nullptr;
  ASSERT_EQ(cudaMalloc(&behind, taken), cudaSuccess);
  const size_t peak_with = be->peak_memory(), outside_with = be->outside_memory();
  ASSERT_EQ(cudaFree(behind), cudaSuccess);
  const size_t outside_after = be->outside_memory();
  std::printf("[info] outside the backend: %.1f MiB, %.1f MiB with 256 MiB more, %.1f MiB after\n",
              double(outside_before) / mib, double(outside_with) / mib,
              double(outside_after) / mib);
  EXPECT_GE(outside_with, outside_before + taken);
  EXPECT_LE(outside_with, outside_before + taken + 2 * mib);  // cudaMalloc's page rounding
  EXPECT_GE(peak_with, peak_before + taken);
  EXPECT_LT(outside_after, outside_with - taken / 2);
  EXPECT_GE(be->peak_memory(), peak_with);
  EXPECT_EQ(be->peak_allocated(), own_peak) << "memory outside the backend counted as its own";
  { Buffer released(*be, 32 * mib); }
  EXPECT_GE(be->peak_allocated(), own_peak + 32 * mib)
      << "a released allocation left the backend's own peak";
}

// ---------------------------------------------------------------- timings (not a test)

// Times the backend's own ops in bf16 at the 130M model's training shape (16 x 2048 tokens,
// d_model 768, d_inner 1536, vocab 50280). Disabled: run it with --gtest_also_run_disabled_tests
// --gtest_filter='CudaBackendTiming.*'. Inputs are random (never zeros); each op is warmed up and
// the median of 10 synchronized runs is printed.
TEST(CudaBackendTiming, DISABLED_Ops130M) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device: cuda_device_count() is 0";
  auto be = make_cuda_backend(0, true);
  const int64_t T = 16 * 2048;
  const int C = 768, D = 1536, Vp = 50280, K = 4;
  const int64_t params = 130'000'000;
  // One pool of random values; every input is a prefix of it (rounded to bf16 for activations).
  std::vector<float> pool = uniform(T * 2 * D, 7);
  auto f32 = [&](int64_t n, float s = 1.0f) {
    std::vector<float> v(pool.begin(), pool.begin() + n);
    for (float& x : v) x *= s;
    return f32_buffer(*be, v);
  };
  auto act = [&](int64_t n, float s = 1.0f) {
    std::vector<float> v(pool.begin(), pool.begin() + n);
    for (float& x : v) x = round_bf16(x * s);
    return act_buffer(*be, v);
  };
  // Skewed ids (u^2 over the vocabulary), as real text repeats frequent tokens.
  std::vector<int32_t> ids(T);
  for (int64_t t = 0; t < T; ++t) {
    const float u = 0.5f * (pool[t] + 1.0f);
    ids[t] = std::min(Vp - 4, static_cast<int>(u * u * (Vp - 3)));
  }
  Buffer d_ids = i32_buffer(*be, ids);
  auto median_ms = [&](const auto& op) {
    op();
    be->synchronize();
    std::vector<double> ms;
    for (int i = 0; i < 10; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      op();
      be->synchronize();
      ms.push_back(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(ms.begin(), ms.end());
    return ms[ms.size() / 2];
  };
  // bytes: the fewest bytes the op must move (each input read once, each output written once).
  auto report = [&](const char* what, double ms, double bytes, double flops) {
    std::printf("[time] %-44s %8.3f ms %7.0f GB/s %6.0f TFLOP/s\n", what, ms, bytes / ms * 1e-6,
                flops / ms * 1e-9);
  };

  {
    Buffer table = f32(int64_t{Vp} * C, 0.02f), out = f32(T * C), dtable = f32(int64_t{Vp} * C);
    report("embedding_forward", median_ms([&] {
             be->embedding_forward({d_ids.i32(), table.f32(), out.f32(), T, C});
           }),
           2.0 * T * C * 4, 0);
    report("embedding_backward", median_ms([&] {
             be->embedding_backward({d_ids.i32(), out.f32(), dtable.f32(), T, C});
           }),
           3.0 * T * C * 4, 0);
  }
  {
    Buffer hidden = f32(T * C), res = f32(T * C), w = f32(C), res_out = f32(T * C), rstd = f32(T),
           normed = act(T * C), dres = f32(T * C), dw = f32(C);
    RmsNormForward fwd;
    fwd.hidden = hidden.f32();
    fwd.residual_in = res.f32();
    fwd.weight = w.f32();
    fwd.residual_out = res_out.f32();
    fwd.normed = normed.act();
    fwd.rstd = rstd.f32();
    fwd.T = T;
    fwd.C = C;
    fwd.eps = 1e-5f;
    report("residual_rmsnorm_forward", median_ms([&] { be->residual_rmsnorm_forward(fwd); }),
           T * C * (4.0 + 4 + 4 + 2), 0);
    RmsNormBackward bwd;
    bwd.dnormed = normed.act();
    bwd.residual_out = res_out.f32();
    bwd.rstd = rstd.f32();
    bwd.weight = w.f32();
    bwd.dresidual = dres.f32();
    bwd.dweight = dw.f32();
    bwd.T = T;
    bwd.C = C;
    report("rmsnorm_backward", median_ms([&] { be->rmsnorm_backward(bwd); }),
           T * C * (2.0 + 4 + 4 + 4), 0);
  }
  {
    Buffer x = act(T * C), w = act(int64_t{2} * D * C, 0.03f), out = act(T * 2 * D),
           dx = act(T * C), dw = f32(int64_t{2} * D * C);
    const double flops = 2.0 * T * C * 2 * D;
    LinearForward fwd;
    fwd.inp = x.act();
    fwd.ld_inp = C;
    fwd.weight = w.act();
    fwd.out = out.act();
    fwd.ld_out = 2 * D;
    fwd.T = T;
    fwd.in_dim = C;
    fwd.out_dim = 2 * D;
    report("linear_forward in_proj 768->3072", median_ms([&] { be->linear_forward(fwd); }),
           (T * C + 2.0 * D * C + T * 2.0 * D) * 2, flops);
    LinearBackward bwd;
    bwd.dout = out.act();
    bwd.ld_dout = 2 * D;
    bwd.inp = x.act();
    bwd.ld_inp = C;
    bwd.weight = w.act();
    bwd.dinp = dx.act();
    bwd.ld_dinp = C;
    bwd.accumulate_dinp = false;
    bwd.dweight = dw.f32();
    bwd.T = T;
    bwd.in_dim = C;
    bwd.out_dim = 2 * D;
    report("linear_backward in_proj (dinp + dweight)", median_ms([&] { be->linear_backward(bwd); }),
           (T * 2.0 * D + T * C) * 2 * 2, 2 * flops);
  }
  {
    Buffer xz = act(T * 2 * D), w = f32(int64_t{D} * K, 0.5f), b = f32(D, 0.5f), out = act(T * D),
           dxz = act(T * 2 * D), dw = f32(int64_t{D} * K), db = f32(D);
    const Conv1dShape s{16, 2048, D, K, 2 * D};
    report("conv1d_silu_forward", median_ms([&] {
             be->conv1d_silu_forward(s, {xz.act(), w.f32(), b.f32(), out.act()});
           }),
           2.0 * T * D * 2, 0);
    report("conv1d_silu_backward", median_ms([&] {
             be->conv1d_silu_backward(
                 s, {out.act(), xz.act(), w.f32(), b.f32(), dxz.act(), dw.f32(), db.f32(), {}});
           }),
           3.0 * T * D * 2, 0);
  }
  {
    Buffer normed = act(T * C, 2.0f), E = act(int64_t{Vp} * C, 0.02f), dnormed = act(T * C),
           dE = f32(int64_t{Vp} * C);
    Buffer targets = i32_buffer(*be, ids);
    const double flops = 2.0 * T * C * Vp;
    // Fewest bytes of the chunked design: logits written and read twice, dlogits written once
    // and read by both GEMMs, all in the activation type.
    const double logit_bytes = T * double{Vp} * be->act_bytes() * 6;
    LmHeadLoss op = lm_head_loss_only(normed, E, targets, T, C, Vp);
    report("lm_head_loss forward", median_ms([&] { be->lm_head_loss(op); }),
           T * double{Vp} * be->act_bytes() * 2, flops);
    op.dnormed = dnormed.act();
    op.dE = dE.f32();
    report("lm_head_loss forward + backward", median_ms([&] { be->lm_head_loss(op); }), logit_bytes,
           3 * flops);
  }
  {
    std::vector<float> host(params);
    for (int64_t i = 0; i < params; ++i) host[i] = pool[i % pool.size()] * 1e-2f;
    Buffer p = f32_buffer(*be, host), g = f32_buffer(*be, host), m = f32_buffer(*be, host),
           v = f32_buffer(*be, host);
    be->fill_zero(v.get(), params * sizeof(float));
    const AdamWHyper h{3e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 10};
    Buffer copy = poisoned_act(*be, params);
    const AdamWSegment all{0, 0, params, true};
    report("adamw_step 130M (and compute copy)", median_ms([&] {
             be->adamw_step({p.f32(), g.f32(), m.f32(), v.f32(), copy.act(), &all, 1}, h);
           }),
           params * (4.0 * 7 + double(be->act_bytes())), 0);
    report("sum_of_squares 130M", median_ms([&] { be->sum_of_squares(g.f32(), params); }),
           params * 4.0, 0);
  }
  std::printf("[time] peak memory %.2f GiB\n", be->peak_memory() / double(1 << 30));
}

}  // namespace
}  // namespace mamba
