// Recurrent mode (generation through the backend) and sampling.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <vector>

#include "model/mamba_lm.h"
#include "model/recurrent.h"
#include "model/sampler.h"
#include "model_fixtures.h"
#include "util/rng.h"
#ifdef MAMBA_HAVE_CUDA
#include "kernels/cuda/cuda_backend.h"
#endif

namespace mamba {
namespace {

// ||got - want|| / ||want||.
double rel_error(const float* got, const float* want, int64_t n) {
  double diff = 0.0, norm = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    diff += std::pow(double(got[i]) - want[i], 2);
    norm += std::pow(double(want[i]), 2);
  }
  return std::sqrt(diff / norm);
}

ModelConfig generation_config() {
  ModelConfig c;
  c.d_model = 32;
  c.n_layer = 3;
  c.vocab_size = 61;
  c.d_state = 16;  // the CUDA backend's
  return c;
}

// The recurrent steps' logits equal the full forward's (MambaLM::evaluate) at every position of
// every sequence of a batch, within tol (norm-wise over each position's logits). Then: after
// reset the same prefix gives the same logits again; a prompt prefilled in parallel continues
// the same way; and the batch can change (1 sequence).
void expect_recurrent_matches_full_forward(Backend& backend, double tol) {
  const ModelConfig c = generation_config();
  const int seqlen = 29, batch = 3, vp = c.padded_vocab();
  MambaLM model(c, backend);
  test::init_model(model, 21);
  const std::vector<int32_t> tokens = test::random_tokens(batch * seqlen, c.vocab_size, 4);
  std::vector<float> full(int64_t(batch) * seqlen * vp);
  model.evaluate(tokens.data(), tokens.data(), batch, seqlen, full.data());
  // Position t of sequence b in the full forward's logits.
  auto want = [&](int b, int t) { return full.data() + (int64_t(b) * seqlen + t) * vp; };

  RecurrentLM rec(model, batch);
  double worst = 0.0;
  for (int t = 0; t < seqlen; ++t) {
    std::vector<int32_t> column(batch);
    for (int b = 0; b < batch; ++b) column[b] = tokens[b * seqlen + t];
    rec.step(column.data());
    const std::vector<float> logits = rec.logits();
    for (int b = 0; b < batch; ++b) {
      const double err = rel_error(logits.data() + int64_t(b) * vp, want(b, t), vp);
      worst = std::max(worst, err);
      EXPECT_LT(err, tol) << backend.name() << ": sequence " << b << ", position " << t;
    }
  }
  std::printf("[err] %s recurrent vs full forward: %.2e (tol %.0e)\n", backend.name().c_str(),
              worst, tol);
  {
    std::vector<int32_t> firsts(batch);
    for (int b = 0; b < batch; ++b) firsts[b] = tokens[b * seqlen];
    rec.reset(batch);
    rec.prefill(firsts.data(), 1);
    const std::vector<float> logits = rec.logits();
    for (int b = 0; b < batch; ++b) {
      EXPECT_LT(rel_error(logits.data() + int64_t(b) * vp, want(b, 0), vp), tol) << "after reset";
    }
  }
  // A prompt prefilled in parallel (the full forward's final states), then stepped on: the
  // states it leaves are the ones the steps would have left. Prompt lengths below, at and above
  // the conv's width.
  for (const int prompt_len : {2, 3, 4, 17}) {
    std::vector<int32_t> prompts;
    for (int b = 0; b < batch; ++b) {
      prompts.insert(prompts.end(), tokens.begin() + b * seqlen,
                     tokens.begin() + b * seqlen + prompt_len);
    }
    rec.reset(batch);
    rec.prefill(prompts.data(), prompt_len);
    for (int t = prompt_len - 1; t < seqlen; ++t) {
      if (t >= prompt_len) {
        std::vector<int32_t> column(batch);
        for (int b = 0; b < batch; ++b) column[b] = tokens[b * seqlen + t];
        rec.step(column.data());
      }
      const std::vector<float> logits = rec.logits();
      for (int b = 0; b < batch; ++b) {
        EXPECT_LT(rel_error(logits.data() + int64_t(b) * vp, want(b, t), vp), tol)
            << backend.name() << ": prompt of " << prompt_len << ", sequence " << b << ", position "
            << t;
      }
    }
  }
  // Another batch size (other buffers; on CUDA a step recorded anew): sequence 1 alone.
  rec.reset(1);
  const int prompt_len = 10;
  rec.prefill(tokens.data() + seqlen, prompt_len);
  for (int t = prompt_len - 1; t < seqlen; ++t) {
    if (t >= prompt_len) rec.step(&tokens[seqlen + t]);
    EXPECT_LT(rel_error(rec.logits().data(), want(1, t), vp), tol) << "batch 1, position " << t;
  }
}

// Greedy decoding on the device feeds the same tokens as picking the argmax of the logits on the
// host and feeding it back.
void expect_greedy_matches_host_argmax(Backend& backend) {
  const ModelConfig c = generation_config();
  const int batch = 2, prompt_len = 5, n = 12, vp = c.padded_vocab();
  MambaLM model(c, backend);
  test::init_model(model, 22);
  const std::vector<int32_t> prompts = test::random_tokens(batch * prompt_len, c.vocab_size, 5);
  RecurrentLM device(model, batch), host(model, batch);
  device.prefill(prompts.data(), prompt_len);
  host.prefill(prompts.data(), prompt_len);
  std::vector<int32_t> fed(int64_t(n) * batch);
  device.step_greedy(n, fed.data());
  for (int t = 0; t < n; ++t) {
    const std::vector<float> logits = host.logits();
    std::vector<int32_t> next(batch);
    for (int b = 0; b < batch; ++b) {
      const float* row = logits.data() + int64_t(b) * vp;
      next[b] = int32_t(std::max_element(row, row + c.vocab_size) - row);
      EXPECT_EQ(fed[int64_t(t) * batch + b], next[b]) << "step " << t << ", sequence " << b;
    }
    host.step(next.data());
  }
  // One more greedy step alone (its own download path) continues the same way.
  int32_t one[batch];
  device.step_greedy(1, one);
  const std::vector<float> logits = host.logits();
  for (int b = 0; b < batch; ++b) {
    const float* row = logits.data() + int64_t(b) * vp;
    EXPECT_EQ(one[b], int32_t(std::max_element(row, row + c.vocab_size) - row));
  }
}

TEST(Generation, RecurrentStepMatchesFullForward) {
  const auto backend = make_cpu_backend();
  expect_recurrent_matches_full_forward(*backend, 1e-5);
}

TEST(Generation, GreedyOnDeviceMatchesHostArgmax) {
  const auto backend = make_cpu_backend();
  expect_greedy_matches_host_argmax(*backend);
}

// generate() from a greedy sampler continues the prompt with the full forward's argmax.
TEST(Generation, GenerateGreedyFollowsFullForward) {
  const ModelConfig c = generation_config();
  const auto backend = make_cpu_backend();
  MambaLM model(c, *backend);
  test::init_model(model, 23);
  std::vector<int32_t> seq = test::random_tokens(4, c.vocab_size, 6);
  Rng rng(1);
  const std::vector<int32_t> out = generate(model, seq, 6, -1, {0.0f, 0}, rng);
  ASSERT_EQ(out.size(), 6u);
  const int vp = c.padded_vocab();
  for (int32_t token : out) {
    const int L = int(seq.size());
    std::vector<float> logits(int64_t(L) * vp);
    model.evaluate(seq.data(), seq.data(), 1, L, logits.data());
    const float* last = logits.data() + int64_t(L - 1) * vp;
    EXPECT_EQ(token, int32_t(std::max_element(last, last + c.vocab_size) - last));
    seq.push_back(token);
  }
}

// The CUDA backend's recurrent mode (CUDA graphs recorded per batch size) against its own full
// forward: fp32 activations to rounding, bf16 within the rounding of its activations.
TEST(Generation, RecurrentStepMatchesFullForwardOnGpu) {
#ifdef MAMBA_HAVE_CUDA
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device: cuda_device_count() is 0";
  expect_recurrent_matches_full_forward(*make_cuda_backend(0, false), 1e-4);
  expect_recurrent_matches_full_forward(*make_cuda_backend(0, true), 1e-2);
  expect_greedy_matches_host_argmax(*make_cuda_backend(0, false));
#else
  GTEST_SKIP() << "built without the CUDA backend (MAMBA_CUDA=OFF or no nvcc)";
#endif
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
