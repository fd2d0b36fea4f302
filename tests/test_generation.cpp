// Recurrent mode and sampling.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "model/mamba_lm.h"
#include "model/recurrent.h"
#include "model/sampler.h"
#include "model_fixtures.h"
#include "util/rng.h"

namespace mamba {
namespace {

// The recurrent step's logits equal the full forward's at every position of a sequence.
TEST(Generation, RecurrentStepMatchesFullForward) {
  ModelConfig c;
  c.d_model = 32;
  c.n_layer = 3;
  c.vocab_size = 61;
  c.d_state = 8;
  const int seqlen = 29;
  const auto backend = make_cpu_backend();
  MambaLM model(c, *backend);
  const std::vector<float> params = test::init_model(model, 21);
  const std::vector<int32_t> tokens = test::random_tokens(seqlen, c.vocab_size, 4);
  const int vp = c.padded_vocab();
  std::vector<float> full(int64_t(seqlen) * vp);
  model.evaluate(tokens.data(), tokens.data(), 1, seqlen, full.data());

  RecurrentLM rec(model.layout(), params.data());
  for (int t = 0; t < seqlen; ++t) {
    const float* logits = rec.step(tokens[t]);
    double diff = 0.0, norm = 0.0;
    for (int v = 0; v < vp; ++v) {
      diff += std::pow(double(logits[v]) - full[int64_t(t) * vp + v], 2);
      norm += std::pow(double(full[int64_t(t) * vp + v]), 2);
    }
    EXPECT_LT(std::sqrt(diff / norm), 1e-5) << "position " << t;
  }
  // After reset the same prefix gives the same first logits again.
  rec.reset();
  const float* first = rec.step(tokens[0]);
  EXPECT_NEAR(first[3], full[3], 1e-5f);
}

TEST(Generation, GreedyPicksArgmaxWithinVocab) {
  std::vector<float> logits{0.1f, 2.0f, -1.0f, 5.0f};
  Rng rng(1);
  EXPECT_EQ(sample_token(logits.data(), 4, {0.0f, 0}, rng), 3);
  // The padded tail (index 3 here) is never a candidate when vocab_size excludes it.
  EXPECT_EQ(sample_token(logits.data(), 3, {0.0f, 0}, rng), 1);
}

TEST(Generation, TopKNeverSamplesOutsideTheTopK) {
  std::vector<float> logits{1.0f, 0.5f, 3.0f, 2.9f, -2.0f};
  Rng rng(2);
  int counts[5] = {};
  for (int i = 0; i < 2000; ++i) ++counts[sample_token(logits.data(), 5, {1.0f, 2}, rng)];
  EXPECT_EQ(counts[0] + counts[1] + counts[4], 0);
  EXPECT_GT(counts[2], 700);
  EXPECT_GT(counts[3], 700);
}

// Frequencies of sample_token over many draws against softmax(logits / T) over the top k, for
// temperatures on both sides of 1. 40000 draws: a probability's standard error is below 0.0025.
void expect_softmax_frequencies(const std::vector<float>& logits, float temperature, int top_k) {
  std::vector<int> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int a, int b) { return logits[a] > logits[b]; });
  const size_t keep = top_k > 0 ? size_t(top_k) : logits.size();
  std::vector<double> expected(logits.size(), 0.0);
  double total = 0.0;
  for (size_t i = 0; i < keep; ++i) total += std::exp(double(logits[order[i]]) / temperature);
  for (size_t i = 0; i < keep; ++i) {
    expected[order[i]] = std::exp(double(logits[order[i]]) / temperature) / total;
  }
  Rng rng(3);
  std::vector<int> counts(logits.size(), 0);
  const int n = 40000;
  for (int i = 0; i < n; ++i) {
    ++counts[sample_token(logits.data(), int(logits.size()), {temperature, top_k}, rng)];
  }
  for (size_t v = 0; v < logits.size(); ++v) {
    EXPECT_NEAR(double(counts[v]) / n, expected[v], 0.012)
        << "token " << v << " at temperature " << temperature << ", top-k " << top_k;
  }
}

TEST(Generation, TemperatureFollowsSoftmax) {
  const std::vector<float> two{0.0f, std::log(3.0f)};  // probabilities 1/4, 3/4 at T = 1
  for (float t : {1.0f, 0.5f, 2.0f, 0.25f}) expect_softmax_frequencies(two, t, 0);
  const std::vector<float> five{1.0f, 0.5f, 3.0f, 2.2f, -2.0f};
  for (float t : {0.7f, 1.0f, 1.6f}) expect_softmax_frequencies(five, t, 0);
}

TEST(Generation, TopKFollowsSoftmaxOverTheKept) {
  const std::vector<float> logits{1.0f, 0.5f, 3.0f, 2.2f, -2.0f, 2.6f};
  for (int k : {1, 2, 3, 5}) {
    for (float t : {0.6f, 1.0f, 1.8f}) expect_softmax_frequencies(logits, t, k);
  }
}

}  // namespace
}  // namespace mamba
