// Times the memory-bound ops around the scan at the shapes of bench_train's rows and prints one
// JSON line per (op, shape): microseconds a call (CUDA events, median of 20 after 3 warm-up runs),
// the bytes it must move, the bandwidth that makes and the share of the device's copy bandwidth.
//   bench_ops
// Ops: conv1d + SiLU forward and backward (d_conv 4, x a slice of in_proj's [x | z] rows), the
// backward with x_proj's input gradient as its low-rank term and, for comparison, that gradient
// accumulated by cuBLASLt (the step's other way), and residual add + RMSNorm forward
// (residual_out over residual_in, as in the model), all bf16.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <functional>
#include <vector>

#include "bench_common.cuh"
#include "kernels/cuda/conv1d.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/rmsnorm.h"

namespace {

using bench::Buffer;
using bench::ck;
using bench::fill;
using bf16 = __nv_bfloat16;

constexpr double kCopyBytesPerS = 4.3e12;  // device-to-device copy, bytes read + written
constexpr int kK = 4;

struct Row {
  const char* model;
  int d_model;
  int batch;
  int64_t seqlen;
};

double time_us(const std::function<void()>& op) {
  cudaEvent_t e0, e1;
  ck(cudaEventCreate(&e0), "event"), ck(cudaEventCreate(&e1), "event");
  std::vector<double> us;
  for (int i = 0; i < 23; ++i) {
    ck(cudaEventRecord(e0), "record");
    op();
    ck(cudaEventRecord(e1), "record");
    ck(cudaEventSynchronize(e1), "sync");
    float ms = 0;
    ck(cudaEventElapsedTime(&ms, e0, e1), "elapsed");
    if (i >= 3) us.push_back(ms * 1e3);
  }
  cudaEventDestroy(e0), cudaEventDestroy(e1);
  return bench::median(us);
}

void report(const char* op, const Row& r, int channels, double bytes, double us) {
  const double gbps = bytes / (us * 1e-6) / 1e9;
  std::printf(
      "{\"op\": \"%s\", \"model\": \"%s\", \"batch\": %d, \"seqlen\": %lld, \"channels\": %d, "
      "\"us\": %.1f, \"bytes\": %.0f, \"bytes_bound_us\": %.1f, \"gb_per_s\": %.0f, "
      "\"share_of_copy_bandwidth\": %.2f}\n",
      op, r.model, r.batch, static_cast<long long>(r.seqlen), channels, us, bytes,
      bytes / kCopyBytesPerS * 1e6, gbps, gbps * 1e9 / kCopyBytesPerS);
  std::fflush(stdout);
}

void conv(const Row& r) {
  const int D = 2 * r.d_model;
  const int64_t T = r.batch * r.seqlen;
  const int64_t ld_x = 2 * D;
  Buffer<bf16> xz(T * ld_x), out(T * D), dout(T * D), dxz(T * ld_x);
  Buffer<float> w(D * kK), b(D), dw(D * kK), db(D);
  Buffer<char> ws(mamba::cuda::conv1d_backward_workspace_bytes(r.batch, r.seqlen, D, kK));
  fill(xz.p, T * ld_x, -2.f, 2.f, 1), fill(dout.p, T * D, -1.f, 1.f, 2);
  fill(w.p, D * kK, -0.5f, 0.5f, 3), fill(b.p, D, -0.5f, 0.5f, 4);
  fill(dw.p, D * kK, 0.f, 0.f, 5), fill(db.p, D, 0.f, 0.f, 5);
  const double elements = static_cast<double>(T) * D;
  const double fwd_us = time_us([&] {
    mamba::cuda::conv1d_silu_forward(out.p, xz.p, ld_x, w.p, b.p, r.batch, r.seqlen, D, kK,
                                     nullptr);
  });
  report("conv1d_silu_forward", r, D, elements * 2 * sizeof(bf16), fwd_us);
  // x and dout read, dx written; the partial sums (written and read once) are counted too.
  const double bwd_bytes =
      elements * 3 * sizeof(bf16) +
      2.0 * mamba::cuda::conv1d_backward_workspace_bytes(r.batch, r.seqlen, D, kK);
  const double bwd_us = time_us([&] {
    mamba::cuda::conv1d_silu_backward(dxz.p, dw.p, db.p, dout.p, xz.p, ld_x, w.p, b.p, r.batch,
                                      r.seqlen, D, kK, {}, ws.p, nullptr);
  });
  report("conv1d_silu_backward", r, D, bwd_bytes, bwd_us);

  // x_proj: dt_rank + 2 d_state output features.
  const int X = (r.d_model + 15) / 16 + 2 * 16;
  Buffer<bf16> a(T * X), weight(static_cast<int64_t>(X) * D);
  fill(a.p, T * X, -1.f, 1.f, 9), fill(weight.p, static_cast<int64_t>(X) * D, -0.1f, 0.1f, 10);
  const double lowrank_bytes = static_cast<double>(T) * X * sizeof(bf16);
  if (mamba::cuda::conv1d_lowrank_fits(D, ld_x, X, X, {dxz.p, dout.p, xz.p, a.p, weight.p})) {
    const double us = time_us([&] {
      mamba::cuda::conv1d_silu_backward(dxz.p, dw.p, db.p, dout.p, xz.p, ld_x, w.p, b.p, r.batch,
                                        r.seqlen, D, kK, {a.p, X, weight.p, X}, ws.p, nullptr);
    });
    report("conv1d_silu_backward_lowrank", r, D, bwd_bytes + lowrank_bytes, us);
  }
  constexpr size_t kWorkspace = size_t(32) << 20;  // as the CUDA backend's
  Buffer<char> workspace(kWorkspace);
  mamba::cuda::Gemm gemm(nullptr, workspace.p, kWorkspace, false);
  const double dinp_us = time_us(
      [&] { gemm.backward_input(dout.p, D, true, a.p, X, weight.p, CUDA_R_16BF, T, D, X); });
  report("x_proj_dinp_cublaslt", r, D, elements * 2 * sizeof(bf16) + lowrank_bytes, dinp_us);
}

void rmsnorm(const Row& r) {
  const int C = r.d_model;
  const int64_t T = r.batch * r.seqlen;
  Buffer<float> hidden(T * C), residual(T * C), rstd(T), weight(C);
  Buffer<bf16> normed(T * C);
  fill(hidden.p, T * C, -1.f, 1.f, 6), fill(residual.p, T * C, -1.f, 1.f, 7);
  fill(weight.p, C, 0.5f, 1.5f, 8);
  const double us = time_us([&] {
    mamba::cuda::residual_rmsnorm_forward(residual.p, normed.p, rstd.p, hidden.p, residual.p,
                                          weight.p, T, C, 1e-5f, nullptr);
  });
  // hidden and residual_in read, residual_out and normed written.
  report("residual_rmsnorm_forward", r, C, static_cast<double>(T) * C * (3 * 4 + 2), us);
}

}  // namespace

int main() {
  try {
    cudaDeviceProp prop{};
    ck(cudaGetDeviceProperties(&prop, 0), "properties");
    std::printf("{\"device\": \"%s\", \"sms\": %d}\n", prop.name, prop.multiProcessorCount);
    const Row rows[] = {{"130m", 768, 16, 2048},
                        {"370m", 1024, 8, 2048},
                        {"1.4b", 2048, 4, 2048},
                        {"130m", 768, 1, 65536},
                        {"1.4b", 2048, 1, 16384}};
    for (const Row& r : rows) {
      conv(r);
      rmsnorm(r);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_ops: %s\n", e.what());
    return 1;
  }
  return 0;
}
