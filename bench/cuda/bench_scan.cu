// Times the CUDA selective scan at the shapes of docs/design.md section 3 and prints one JSON line
// per (shape, precision, segments): forward, backward and forward + backward milliseconds (CUDA
// events, medians over repeats after warm-up), the exp bound and the bytes bound, and the
// reference package's times measured on the same kind of GPU.
//   bench_scan           the three shapes, bf16, segments chosen by the plan
//   bench_scan --sweep   also each backward kernel (4 and 16 states per thread) at the plan's
//                        segments, other segment counts, and the fp32 path at the first shape
//   bench_scan --profile [N]  shape N of the sweep's list only (default 0: the first), named in
//                        one JSON line, then three untimed runs with the plan's segments (for
//                        Nsight Compute)
// Inputs are laid out as in the model: z is the second half of [x | z] rows, B and C are slices
// of [dt | B | C] rows (dt_rank = d_model / 16 with d_model = d_inner / 2).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench_common.cuh"
#include "kernels/cuda/act_type.h"
#include "kernels/cuda/scan.h"

namespace {

using bench::Buffer;
using bench::ck;
using bench::fill;
using bench::median;
using mamba::ScanShape;
using mamba::cuda::ScanTuning;

constexpr int kN = 16;
constexpr double kClockHz = 1.98e9;        // H200 boost clock seen under load
constexpr double kExpPerClock = 16;        // MUFU ex2 per clock per SM
constexpr double kCopyBytesPerS = 4.3e12;  // device-to-device copy, bytes read + written

struct Reference {
  double fwd_ms, fwd_bwd_ms;
};

struct Timing {
  double fwd_ms, bwd_ms, fwd_bwd_ms;
};

template <typename T>
Timing time_scan(const ScanShape& s, int R, const ScanTuning& tuning, int repeats) {
  const int64_t T_ = static_cast<int64_t>(s.batch) * s.seqlen;
  const int64_t td = T_ * s.d_inner;
  Buffer<T> u(td), delta(td), xz(T_ * s.ld_z), xbc(T_ * s.ld_bc), dout(td);
  Buffer<T> out(td), du(td), ddelta(td), dxz(T_ * s.ld_z), dxbc(T_ * s.ld_bc), reformed(td);
  Buffer<float> A(s.d_inner * kN), D(s.d_inner), bias(s.d_inner), dA(s.d_inner * kN), dD(s.d_inner),
      dbias(s.d_inner), last(static_cast<int64_t>(s.batch) * s.d_inner * kN);
  Buffer<T> ckpt(mamba::cuda::scan_checkpoint_bytes(s, mamba::ActTypeOf<T>::value) / sizeof(T));
  Buffer<char> ws(mamba::cuda::scan_workspace_bytes(s, tuning));
  fill(u.p, td, -2.f, 2.f, 1), fill(delta.p, td, -3.f, 0.f, 2),
      fill(xz.p, T_ * s.ld_z, -2.f, 2.f, 3);
  fill(xbc.p, T_ * s.ld_bc, -1.5f, 1.5f, 4), fill(dout.p, td, -1.f, 1.f, 5);
  fill(A.p, s.d_inner * kN, -16.f, -1.f, 6), fill(D.p, s.d_inner, 0.5f, 1.5f, 7);
  fill(bias.p, s.d_inner, -6.9f, -2.2f, 8);  // softplus^-1 of dt in [1e-3, 1e-1]
  fill(dA.p, s.d_inner * kN, 0.f, 0.f, 9), fill(dD.p, s.d_inner, 0.f, 0.f, 9);
  fill(dbias.p, s.d_inner, 0.f, 0.f, 9);

  constexpr mamba::ActType dt = mamba::ActTypeOf<T>::value;
  const mamba::ScanInputs in{
      {u.p, dt}, {delta.p, dt}, {xbc.p + R, dt}, {xbc.p + R + kN, dt}, {xz.p + s.d_inner, dt},
      A.p,       D.p,           bias.p};
  // As in training: the backward also re-forms the output, out_proj's input.
  const mamba::ScanGrads grads{
      {du.p, dt}, {ddelta.p, dt}, {dxbc.p + R, dt}, {dxbc.p + R + kN, dt}, {dxz.p + s.d_inner, dt},
      dA.p,       dD.p,           dbias.p,          {reformed.p, dt}};
  const mamba::Act out_act{out.p, dt};
  const mamba::ConstAct dout_act{dout.p, dt};
  auto forward = [&] {
    mamba::cuda::selective_scan_forward(s, in, out_act, last.p, ckpt.p, ws.p, nullptr, tuning);
  };
  auto backward = [&] {
    mamba::cuda::selective_scan_backward(s, in, dout_act, ckpt.p, grads, ws.p, nullptr, tuning);
  };
  cudaEvent_t e0, e1, e2;
  ck(cudaEventCreate(&e0), "event"), ck(cudaEventCreate(&e1), "event");
  ck(cudaEventCreate(&e2), "event");
  std::vector<double> f, b, fb;
  if (repeats == 0) f = b = fb = {0.0};
  for (int i = 0; i < repeats + 3; ++i) {
    ck(cudaEventRecord(e0), "record");
    forward();
    ck(cudaEventRecord(e1), "record");
    backward();
    ck(cudaEventRecord(e2), "record");
    ck(cudaEventSynchronize(e2), "sync");
    if (i < 3) continue;  // warm-up
    float t01, t12;
    ck(cudaEventElapsedTime(&t01, e0, e1), "elapsed"),
        ck(cudaEventElapsedTime(&t12, e1, e2), "elapsed");
    f.push_back(t01), b.push_back(t12), fb.push_back(t01 + t12);
  }
  cudaEventDestroy(e0), cudaEventDestroy(e1), cudaEventDestroy(e2);
  ck(cudaDeviceSynchronize(), "scan");
  return {median(f), median(b), median(fb)};
}

template <typename T>
void report(const ScanShape& s, int R, const Reference& ref, int segments, int sms, int repeats,
            int backward_states = 0) {
  const Timing t = time_scan<T>(s, R, ScanTuning{segments, backward_states}, repeats);
  const double elements = static_cast<double>(s.batch) * s.seqlen * s.d_inner;
  // 16 exps per element and pass: one pass forward, two backward (recompute, reverse).
  const double exp_fwd_ms = elements * kN / (kExpPerClock * sms * kClockHz) * 1e3;
  // Each tensor read or written once: u, delta, z, out forward; u, delta, z, dout, du, ddelta,
  // dz backward (B, C, dB, dC are 32 values per token, not per channel: negligible).
  const double bytes_fwd_bwd = elements * sizeof(T) * 11;
  const double bytes_ms = bytes_fwd_bwd / kCopyBytesPerS * 1e3;
  char reference[160] =
      "\"reference_fwd_ms\": null, \"reference_fwd_bwd_ms\": null, "
      "\"speedup_fwd_bwd_vs_reference\": null";  // not measured at this shape
  if (ref.fwd_ms > 0)
    std::snprintf(reference, sizeof reference,
                  "\"reference_fwd_ms\": %.2f, \"reference_fwd_bwd_ms\": %.2f, "
                  "\"speedup_fwd_bwd_vs_reference\": %.2f",
                  ref.fwd_ms, ref.fwd_bwd_ms, ref.fwd_bwd_ms / t.fwd_bwd_ms);
  std::printf(
      "{\"shape\": {\"batch\": %d, \"d_inner\": %d, \"seqlen\": %lld, \"d_state\": %d}, "
      "\"dtype\": \"%s\", \"segments\": \"%s\", \"backward_states\": \"%s\", \"fwd_ms\": %.3f, "
      "\"bwd_ms\": %.3f, "
      "\"fwd_bwd_ms\": %.3f, \"exp_bound_fwd_ms\": %.3f, \"exp_bound_fwd_bwd_ms\": %.3f, "
      "\"bytes_bound_fwd_bwd_ms\": %.3f, \"ratio_fwd_bwd_to_exp_bound\": %.2f, %s}\n",
      s.batch, s.d_inner, static_cast<long long>(s.seqlen), s.d_state,
      sizeof(T) == 2 ? "bf16" : "fp32", segments ? std::to_string(segments).c_str() : "auto",
      backward_states ? std::to_string(backward_states).c_str() : "auto", t.fwd_ms, t.bwd_ms,
      t.fwd_bwd_ms, exp_fwd_ms, 3 * exp_fwd_ms, bytes_ms, t.fwd_bwd_ms / (3 * exp_fwd_ms),
      reference);
  std::fflush(stdout);
}

// --profile's shape index: a whole number from 0 to count - 1.
int shape_index(const char* arg, int count) {
  char* end = nullptr;
  const long n = std::strtol(arg, &end, 10);
  if (*arg == '\0' || *end != '\0' || n < 0 || n >= count)
    throw std::runtime_error(std::string("--profile ") + arg + ": give a shape index from 0 to " +
                             std::to_string(count - 1));
  return static_cast<int>(n);
}

}  // namespace

int main(int argc, char** argv) {
  const bool sweep = argc > 1 && std::strcmp(argv[1], "--sweep") == 0;
  const bool profile = argc > 1 && std::strcmp(argv[1], "--profile") == 0;
  try {
    struct Case {
      int batch, d_inner;
      int64_t seqlen;
      Reference ref;
      std::vector<int> sweep_segments;
    };
    // The sweep adds the model rows of bench_train where the plan may cut the sequence into
    // segments (370M 8 x 2048, 1.4B at 1-4 x 2048 and the long-context rows 130M 1 x 65536, 1.4B
    // 1 x 16384), to compare the plan's choice with its neighbours.
    const Case cases[] = {{16, 1536, 2048, {0.89, 4.54}, {2}},
                          {8, 4096, 2048, {1.17, 6.01}, {2}},
                          {2, 1536, 16384, {1.07, 5.00}, {4, 8, 16, 22, 33, 44}},
                          {8, 2048, 2048, {}, {1, 2, 3, 8}},
                          {4, 4096, 2048, {}, {1, 2, 3, 8}},
                          {3, 4096, 2048, {}, {1, 2, 3}},
                          {2, 4096, 2048, {}, {1, 2, 3, 4}},
                          {1, 4096, 2048, {}, {1, 2, 3, 4, 6}},
                          {1, 1536, 65536, {}, {8, 16, 22, 33, 44, 66, 88}},
                          {1, 4096, 16384, {}, {4, 6, 8, 12, 16, 24, 32}}};
    constexpr int kCases = static_cast<int>(std::size(cases));
    const int profile_case = profile && argc > 2 ? shape_index(argv[2], kCases) : 0;
    int device = 0, sms = 0;
    ck(cudaGetDevice(&device), "cudaGetDevice");
    ck(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), "attribute");
    cudaDeviceProp prop{};
    ck(cudaGetDeviceProperties(&prop, device), "properties");
    std::printf("{\"device\": \"%s\", \"sms\": %d}\n", prop.name, sms);

    for (const Case& c : cases) {
      if (profile && &c != &cases[profile_case]) continue;
      if (c.ref.fwd_ms == 0 && !sweep && !profile) break;
      const int R = (c.d_inner / 2 + 15) / 16;  // dt_rank of d_model = d_inner / 2
      const ScanShape s{c.batch,   c.seqlen, c.d_inner, kN, 2 * static_cast<int64_t>(c.d_inner),
                        R + 2 * kN};
      if (profile) {
        std::printf(
            "{\"bench\": \"scan_profile\", \"shape\": {\"batch\": %d, \"d_inner\": %d, "
            "\"seqlen\": %lld, \"d_state\": %d}}\n",
            s.batch, s.d_inner, static_cast<long long>(s.seqlen), s.d_state);
        std::fflush(stdout);
        time_scan<__nv_bfloat16>(s, R, {}, 0);
        break;
      }
      report<__nv_bfloat16>(s, R, c.ref, 0, sms, 20);
      if (!sweep) continue;
      for (int states : {4, 16}) report<__nv_bfloat16>(s, R, c.ref, 0, sms, 20, states);
      for (int seg : c.sweep_segments) report<__nv_bfloat16>(s, R, c.ref, seg, sms, 20);
      if (&c == &cases[0]) report<float>(s, R, c.ref, 0, sms, 20);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_scan: %s\n", e.what());
    return 1;
  }
  return 0;
}
