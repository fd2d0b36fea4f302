// cuBLASLt GEMMs for the linear layer; see gemm.h.
//
// Row-major to column-major: a row-major [r, c] matrix with row stride ld is, to cuBLAS, the
// column-major [c, r] matrix with leading dimension ld, i.e. its transpose. So
//   out = inp @ W^T      becomes  out^T [out, T]  = W_cm^T [out, in] * inp^T [in, T]
//   dinp = dout @ W      becomes  dinp^T [in, T]  = W_cm [in, out]   * dout^T [out, T]
//   dW += dout^T @ inp   becomes  dW^T [in, out] += inp^T [in, T]    * dout [T, out]
// where W_cm, the column-major view of W [out, in], is [in, out] with leading dimension in.
#include "kernels/cuda/gemm.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <limits>
#include <sstream>

#include "kernels/cuda/cuda_check.h"

namespace mamba::cuda {

namespace {

size_t element_bytes(cudaDataType_t t) {
  return t == CUDA_R_32F ? 4 : 2;
}

// The largest power of two up to 256 bytes that divides the address of every column: cuBLASLt
// assumes 256 unless told, and slices of wider buffers ([dt | B | C]) are less aligned.
uint32_t alignment(const void* p, int64_t ld, cudaDataType_t t) {
  const auto addr = reinterpret_cast<uintptr_t>(p);
  const auto stride = static_cast<uintptr_t>(ld) * element_bytes(t);
  uint32_t a = 256;
  while (a > 1 && (addr % a != 0 || stride % a != 0)) a /= 2;
  return a;
}

cublasLtMatrixLayout_t make_layout(cudaDataType_t t, int64_t rows, int64_t cols, int64_t ld) {
  cublasLtMatrixLayout_t layout = nullptr;
  check_cublas(cublasLtMatrixLayoutCreate(&layout, t, static_cast<uint64_t>(rows),
                                          static_cast<uint64_t>(cols), ld),
               "cublasLtMatrixLayoutCreate");
  return layout;
}

bool capturing(cudaStream_t stream) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  check_cuda(cudaStreamIsCapturing(stream, &status), "cudaStreamIsCapturing");
  return status != cudaStreamCaptureStatusNone;
}

}  // namespace

Gemm::Gemm(cudaStream_t stream, void* workspace, size_t workspace_bytes, bool tune)
    : stream_(stream), workspace_(workspace), workspace_bytes_(workspace_bytes), tune_(tune) {
  check_cublas(cublasLtCreate(&handle_), "cublasLtCreate");
}

Gemm::~Gemm() {
  for (auto& [key, plan] : plans_) {
    cublasLtMatrixLayoutDestroy(plan.a);
    cublasLtMatrixLayoutDestroy(plan.b);
    cublasLtMatrixLayoutDestroy(plan.d);
    cublasLtMatmulDescDestroy(plan.desc);
  }
  cublasLtDestroy(handle_);
}

const Gemm::Plan& Gemm::plan_for(const Problem& p) {
  const uint32_t align_a = alignment(p.A, p.lda, p.ab);
  const uint32_t align_b = alignment(p.B, p.ldb, p.ab);
  const uint32_t align_d = alignment(p.D, p.ldd, p.d_type);
  const Key key{p.trans_a, p.trans_b, p.m,      p.n,         p.k,     p.lda,   p.ldb,
                p.ldd,     p.ab,      p.d_type, p.beta != 0, align_a, align_b, align_d};
  const auto found = plans_.find(key);
  if (found != plans_.end()) return found->second;

  Plan plan;
  check_cublas(cublasLtMatmulDescCreate(&plan.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F),
               "cublasLtMatmulDescCreate");
  check_cublas(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSA, &p.trans_a,
                                              sizeof(p.trans_a)),
               "cublasLtMatmulDescSetAttribute(TRANSA)");
  check_cublas(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSB, &p.trans_b,
                                              sizeof(p.trans_b)),
               "cublasLtMatmulDescSetAttribute(TRANSB)");
  const bool a_plain = p.trans_a == CUBLAS_OP_N;
  const bool b_plain = p.trans_b == CUBLAS_OP_N;
  plan.a = make_layout(p.ab, a_plain ? p.m : p.k, a_plain ? p.k : p.m, p.lda);
  plan.b = make_layout(p.ab, b_plain ? p.k : p.n, b_plain ? p.n : p.k, p.ldb);
  plan.d = make_layout(p.d_type, p.m, p.n, p.ldd);

  cublasLtMatmulPreference_t pref = nullptr;
  check_cublas(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
  auto set_pref = [&](cublasLtMatmulPreferenceAttributes_t attr, const auto& value) {
    check_cublas(cublasLtMatmulPreferenceSetAttribute(pref, attr, &value, sizeof(value)),
                 "cublasLtMatmulPreferenceSetAttribute");
  };
  set_pref(CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, static_cast<uint64_t>(workspace_bytes_));
  set_pref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, align_a);
  set_pref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, align_b);
  set_pref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, align_d);
  set_pref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, align_d);
  // Tuning times candidates on the stream, which a graph capture cannot do.
  const int wanted = tune_ && p.beta == 0 && !capturing(stream_) ? kTuneCandidates : 1;
  std::array<cublasLtMatmulHeuristicResult_t, kTuneCandidates> results{};
  int found_algos = 0;
  const cublasStatus_t status =
      cublasLtMatmulAlgoGetHeuristic(handle_, plan.desc, plan.a, plan.b, plan.d, plan.d, pref,
                                     wanted, results.data(), &found_algos);
  cublasLtMatmulPreferenceDestroy(pref);
  if (status != CUBLAS_STATUS_SUCCESS || found_algos == 0) {
    throw_error("cublas error: no cuBLASLt algorithm for the GEMM m = ", p.m, ", n = ", p.n,
                ", k = ", p.k, " (lda ", p.lda, ", ldb ", p.ldb, ", ldd ", p.ldd, ", alignments ",
                align_a, "/", align_b, "/", align_d, "): ", cublasLtGetStatusString(status));
  }
  const auto adopted = adopted_.find(key);
  if (adopted != adopted_.end() && algo_fits(plan, adopted->second)) {
    plan.algo = adopted->second;
    plan.chosen = true;
  } else if (found_algos > 1) {
    plan.algo = tuned_algo(p, plan, results.data(), found_algos);
    plan.chosen = true;
  } else {
    plan.algo = results[0].algo;
  }
  return plans_.emplace(key, plan).first->second;
}

// The fastest candidate on p's own operands (p overwrites D, which the caller's run writes again
// afterwards). The candidates run in turns, one run each per turn, and each keeps the median of
// its timed turns: in a training step a GEMM finds its operands gone from the L2 cache, which a
// candidate repeated back to back would not. cuBLASLt's first choice stays unless another is at
// least 5% faster: the gains worth having are 7-20% (bench_gemm), and a closer call is noise.
cublasLtMatmulAlgo_t Gemm::tuned_algo(const Problem& p, const Plan& plan,
                                      const cublasLtMatmulHeuristicResult_t* candidates,
                                      int count) {
  constexpr int kTurns = 6;  // the first one warms up
  std::array<cudaEvent_t, 2 * kTuneCandidates> events{};
  for (int i = 0; i < 2 * count; ++i) check_cuda(cudaEventCreate(&events[i]), "cudaEventCreate");
  std::array<std::array<float, kTurns - 1>, kTuneCandidates> ms{};
  std::array<bool, kTuneCandidates> runs{};
  for (int turn = 0; turn < kTurns; ++turn) {
    for (int i = 0; i < count; ++i) {
      check_cuda(cudaEventRecord(events[2 * i], stream_), "cudaEventRecord");
      runs[i] = matmul(p, plan, candidates[i].algo) == CUBLAS_STATUS_SUCCESS;
      check_cuda(cudaEventRecord(events[2 * i + 1], stream_), "cudaEventRecord");
    }
    check_cuda(cudaEventSynchronize(events[2 * count - 1]), "cudaEventSynchronize");
    for (int i = 0; i < count && turn > 0; ++i) {
      check_cuda(cudaEventElapsedTime(&ms[i][turn - 1], events[2 * i], events[2 * i + 1]),
                 "cudaEventElapsedTime");
    }
  }
  for (int i = 0; i < 2 * count; ++i) cudaEventDestroy(events[i]);
  const auto median = [&](int i) {
    if (!runs[i]) return std::numeric_limits<float>::infinity();
    std::array<float, kTurns - 1> t = ms[i];
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
  };
  int best = 0;
  for (int i = 1; i < count; ++i) {
    if (median(i) < median(best) * 0.95f) best = i;
  }
  return candidates[best].algo;
}

bool Gemm::algo_fits(const Plan& plan, const cublasLtMatmulAlgo_t& algo) const {
  cublasLtMatmulHeuristicResult_t result{};
  return cublasLtMatmulAlgoCheck(handle_, plan.desc, plan.a, plan.b, plan.d, plan.d, &algo,
                                 &result) == CUBLAS_STATUS_SUCCESS &&
         result.workspaceSize <= workspace_bytes_;
}

std::string Gemm::header() const {
  int device = 0;
  check_cuda(cudaGetDevice(&device), "cudaGetDevice");
  cudaDeviceProp prop{};
  check_cuda(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
  std::ostringstream out;
  out << "gemm-algorithms 1 cublasLt " << cublasLtGetVersion() << " sm_" << prop.major << prop.minor
      << " " << prop.name;
  return out.str();
}

std::string Gemm::algorithms() const {
  std::map<Key, cublasLtMatmulAlgo_t> chosen = adopted_;
  for (const auto& [key, plan] : plans_) {
    if (plan.chosen) chosen[key] = plan.algo;
  }
  if (chosen.empty()) return {};
  std::ostringstream out;
  out << header() << "\n";
  for (const auto& [key, algo] : chosen) {
    for (const int64_t v : key) out << v << " ";
    out << std::hex;
    for (const uint64_t word : algo.data) out << " " << word;
    out << std::dec << "\n";
  }
  return out.str();
}

bool Gemm::adopt(const std::string& text) {
  if (text.empty()) return true;
  std::istringstream in(text);
  std::string line;
  std::getline(in, line);
  if (line != header()) return false;
  for (int n = 2; std::getline(in, line); ++n) {
    std::istringstream fields(line);
    Key key{};
    cublasLtMatmulAlgo_t algo{};
    for (int64_t& v : key) fields >> v;
    fields >> std::hex;
    for (uint64_t& word : algo.data) fields >> word;
    std::string rest;
    if (!fields || (fields >> rest)) {
      throw_error("the GEMM algorithm table, line ", n, ", is malformed (", key.size(),
                  " integers and ", std::size(algo.data), " hexadecimal words expected): '", line,
                  "'");
    }
    const auto planned = plans_.find(key);
    if (planned == plans_.end()) {
      adopted_[key] = algo;
    } else if (algo_fits(planned->second, algo)) {
      planned->second.algo = algo;
      planned->second.chosen = true;
    }
  }
  return true;
}

cublasStatus_t Gemm::matmul(const Problem& p, const Plan& plan, const cublasLtMatmulAlgo_t& algo) {
  const float alpha = 1.0f;
  return cublasLtMatmul(handle_, plan.desc, &alpha, p.A, plan.a, p.B, plan.b, &p.beta, p.D, plan.d,
                        p.D, plan.d, &algo, workspace_, workspace_bytes_, stream_);
}

void Gemm::run(const Problem& p) {
  const Plan& plan = plan_for(p);
  check_cublas(matmul(p, plan, plan.algo), "cublasLtMatmul");
}

void Gemm::forward(void* out, cudaDataType_t out_type, int64_t ld_out, const void* inp,
                   int64_t ld_inp, const void* weight, cudaDataType_t ab, int64_t T, int in_dim,
                   int out_dim) {
  if (T == 0) return;
  run({CUBLAS_OP_T, CUBLAS_OP_N, out_dim, T, in_dim, weight, in_dim, inp, ld_inp, out, ld_out, ab,
       out_type, 0.0f});
}

void Gemm::backward_input(void* dinp, int64_t ld_dinp, bool accumulate, const void* dout,
                          int64_t ld_dout, const void* weight, cudaDataType_t ab, int64_t T,
                          int in_dim, int out_dim) {
  if (T == 0) return;
  run({CUBLAS_OP_N, CUBLAS_OP_N, in_dim, T, out_dim, weight, in_dim, dout, ld_dout, dinp, ld_dinp,
       ab, ab, accumulate ? 1.0f : 0.0f});
}

void Gemm::backward_weight(float* dweight, const void* dout, int64_t ld_dout, const void* inp,
                           int64_t ld_inp, cudaDataType_t ab, int64_t T, int in_dim, int out_dim) {
  if (T == 0) return;
  run({CUBLAS_OP_N, CUBLAS_OP_T, in_dim, out_dim, T, inp, ld_inp, dout, ld_dout, dweight, in_dim,
       ab, CUDA_R_32F, 1.0f});
}

}  // namespace mamba::cuda
