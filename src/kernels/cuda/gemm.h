// The linear layer's GEMMs (kernels/cpu/linear.h) through cuBLASLt, in the row-major token-major
// terms of that header: weight [out_dim, in_dim] dense, inp / out / dout / dinp rows with explicit
// strides. Operands are fp32 or bf16 (`ab`); accumulation is always fp32 (CUBLAS_COMPUTE_32F, so
// fp32 operands get true fp32 products, never TF32). One cuBLASLt handle, the caller's workspace
// and a cache of matmul plans (descriptors + an algorithm) per problem, so a shape always runs the
// same algorithm and gives bit-identical results from call to call.
//
// The algorithm is cuBLASLt's first choice unless tuning is on. Tuned, a problem that overwrites
// its output times the heuristic's first kTuneCandidates choices on its own operands the first
// time it runs (the output is written again anyway) and keeps the fastest: 7-20% on some of the
// training step's projections (bench_gemm). Timing can choose differently from process to
// process, so the choices can be exported (`algorithms`) and imported (`adopt`) to run the same
// algorithms, and so get the same bits, elsewhere. Accumulating problems (beta = 1) keep the first
// choice: timing them would need a copy of their output.
#pragma once
#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

namespace mamba::cuda {

class Gemm {
 public:
  static constexpr int kTuneCandidates = 8;

  Gemm(cudaStream_t stream, void* workspace, size_t workspace_bytes, bool tune);
  ~Gemm();
  Gemm(const Gemm&) = delete;
  Gemm& operator=(const Gemm&) = delete;

  // out[t, o] = sum_i inp[t, i] * weight[o, i]; out in `out_type` (ab, or fp32 with bf16 ab).
  void forward(void* out, cudaDataType_t out_type, int64_t ld_out, const void* inp, int64_t ld_inp,
               const void* weight, cudaDataType_t ab, int64_t T, int in_dim, int out_dim);
  // dinp[t, i] (= or +=) sum_o dout[t, o] * weight[o, i]; dinp in `ab`.
  void backward_input(void* dinp, int64_t ld_dinp, bool accumulate, const void* dout,
                      int64_t ld_dout, const void* weight, cudaDataType_t ab, int64_t T, int in_dim,
                      int out_dim);
  // dweight[o, i] += sum_t dout[t, o] * inp[t, i]; dweight fp32 [out_dim, in_dim].
  void backward_weight(float* dweight, const void* dout, int64_t ld_dout, const void* inp,
                       int64_t ld_inp, cudaDataType_t ab, int64_t T, int in_dim, int out_dim);

  // The tuned and adopted choices as text: a first line naming the cuBLASLt version and the
  // device, then one line per problem. Empty when there are none.
  std::string algorithms() const;
  // Runs the choices of `text` (from algorithms(), here or in another process) from now on, for
  // problems planned already and problems to come; a choice cuBLASLt rejects for its problem is
  // left out. False, changing nothing, when text was written with another cuBLASLt version or on
  // another kind of device. Throws mamba::Error when text is malformed.
  bool adopt(const std::string& text);

 private:
  // A column-major problem D[m, n] = op(A) op(B) + beta D, as cuBLASLt sees it.
  struct Problem {
    cublasOperation_t trans_a, trans_b;
    int64_t m, n, k;
    const void* A;
    int64_t lda;
    const void* B;
    int64_t ldb;
    void* D;
    int64_t ldd;
    cudaDataType_t ab, d_type;
    float beta;
  };
  struct Plan {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
    cublasLtMatmulAlgo_t algo{};
    bool chosen = false;  // tuned or adopted, not the heuristic's first choice
  };
  using Key = std::array<int64_t, 14>;

  void run(const Problem& p);
  cublasStatus_t matmul(const Problem& p, const Plan& plan, const cublasLtMatmulAlgo_t& algo);
  const Plan& plan_for(const Problem& p);
  cublasLtMatmulAlgo_t tuned_algo(const Problem& p, const Plan& plan,
                                  const cublasLtMatmulHeuristicResult_t* candidates, int count);
  bool algo_fits(const Plan& plan, const cublasLtMatmulAlgo_t& algo) const;
  std::string header() const;

  cublasLtHandle_t handle_ = nullptr;
  cudaStream_t stream_;
  void* workspace_;
  size_t workspace_bytes_;
  bool tune_;
  std::map<Key, Plan> plans_;
  std::map<Key, cublasLtMatmulAlgo_t> adopted_;  // for problems not planned yet
};

}  // namespace mamba::cuda
