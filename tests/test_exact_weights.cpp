// A model without an fp32 master (ZeRO-1's, whose master the optimizers of the ranks shard) reads
// its GEMM weights from the compute copy and every other tensor from its exact buffer: it must
// compute the bits of a model that holds the master, on the CPU (fp32) and on a GPU (bf16), and
// hold the weights it says it holds.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "model/mamba_lm.h"
#include "model/recurrent.h"
#include "model_fixtures.h"
#include "util/rng.h"
#ifdef MAMBA_HAVE_CUDA
#include "kernels/cuda/cuda_backend.h"
#endif

namespace mamba {
namespace {

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Loss, gradients, logits and greedy generation of both models from the same weights.
void expect_same_as_master(Backend& be) {
  const ModelConfig config = test::small_config(32, 2, 97);
  MambaLM with(config, be);
  MambaLM without(config, be, ActivationMemory::Rebuild, false);
  ASSERT_EQ(without.params(), nullptr);
  const std::vector<float> weights = test::init_model(with, 5);
  without.upload_params(weights);
  const int batch = 2, seqlen = 16;
  const std::vector<int32_t> tokens = test::random_tokens(batch * (seqlen + 1), 97, 3);
  std::vector<int32_t> inputs, targets;
  for (int b = 0; b < batch; ++b) {
    const int32_t* row = tokens.data() + b * (seqlen + 1);
    inputs.insert(inputs.end(), row, row + seqlen);
    targets.insert(targets.end(), row + 1, row + seqlen + 1);
  }
  for (MambaLM* m : {&with, &without}) m->zero_grads();
  const double loss_with =
      with.forward_backward(inputs.data(), targets.data(), batch, seqlen, 1.0f);
  const double loss_without =
      without.forward_backward(inputs.data(), targets.data(), batch, seqlen, 1.0f);
  EXPECT_EQ(loss_with, loss_without);
  EXPECT_TRUE(same_bits(with.download(with.grads()), without.download(without.grads())));
  const int64_t vp = config.padded_vocab();
  std::vector<float> logits_with(batch * seqlen * vp), logits_without(logits_with.size());
  with.evaluate(inputs.data(), targets.data(), batch, seqlen, logits_with.data());
  without.evaluate(inputs.data(), targets.data(), batch, seqlen, logits_without.data());
  EXPECT_TRUE(same_bits(logits_with, logits_without));
  // bf16: the master (4 bytes a weight) and its copy (2) against the copy and the exact buffer.
  const size_t n = size_t(with.layout().total()), act = be.act_bytes();
  const ExactSpan& last = without.exact_spans().back();
  EXPECT_EQ(with.weight_bytes(), n * sizeof(float) + (act == sizeof(float) ? 0 : n * act));
  EXPECT_EQ(without.weight_bytes(), n * act + size_t(last.exact + last.count) * sizeof(float));
  Rng rng_with(1), rng_without(1);
  const std::vector<int32_t> prompt(inputs.begin(), inputs.begin() + 5);
  EXPECT_EQ(generate(with, prompt, 8, -1, {0.0f, 0}, rng_with),
            generate(without, prompt, 8, -1, {0.0f, 0}, rng_without));
}

TEST(ExactWeights, WithoutAMasterTheModelComputesTheSameBitsOnTheCpu) {
  expect_same_as_master(*make_cpu_backend());
}

TEST(ExactWeights, WithoutAMasterTheModelComputesTheSameBitsOnAGpu) {
#ifdef MAMBA_HAVE_CUDA
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device: cuda_device_count() is 0";
  expect_same_as_master(*make_cuda_backend(0, true));
  expect_same_as_master(*make_cuda_backend(0, false));
#else
  GTEST_SKIP() << "built without the CUDA backend (MAMBA_CUDA=OFF or no nvcc)";
#endif
}

// The exact buffer holds exactly the fp32-read tensors, each once, in buffer order; the model
// without a master holds them and the compute copy, and no fp32 copy of the rest.
TEST(ExactWeights, TheExactBufferHoldsTheFp32ReadTensorsOnly) {
  const auto be = make_cpu_backend();
  const ModelConfig config = test::small_config(32, 3, 97);
  MambaLM with(config, *be);
  MambaLM without(config, *be, ActivationMemory::Rebuild, false);
  const ParamLayout& layout = without.layout();
  int64_t fp32_read = 0;
  for (const ParamTensor& t : layout.tensors()) {
    if (t.fp32_read) fp32_read += t.numel;
  }
  // The GEMM weights are most of a layer; the embedding and the small tensors are the rest.
  const ParamTensor& in_proj = *layout.find("backbone.layers.0.mixer.in_proj.weight");
  EXPECT_FALSE(in_proj.fp32_read);
  EXPECT_TRUE(layout.find("backbone.layers.2.mixer.A_log")->fp32_read);
  EXPECT_TRUE(layout.find("backbone.embedding.weight")->fp32_read);
  int64_t covered = 0, last_end = 0;
  for (const ExactSpan& s : without.exact_spans()) {
    EXPECT_EQ(s.exact, covered);
    EXPECT_GE(s.offset, last_end);
    for (int64_t i = s.offset; i < s.offset + s.count; ++i) {
      bool read = false;
      for (const ParamTensor& t : layout.tensors()) {
        read = read || (t.fp32_read && i >= t.offset && i < t.offset + t.numel);
      }
      ASSERT_TRUE(read) << i;
    }
    covered += s.count;
    last_end = s.offset + s.count;
  }
  EXPECT_EQ(covered, fp32_read);
  EXPECT_TRUE(with.exact_spans().empty());
  const size_t n = size_t(layout.total());
  EXPECT_EQ(with.weight_bytes(), n * sizeof(float));  // fp32: the compute copy is the master
  EXPECT_EQ(without.weight_bytes(), (n + size_t(fp32_read)) * sizeof(float));
}

}  // namespace
}  // namespace mamba
