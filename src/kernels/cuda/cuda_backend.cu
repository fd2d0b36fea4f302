// The CUDA backend: each Backend op (math in kernels/cpu/*.h) forwards to its kernel file in this
// folder, instantiated for the activation type chosen at construction (bf16, or fp32 for the
// debugging path). Everything runs in order on one stream owned by the backend; the ops that
// return a host value (lm_head_loss, sum_of_squares) and download synchronize it.
//
// Memory: device allocations go through cudaMalloc and are counted for peak_memory(). Ops that
// need temporary memory (sort buffers, partial sums, logits chunks, the scan's workspace) share
// one scratch buffer that grows to the largest request seen; the stream orders its users. The
// cuBLASLt workspace is separate (32 MiB) because GEMMs run while an op holds the scratch.
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <unordered_map>

#include "kernels/cuda/adamw.h"
#include "kernels/cuda/conv1d.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/embedding.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/lm_head.h"
#include "kernels/cuda/rmsnorm.h"
#include "kernels/cuda/scan.h"

namespace mamba {

namespace {

using bf16 = __nv_bfloat16;

constexpr size_t kGemmWorkspaceBytes = size_t{32} << 20;

template <typename T>
T* as(Act p) {
  return static_cast<T*>(p);
}
template <typename T>
const T* as(ConstAct p) {
  return static_cast<const T*>(p);
}

// Dense bf16 tensor-core peak by device name; 0 when unknown.
double peak_bf16_flops(const std::string& device_name) {
  if (device_name.find("H200") != std::string::npos) return 989e12;
  if (device_name.find("H100") != std::string::npos) {
    return device_name.find("PCIe") != std::string::npos ? 756e12 : 989e12;
  }
  return 0.0;
}

double gib(size_t bytes) {
  return static_cast<double>(bytes) / (1 << 30);
}

class CudaBackend final : public Backend {
 public:
  CudaBackend(int device, bool bf16) : bf16_(bf16), device_(device) {
    const int count = cuda_device_count();
    if (device < 0 || device >= count) {
      throw_error("cuda error: device ", device, " requested but ", count,
                  " CUDA device(s) are usable: pick a device in [0, ", count, ")");
    }
    cuda::check_cuda(cudaSetDevice(device), "cudaSetDevice");
    cudaDeviceProp prop{};
    cuda::check_cuda(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
    name_ = "cuda:" + std::to_string(device) + " (" + prop.name + ")";
    peak_flops_ = peak_bf16_flops(prop.name);
    cuda::check_cuda(cudaStreamCreate(&stream_), "cudaStreamCreate");
    cuda::check_cuda(cudaStreamCreateWithFlags(&side_stream_, cudaStreamNonBlocking),
                     "cudaStreamCreateWithFlags");
    gemm_workspace_ = allocate(kGemmWorkspaceBytes);
    gemm_ = std::make_unique<cuda::Gemm>(stream_, gemm_workspace_, kGemmWorkspaceBytes);
  }

  ~CudaBackend() override {
    cudaStreamSynchronize(stream_);
    gemm_.reset();
    for (const auto& [p, bytes] : sizes_) cudaFree(p);
    cudaFreeHost(staging_);
    cudaStreamDestroy(side_stream_);
    cudaStreamDestroy(stream_);
  }

  std::string name() const override { return name_; }
  size_t act_bytes() const override { return bf16_ ? sizeof(bf16) : sizeof(float); }
  double peak_flops() const override { return peak_flops_; }
  void* native_stream() const override { return stream_; }

  // The kernels are compiled for these shapes (scan.cu's kN, conv1d.cu's widths).
  void check_layer_shape(int d_state, int d_conv) const override {
    if (d_state != 16) {
      throw_error("config error: model.d_state = ", d_state,
                  ": the CUDA backend supports d_state = 16 only; set model.d_state=16 or "
                  "train.device=cpu");
    }
    if (d_conv < 2 || d_conv > 4) {
      throw_error("config error: model.d_conv = ", d_conv,
                  ": the CUDA backend supports d_conv 2, 3 or 4; change model.d_conv or set "
                  "train.device=cpu");
    }
  }

  // ---- memory ----
  void* allocate(size_t bytes) override {
    if (bytes == 0) return nullptr;
    void* p = nullptr;
    const cudaError_t e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess) {
      cudaGetLastError();  // an allocation failure must not resurface at the next launch check
      throw_error("out of memory: cannot allocate ", gib(bytes), " GiB on ", name_, " (",
                  gib(current_), " GiB already allocated by this process): ", cudaGetErrorString(e),
                  "; reduce train.micro_batch or the sequence length");
    }
    sizes_[p] = bytes;
    current_ += bytes;
    peak_ = std::max(peak_, current_);
    return p;
  }
  void release(void* p) override {
    if (!p) return;
    const auto found = sizes_.find(p);
    if (found == sizes_.end())
      throw_error("cuda error: release of a pointer this backend did not allocate");
    cuda::check_cuda(cudaFree(p), "cudaFree");
    current_ -= found->second;
    sizes_.erase(found);
  }
  void upload(void* dst, const void* host_src, size_t bytes) override {
    cuda::check_cuda(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, stream_),
                     "cudaMemcpyAsync (upload)");
  }
  void download(void* host_dst, const void* src, size_t bytes) override {
    cuda::check_cuda(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, stream_),
                     "cudaMemcpyAsync (download)");
    synchronize();
  }
  void fill_zero(void* dst, size_t bytes) override {
    cuda::check_cuda(cudaMemsetAsync(dst, 0, bytes, stream_), "cudaMemsetAsync");
  }
  void copy(void* dst, const void* src, size_t bytes) override {
    cuda::check_cuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_),
                     "cudaMemcpyAsync (copy)");
  }
  // Through a pinned staging buffer, so that the copy is a true DMA on the side stream whatever
  // memory host_dst is; the runtime's current device is per thread, hence cudaSetDevice.
  void download_concurrent(void* host_dst, const void* src, size_t bytes) override {
    cuda::check_cuda(cudaSetDevice(device_), "cudaSetDevice");
    if (!staging_) {
      cuda::check_cuda(cudaMallocHost(&staging_, kStagingBytes), "cudaMallocHost (staging)");
    }
    for (size_t done = 0; done < bytes; done += kStagingBytes) {
      const size_t n = std::min(kStagingBytes, bytes - done);
      cuda::check_cuda(cudaMemcpyAsync(staging_, static_cast<const char*>(src) + done, n,
                                       cudaMemcpyDeviceToHost, side_stream_),
                       "cudaMemcpyAsync (concurrent download)");
      cuda::check_cuda(cudaStreamSynchronize(side_stream_), "cudaStreamSynchronize (side)");
      std::memcpy(static_cast<char*>(host_dst) + done, staging_, n);
    }
  }
  void synchronize() override {
    cuda::check_cuda(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
  }
  size_t peak_memory() const override { return peak_; }

  void to_act(Act dst, const float* src, int64_t n) override {
    if (bf16_) {
      cuda::to_bf16(as<bf16>(dst), src, n, stream_);
    } else if (dst != src) {
      cuda::check_cuda(
          cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice, stream_),
          "cudaMemcpyAsync (to_act)");
    }
  }

  // ---- layer ops ----
  void embedding_forward(float* out, const int32_t* ids, const float* table, int64_t T,
                         int C) override {
    cuda::embedding_forward(out, ids, table, T, C, stream_);
  }
  void embedding_backward(float* dtable, const float* dout, const int32_t* ids, int64_t T,
                          int C) override {
    void* ws = scratch(cuda::embedding_backward_workspace_bytes(T));
    cuda::embedding_backward(dtable, dout, ids, T, C, ws, stream_);
  }
  void residual_rmsnorm_forward(float* residual_out, Act normed, float* rstd, const float* hidden,
                                const float* residual_in, const float* weight, int64_t T, int C,
                                float eps) override {
    with_act([&](auto tag) {
      using A = decltype(tag);
      cuda::residual_rmsnorm_forward(residual_out, as<A>(normed), rstd, hidden, residual_in, weight,
                                     T, C, eps, stream_);
    });
  }
  void rmsnorm_backward(float* dresidual, float* dweight, ConstAct dnormed,
                        const float* residual_out, const float* rstd, const float* weight,
                        int64_t T, int C) override {
    void* ws = scratch(cuda::rmsnorm_backward_workspace_bytes(T, C));
    with_act([&](auto tag) {
      using A = decltype(tag);
      cuda::rmsnorm_backward(dresidual, dweight, as<A>(dnormed), residual_out, rstd, weight, T, C,
                             ws, stream_);
    });
  }
  void linear_forward(Act out, int64_t ld_out, ConstAct inp, int64_t ld_inp, ConstAct weight,
                      int64_t T, int in_dim, int out_dim) override {
    gemm_->forward(out, act_type(), ld_out, inp, ld_inp, weight, act_type(), T, in_dim, out_dim);
  }
  void linear_forward_f32(float* out, int64_t ld_out, ConstAct inp, int64_t ld_inp, ConstAct weight,
                          int64_t T, int in_dim, int out_dim) override {
    gemm_->forward(out, CUDA_R_32F, ld_out, inp, ld_inp, weight, act_type(), T, in_dim, out_dim);
  }
  void linear_backward(Act dinp, int64_t ld_dinp, bool accumulate_dinp, float* dweight,
                       ConstAct dout, int64_t ld_dout, ConstAct inp, int64_t ld_inp,
                       ConstAct weight, int64_t T, int in_dim, int out_dim) override {
    if (dinp) {
      gemm_->backward_input(dinp, ld_dinp, accumulate_dinp, dout, ld_dout, weight, act_type(), T,
                            in_dim, out_dim);
    }
    gemm_->backward_weight(dweight, dout, ld_dout, inp, ld_inp, act_type(), T, in_dim, out_dim);
  }
  void conv1d_silu_forward(Act out, ConstAct x, int64_t ld_x, const float* weight,
                           const float* bias, int batch, int64_t seqlen, int D, int K) override {
    with_act([&](auto tag) {
      using A = decltype(tag);
      cuda::conv1d_silu_forward(as<A>(out), as<A>(x), ld_x, weight, bias, batch, seqlen, D, K,
                                stream_);
    });
  }
  void conv1d_silu_backward(Act dx, float* dweight, float* dbias, ConstAct dout, ConstAct x,
                            int64_t ld_x, const float* weight, const float* bias, int batch,
                            int64_t seqlen, int D, int K) override {
    void* ws = scratch(cuda::conv1d_backward_workspace_bytes(batch, seqlen, D, K));
    with_act([&](auto tag) {
      using A = decltype(tag);
      cuda::conv1d_silu_backward(as<A>(dx), dweight, dbias, as<A>(dout), as<A>(x), ld_x, weight,
                                 bias, batch, seqlen, D, K, ws, stream_);
    });
  }

  // ---- the selective scan (kernels/cuda/scan.h) ----
  size_t scan_saved_bytes(const cpu::ScanShape& s) const override {
    return cuda::scan_checkpoint_bytes(s);
  }
  void selective_scan_forward(Act out, float* last_state, void* saved, ConstAct u, ConstAct delta,
                              const float* A, ConstAct B, ConstAct C, const float* D,
                              const float* delta_bias, ConstAct z,
                              const cpu::ScanShape& s) override {
    void* ws = scratch(cuda::scan_workspace_bytes(s));
    with_act([&](auto tag) {
      using E = decltype(tag);
      cuda::selective_scan_forward(as<E>(out), last_state, static_cast<float*>(saved), as<E>(u),
                                   as<E>(delta), A, as<E>(B), as<E>(C), D, delta_bias, as<E>(z), s,
                                   ws, stream_);
    });
  }
  void selective_scan_backward(Act du, Act ddelta, float* dA, Act dB, Act dC, float* dD,
                               float* ddelta_bias, Act dz, ConstAct dout, const void* saved,
                               ConstAct u, ConstAct delta, const float* A, ConstAct B, ConstAct C,
                               const float* D, const float* delta_bias, ConstAct z,
                               const cpu::ScanShape& s) override {
    void* ws = scratch(cuda::scan_workspace_bytes(s));
    with_act([&](auto tag) {
      using E = decltype(tag);
      cuda::selective_scan_backward(as<E>(du), as<E>(ddelta), dA, as<E>(dB), as<E>(dC), dD,
                                    ddelta_bias, as<E>(dz), as<E>(dout), as<E>(u), as<E>(delta), A,
                                    as<E>(B), as<E>(C), D, delta_bias, as<E>(z),
                                    static_cast<const float*>(saved), s, ws, stream_);
    });
  }

  double lm_head_loss(ConstAct normed, ConstAct E, const int32_t* targets, int64_t T, int C, int Vp,
                      float grad_scale, Act dnormed, float* dE, float* logits_out) override {
    void* ws = scratch(cuda::lm_head_workspace_bytes(T, Vp, act_bytes(), dnormed != nullptr,
                                                     logits_out != nullptr));
    double loss = 0.0;
    with_act([&](auto tag) {
      using A = decltype(tag);
      loss = cuda::lm_head_loss(*gemm_, as<A>(normed), as<A>(E), targets, T, C, Vp, grad_scale,
                                as<A>(dnormed), dE, logits_out, ws, stream_);
    });
    return loss;
  }

  // ---- elementwise and the optimizer ----
  void negative_exp(float* out, const float* in, int64_t n) override {
    cuda::negative_exp(out, in, n, stream_);
  }
  void mul_accumulate(float* dst, const float* a, const float* b, int64_t n) override {
    cuda::mul_accumulate(dst, a, b, n, stream_);
  }
  double sum_of_squares(const float* x, int64_t n) override {
    const size_t partial_bytes = cuda::sum_of_squares_workspace_bytes();
    char* ws = static_cast<char*>(scratch(partial_bytes + sizeof(double)));
    double* result = reinterpret_cast<double*>(ws + partial_bytes);
    cuda::sum_of_squares(result, x, n, ws, stream_);
    double total = 0.0;
    download(&total, result, sizeof(double));
    return total;
  }
  void scale(float* x, int64_t n, float s) override { cuda::scale(x, n, s, stream_); }
  void adamw_update(float* param, const float* grad, float* m, float* v, int64_t n,
                    const cpu::AdamWHyper& h) override {
    cuda::adamw_update(param, grad, m, v, n, h, stream_);
  }

 private:
  cudaDataType_t act_type() const { return bf16_ ? CUDA_R_16BF : CUDA_R_32F; }

  // Calls f with a value of the activation type, for the ops whose kernels are templates on it.
  template <typename F>
  void with_act(F&& f) {
    if (bf16_) {
      f(bf16{});
    } else {
      f(float{});
    }
  }

  // The shared temporary buffer, grown (never shrunk) to at least `bytes`.
  void* scratch(size_t bytes) {
    if (bytes > scratch_bytes_) {
      release(scratch_);  // cudaFree waits for the kernels still using it
      scratch_ = nullptr;
      scratch_bytes_ = 0;
      scratch_ = allocate(bytes);
      scratch_bytes_ = bytes;
    }
    return scratch_;
  }

  static constexpr size_t kStagingBytes = size_t{64} << 20;

  bool bf16_;
  int device_;
  std::string name_;
  double peak_flops_ = 0.0;
  cudaStream_t stream_ = nullptr;
  cudaStream_t side_stream_ = nullptr;  // download_concurrent's
  void* staging_ = nullptr;             // pinned, kStagingBytes, allocated at first use
  std::unordered_map<void*, size_t> sizes_;
  size_t current_ = 0, peak_ = 0;
  void* scratch_ = nullptr;
  size_t scratch_bytes_ = 0;
  void* gemm_workspace_ = nullptr;
  std::unique_ptr<cuda::Gemm> gemm_;
};

}  // namespace

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // no driver: not an error for callers that fall back to the CPU
    return 0;
  }
  return n;
}

std::unique_ptr<Backend> make_cuda_backend(int device, bool bf16) {
  return std::make_unique<CudaBackend>(device, bf16);
}

}  // namespace mamba
