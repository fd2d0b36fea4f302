// Times the GEMMs of a bf16 training step (kernels/cuda/gemm.h) with cuBLASLt's first choice and
// with tuning (train.tune_gemms), and prints one JSON line per GEMM: microseconds a call each way,
// calls per step and the milliseconds per step tuning saves; then one line per model with the
// totals. Shapes: the projections of a layer and the LM head's 4096-token chunks at the tokens
// per step of the training benchmarks (130M 16 x 2048, 370M 8 x 2048, 1.4B 4 x 2048).
//   bench_gemm [--repeats N]
// Accumulating GEMMs (dweight, x_proj's dinp) keep the first choice when tuned (gemm.h), so their
// two columns should agree to within the noise.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cuda/gemm.h"

namespace {

using mamba::cuda::Gemm;

void ck(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

// A linear layer's shape in the step and how often a step runs each of its GEMMs.
struct Linear {
  const char* name;
  int in, out;
  int64_t ld_inp, ld_out;  // row strides (slices of wider rows)
  int forward_calls, backward_calls;
  bool f32_out, accumulate_dinp;
};

struct Model {
  const char* name;
  int d_model, layers;
  int64_t tokens;
};

struct Buffers {
  void *a, *b, *d;
};

// Median microseconds of each of two ops over `repeats` runs each, the two alternating so that
// drifting clocks (a long run of large GEMMs heats the GPU) favour neither; both run once first
// (planning and tuning).
std::array<double, 2> time_us(const std::array<std::function<void()>, 2>& ops, int repeats,
                              cudaStream_t stream) {
  for (const auto& op : ops) op();
  cudaEvent_t start, stop;
  ck(cudaEventCreate(&start), "cudaEventCreate");
  ck(cudaEventCreate(&stop), "cudaEventCreate");
  std::array<std::vector<double>, 2> us;
  for (int r = 0; r < repeats; ++r) {
    for (int k = 0; k < 2; ++k) {
      ck(cudaEventRecord(start, stream), "cudaEventRecord");
      ops[k]();
      ck(cudaEventRecord(stop, stream), "cudaEventRecord");
      ck(cudaEventSynchronize(stop), "cudaEventSynchronize");
      float ms = 0;
      ck(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
      us[k].push_back(1000.0 * ms);
    }
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::array<double, 2> median{};
  for (int k = 0; k < 2; ++k) {
    std::sort(us[k].begin(), us[k].end());
    median[k] = us[k][us[k].size() / 2];
  }
  return median;
}

// The three GEMMs of one linear layer (forward, dinp, dweight) on each of two Gemms (cuBLASLt's
// first choice, tuned): microseconds, [gemm][which].
std::array<std::array<double, 2>, 3> time_linear(std::array<Gemm*, 2> gemms, const Linear& l,
                                                 int64_t T, const Buffers& buf, int repeats,
                                                 cudaStream_t stream) {
  const cudaDataType_t bf16 = CUDA_R_16BF;
  const auto forward = [&](Gemm* g) {
    return [&, g] {
      g->forward(buf.d, l.f32_out ? CUDA_R_32F : bf16, l.ld_out, buf.a, l.ld_inp, buf.b, bf16, T,
                 l.in, l.out);
    };
  };
  const auto dinp = [&](Gemm* g) {
    return [&, g] {
      g->backward_input(buf.d, l.ld_inp, l.accumulate_dinp, buf.a, l.ld_out, buf.b, bf16, T, l.in,
                        l.out);
    };
  };
  const auto dweight = [&](Gemm* g) {
    return [&, g] {
      g->backward_weight(static_cast<float*>(buf.d), buf.a, l.ld_out, buf.b, l.ld_inp, bf16, T,
                         l.in, l.out);
    };
  };
  return {time_us({forward(gemms[0]), forward(gemms[1])}, repeats, stream),
          time_us({dinp(gemms[0]), dinp(gemms[1])}, repeats, stream),
          time_us({dweight(gemms[0]), dweight(gemms[1])}, repeats, stream)};
}

}  // namespace

int main(int argc, char** argv) try {
  int repeats = 20;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--repeats") == 0) repeats = std::max(1, std::atoi(argv[i + 1]));
  }
  constexpr size_t kBytes = size_t(3) << 30;  // each operand buffer: the largest is 1.4B's logits
  Buffers buf{};
  for (void** p : {&buf.a, &buf.b, &buf.d}) {
    ck(cudaMalloc(p, kBytes), "cudaMalloc");
    ck(cudaMemset(*p, 0, kBytes), "cudaMemset");
  }
  constexpr size_t kWorkspace = size_t(32) << 20;  // as the CUDA backend's
  void* workspace = nullptr;
  ck(cudaMalloc(&workspace, kWorkspace), "cudaMalloc");
  cudaStream_t stream;
  ck(cudaStreamCreate(&stream), "cudaStreamCreate");
  const char* gemm_names[] = {"forward", "dinp", "dweight"};
  for (const Model m : {Model{"130m", 768, 24, 32768}, Model{"370m", 1024, 48, 16384},
                        Model{"1.4b", 2048, 48, 8192}}) {
    const int C = m.d_model, D = 2 * C, R = (C + 15) / 16, X = R + 2 * 16, Vp = 50280;
    constexpr int64_t kChunk = 4096;  // the LM head's tokens per chunk (lm_head.h)
    const int chunks = int(m.tokens / kChunk);
    // dt_proj's forward runs twice a step (backward rebuilds delta without keep_layer_inputs).
    const Linear linears[] = {
        {"in_proj", C, 2 * D, C, 2 * D, m.layers, m.layers, false, false},
        {"x_proj", D, X, D, X, m.layers, m.layers, false, true},
        {"dt_proj", R, D, X, D, 2 * m.layers, m.layers, false, false},
        {"out_proj", D, C, D, C, m.layers, m.layers, true, false},
        {"lm_head", C, Vp, C, Vp, chunks, chunks, false, false},
    };
    double total[2] = {0, 0};
    for (const Linear& l : linears) {
      const int64_t T = std::string(l.name) == "lm_head" ? kChunk : m.tokens;
      Gemm first(stream, workspace, kWorkspace, false), tuned(stream, workspace, kWorkspace, true);
      const auto us = time_linear({&first, &tuned}, l, T, buf, repeats, stream);
      for (int g = 0; g < 3; ++g) {
        const int calls = g == 0 ? l.forward_calls : l.backward_calls;
        for (int k = 0; k < 2; ++k) total[k] += us[g][k] * calls / 1000.0;
        std::printf(
            "{\"bench\": \"gemm\", \"model\": \"%s\", \"linear\": \"%s\", \"gemm\": \"%s\", "
            "\"T\": %lld, \"in\": %d, \"out\": %d, \"calls_per_step\": %d, \"first_us\": %.1f, "
            "\"tuned_us\": %.1f, \"saved_ms_per_step\": %.3f}\n",
            m.name, l.name, gemm_names[g], static_cast<long long>(T), l.in, l.out, calls, us[g][0],
            us[g][1], (us[g][0] - us[g][1]) * calls / 1000.0);
      }
    }
    std::printf(
        "{\"bench\": \"gemm_step\", \"model\": \"%s\", \"tokens\": %lld, \"first_ms_per_step\": "
        "%.3f, \"tuned_ms_per_step\": %.3f}\n",
        m.name, static_cast<long long>(m.tokens), total[0], total[1]);
    std::fflush(stdout);
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_gemm: %s\n", e.what());
  return 1;
}
