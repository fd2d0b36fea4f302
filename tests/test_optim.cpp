// The optimizer step's parts against closed forms: the learning-rate schedule at warmup, middle
// and end for each shape; gradient clipping below, at and above the threshold with the pre-clip
// norm returned; AdamW against its textbook update in double; weight decay only where the
// layout asks for it; the one-op step (Backend::adamw_step) against the per-tensor updates.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "dist/shard_map.h"
#include "kernels/backend.h"
#include "kernels/cpu/adamw.h"
#include "model/params.h"
#include "model_fixtures.h"
#include "train/optimizer.h"
#include "train/schedule.h"

namespace mamba {
namespace {

OptimConfig schedule(Schedule shape) {
  OptimConfig o;
  o.lr = 1.0;
  o.min_lr = 0.1;
  o.warmup = 10;
  o.schedule = shape;
  return o;
}

constexpr int64_t kTotal = 100;  // 10 warmup steps, then 90 of decay

TEST(Schedule, WarmupIsLinearFromLrOverWarmup) {
  for (Schedule shape : {Schedule::Cosine, Schedule::Linear, Schedule::Constant}) {
    const OptimConfig o = schedule(shape);
    EXPECT_NEAR(learning_rate(o, kTotal, 0), 0.1, 1e-7);
    EXPECT_NEAR(learning_rate(o, kTotal, 4), 0.5, 1e-7);
    EXPECT_NEAR(learning_rate(o, kTotal, 9), 1.0, 1e-7);
    EXPECT_NEAR(learning_rate(o, kTotal, 10), 1.0, 1e-7);  // decay starts at the peak
  }
}

TEST(Schedule, CosineMiddleAndEnd) {
  const OptimConfig o = schedule(Schedule::Cosine);
  const auto cosine = [](double progress) {
    return 0.1 + 0.9 * 0.5 * (1.0 + std::cos(M_PI * progress));
  };
  EXPECT_NEAR(learning_rate(o, kTotal, 40), cosine(1.0 / 3.0), 1e-6);  // 0.775
  EXPECT_NEAR(learning_rate(o, kTotal, 55), 0.55, 1e-6);
  EXPECT_NEAR(learning_rate(o, kTotal, 99), cosine(89.0 / 90.0), 1e-6);
  EXPECT_NEAR(learning_rate(o, kTotal, kTotal), 0.1, 1e-7);  // ends exactly at min_lr
  EXPECT_NEAR(learning_rate(o, kTotal, kTotal + 50), 0.1, 1e-7);
}

TEST(Schedule, LinearMiddleAndEnd) {
  const OptimConfig o = schedule(Schedule::Linear);
  EXPECT_NEAR(learning_rate(o, kTotal, 40), 0.7, 1e-6);
  EXPECT_NEAR(learning_rate(o, kTotal, 55), 0.55, 1e-6);
  EXPECT_NEAR(learning_rate(o, kTotal, 99), 0.11, 1e-6);
  EXPECT_NEAR(learning_rate(o, kTotal, kTotal), 0.1, 1e-7);
  EXPECT_NEAR(learning_rate(o, kTotal, kTotal + 50), 0.1, 1e-7);
}

TEST(Schedule, ConstantStaysAtLr) {
  const OptimConfig o = schedule(Schedule::Constant);
  for (int64_t step : {10, 40, 99, 100}) EXPECT_NEAR(learning_rate(o, kTotal, step), 1.0, 1e-7);
}

TEST(Schedule, NoWarmupStartsAtLr) {
  OptimConfig o = schedule(Schedule::Cosine);
  o.warmup = 0;
  EXPECT_NEAR(learning_rate(o, kTotal, 0), 1.0, 1e-7);
  EXPECT_NEAR(learning_rate(o, kTotal, 50), 0.55, 1e-6);
  EXPECT_NEAR(learning_rate(o, kTotal, kTotal), 0.1, 1e-7);
}

// More elements than one chunk of the norm's partial sums, with a known norm.
std::vector<float> gradients(double* norm) {
  std::vector<float> g(200003);
  double ss = 0.0;
  for (size_t i = 0; i < g.size(); ++i) {
    g[i] = 0.01f * float(int(i % 7) - 3);
    ss += double(g[i]) * g[i];
  }
  *norm = std::sqrt(ss);
  return g;
}

TEST(Clipping, TheNormIsTheGlobalL2Norm) {
  const auto be = make_cpu_backend();
  double norm = 0.0;
  const std::vector<float> g = gradients(&norm);
  EXPECT_NEAR(grad_norm(*be, g.data(), int64_t(g.size())), norm, 1e-9 * norm);
  const std::vector<float> small{3.0f, 0.0f, -4.0f};
  EXPECT_DOUBLE_EQ(grad_norm(*be, small.data(), 3), 5.0);
}

TEST(Clipping, CoefficientIsTorchsAboveTheThresholdAndOneBelowIt) {
  EXPECT_EQ(clip_coefficient(2.0, 4.0f), 1.0f);
  EXPECT_EQ(clip_coefficient(4.0, 0.0f), 1.0f);  // 0 turns clipping off
  EXPECT_EQ(clip_coefficient(5.0, 5.0f), float(5.0 / (5.0 + 1e-6)));
  EXPECT_EQ(clip_coefficient(8.0, 2.0f), float(2.0 / (8.0 + 1e-6)));
}

// Over a ZeRO-1 rank's ranges: the norm of their elements with the other ranks' squares added by
// the callback.
TEST(Clipping, OverRangesTakesTheirGlobalNorm) {
  const auto be = make_cpu_backend();
  double unused = 0.0;
  const std::vector<float> g = gradients(&unused);
  const std::vector<ShardRange> ranges{{10, 0, 100}, {500, 100, 0}, {1000, 100, 70000}};
  double squares = 0.0;
  for (const ShardRange& r : ranges) {
    for (int64_t i = r.begin; i < r.begin + r.count; ++i) squares += double(g[i]) * g[i];
  }
  const double others = 2.5;  // the other ranks' squares
  const double norm = std::sqrt(squares + others);
  EXPECT_NEAR(grad_norm(*be, g.data(), ranges, [&](double x) { return x + others; }), norm,
              1e-12 * norm);
}

// AdamW clips as it reads the gradients: the bits of a step on gradients scaled beforehand (what
// a scaling pass over them gave).
TEST(Clipping, AdamWWithTheCoefficientEqualsAdamWOnScaledGradients) {
  const auto be = make_cpu_backend();
  const ParamLayout layout(test::small_config(16, 2, 33));
  const int64_t n = layout.total();
  std::vector<float> grads(n), scaled(n);
  const float coef = clip_coefficient(9.0, 1.0f);
  for (int64_t i = 0; i < n; ++i) {
    grads[i] = std::cos(0.3f * float(i));
    scaled[i] = grads[i] * coef;
  }
  std::vector<float> clipped(n), reference(n);
  for (int64_t i = 0; i < n; ++i) clipped[i] = reference[i] = std::sin(0.37f * float(i));
  AdamW a(layout, *be, AdamWSettings{}), b(layout, *be, AdamWSettings{});
  for (int step = 0; step < 2; ++step) {
    a.step(clipped.data(), grads.data(), 1e-2f, {}, coef);
    b.step(reference.data(), scaled.data(), 1e-2f);
  }
  EXPECT_EQ(clipped, reference);
  EXPECT_EQ(a.download_m(), b.download_m());
  EXPECT_EQ(a.download_v(), b.download_v());
  EXPECT_NE(clipped, [&] {  // and the coefficient mattered
    std::vector<float> unclipped(n);
    for (int64_t i = 0; i < n; ++i) unclipped[i] = std::sin(0.37f * float(i));
    AdamW c(layout, *be, AdamWSettings{});
    for (int step = 0; step < 2; ++step) c.step(unclipped.data(), grads.data(), 1e-2f);
    return unclipped;
  }());
}

// Three AdamW steps against the textbook update computed in double.
TEST(AdamWUpdate, MatchesTheTextbookUpdate) {
  const int n = 5;
  std::vector<float> p{0.5f, -1.0f, 2.0f, 0.0f, 3.0f}, m(n, 0.0f), v(n, 0.0f);
  std::vector<double> rp(p.begin(), p.end()), rm(n, 0.0), rv(n, 0.0);
  const double lr = 0.01, b1 = 0.9, b2 = 0.95, eps = 1e-8, wd = 0.1;
  const float grads[3][n] = {{0.1f, -0.2f, 0.0f, 1.5f, -3.0f},
                             {0.3f, 0.1f, -0.4f, 1.0f, 2.0f},
                             {-0.2f, 0.05f, 0.2f, -0.5f, 0.7f}};
  for (int step = 1; step <= 3; ++step) {
    cpu::adamw_update(p.data(), grads[step - 1], m.data(), v.data(), n,
                      {float(lr), float(b1), float(b2), float(eps), float(wd), step});
    for (int i = 0; i < n; ++i) {
      const double g = grads[step - 1][i];
      rm[i] = b1 * rm[i] + (1 - b1) * g;
      rv[i] = b2 * rv[i] + (1 - b2) * g * g;
      const double mhat = rm[i] / (1 - std::pow(b1, step)), vhat = rv[i] / (1 - std::pow(b2, step));
      rp[i] = rp[i] * (1 - lr * wd) - lr * mhat / (std::sqrt(vhat) + eps);
    }
  }
  for (int i = 0; i < n; ++i) EXPECT_NEAR(p[i], rp[i], 1e-6) << i;
}

// With zero gradients AdamW only decays: by (1 - lr * wd) exactly where the layout says so.
TEST(AdamWUpdate, WeightDecayOnlyOnDecayingTensors) {
  const auto be = make_cpu_backend();
  const ParamLayout layout(test::small_config(16, 2, 33));
  AdamW adamw(layout, *be, AdamWSettings{0.9f, 0.95f, 1e-8f, 0.1f});
  std::vector<float> params(layout.total(), 1.0f), grads(layout.total(), 0.0f);
  adamw.step(params.data(), grads.data(), 0.5f);
  int decaying = 0;
  for (const ParamTensor& t : layout.tensors()) {
    const float expected = t.weight_decay ? 1.0f - 0.5f * 0.1f : 1.0f;
    for (int64_t i = 0; i < t.numel; ++i) ASSERT_FLOAT_EQ(params[t.offset + i], expected) << t.name;
    decaying += t.weight_decay;
  }
  EXPECT_EQ(decaying, 2 * 5);  // in_proj, conv1d, x_proj, dt_proj and out_proj weights per layer
  EXPECT_EQ(adamw.steps_taken, 1);
}

// AdamW::step runs as one backend op over merged segments; it must give the bits of
// cpu::adamw_update applied tensor by tensor (weight decay per the layout) over the owned ranges,
// unsharded and as rank 1 of 3 (ranges cut across tensors, moments and fp32 master packed). A
// compute copy that does not alias the parameters receives the updated weights where they were
// updated, and nothing elsewhere.
TEST(AdamWUpdate, OneOpEqualsThePerTensorUpdates) {
  const auto be = make_cpu_backend();
  const ParamLayout layout(test::small_config(16, 2, 33));
  const int64_t n = layout.total();
  const AdamWSettings set{0.9f, 0.95f, 1e-8f, 0.1f};
  const ShardMap map(n, 3, 1, 300);
  for (const std::vector<ShardRange>& ranges : {std::vector<ShardRange>{}, map.ranges()}) {
    AdamW adamw(layout, *be, set, ranges);
    const std::vector<ShardRange> owned = adamw.ranges();
    std::vector<float> params(n), grads(n), m(adamw.size(), 0.0f), v(adamw.size(), 0.0f);
    for (int64_t i = 0; i < n; ++i) params[i] = std::sin(0.37f * float(i));
    std::vector<float> want = params;
    const float poison = std::numeric_limits<float>::quiet_NaN();
    std::vector<float> copy(n, poison);
    const bool sharded = !ranges.empty();
    if (sharded) adamw.take_master(params.data());
    for (int step = 1; step <= 3; ++step) {
      for (int64_t i = 0; i < n; ++i) grads[i] = std::cos(0.11f * float(i * step));
      adamw.step(sharded ? nullptr : params.data(), grads.data(), 1e-2f, f32_act(copy.data()));
      for (const ShardRange& r : owned) {
        for (const ParamTensor& t : layout.tensors()) {
          const int64_t lo = std::max(r.begin, t.offset);
          const int64_t hi = std::min(r.begin + r.count, t.offset + t.numel);
          if (lo >= hi) continue;
          const int64_t k = r.packed + lo - r.begin;
          cpu::adamw_update(want.data() + lo, grads.data() + lo, m.data() + k, v.data() + k,
                            hi - lo,
                            {1e-2f, set.beta1, set.beta2, set.eps,
                             t.weight_decay ? set.weight_decay : 0.0f, step});
        }
      }
    }
    if (sharded) {
      // The caller's buffer is left alone; the packed master holds the owned weights.
      const std::vector<float> master = adamw.download_master();
      for (const ShardRange& r : owned) {
        ASSERT_EQ(
            std::memcmp(master.data() + r.packed, want.data() + r.begin, r.count * sizeof(float)),
            0);
        std::copy_n(master.data() + r.packed, r.count, params.begin() + r.begin);
      }
    }
    ASSERT_EQ(std::memcmp(params.data(), want.data(), n * sizeof(float)), 0);
    EXPECT_EQ(std::memcmp(adamw.download_m().data(), m.data(), m.size() * sizeof(float)), 0);
    EXPECT_EQ(std::memcmp(adamw.download_v().data(), v.data(), v.size() * sizeof(float)), 0);
    std::vector<bool> in(n, false);
    for (const ShardRange& r : owned) std::fill_n(in.begin() + r.begin, r.count, true);
    int64_t written = 0;
    for (int64_t i = 0; i < n; ++i) {
      if (in[i]) {
        ASSERT_EQ(copy[i], params[i]) << i;
        ++written;
      } else {
        ASSERT_TRUE(std::isnan(copy[i])) << i << " is outside the owned ranges but was written";
      }
    }
    EXPECT_EQ(written, adamw.size());
  }
}

}  // namespace
}  // namespace mamba
