// The CUDA backend: each Backend op (math in kernels/cpu/*.h) forwards to its kernel file in this
// folder, instantiated for the activation type chosen at construction (bf16, or fp32 for the
// debugging path). Everything runs in order on one stream owned by the backend; the ops that
// return a host value (lm_head_loss, sum_of_squares_of_spans) and download synchronize it.
//
// Memory: device allocations go through cudaMalloc and are counted for peak_memory(). Ops that
// need temporary memory (sort buffers, partial sums, logits chunks, the scan's workspace) share
// one scratch buffer that grows to the largest request seen; the stream orders its users. The
// cuBLASLt workspace is separate (32 MiB) because GEMMs run while an op holds the scratch. What
// the process takes on the device outside the backend (NCCL's buffers above all: hundreds of MiB
// that NCCL allocates itself) is measured with cudaMemGetInfo against the device's use when the
// backend started, and counted in the peak too.
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "kernels/cuda/act_type.h"
#include "kernels/cuda/adamw.h"
#include "kernels/cuda/conv1d.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/embedding.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/init_fill.h"
#include "kernels/cuda/lm_head.h"
#include "kernels/cuda/recurrent.h"
#include "kernels/cuda/rmsnorm.h"
#include "kernels/cuda/scan.h"
#include "kernels/cuda/skinny_gemm.h"

namespace mamba {

namespace {

using bf16 = __nv_bfloat16;

constexpr size_t kGemmWorkspaceBytes = size_t{32} << 20;

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

// Records a step in a CUDA graph and replays it. The first call with a new key runs the step
// directly: it warms up what must not happen inside a capture (cuBLASLt's choice of algorithms),
// and its work is real, so nothing is run twice. The next call records, then every call replays.
class GraphRecorder final : public StepRecorder {
 public:
  explicit GraphRecorder(cudaStream_t stream) : stream_(stream) {}
  ~GraphRecorder() override { drop(); }

  void run(int64_t key, const std::function<void()>& step) override {
    if (key != key_ || !warm_) {
      drop();
      key_ = key;
      warm_ = true;
      step();
      return;
    }
    if (!exec_) record(step);
    cuda::check_cuda(cudaGraphLaunch(exec_, stream_), "cudaGraphLaunch");
  }

 private:
  void record(const std::function<void()>& step) {
    // Thread-local: the checkpoint writer's thread may use the runtime meanwhile.
    cuda::check_cuda(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal),
                     "cudaStreamBeginCapture");
    cudaGraph_t graph = nullptr;
    try {
      step();
    } catch (...) {
      cudaStreamEndCapture(stream_, &graph);  // leaves the stream usable
      if (graph) cudaGraphDestroy(graph);
      cudaGetLastError();
      throw;
    }
    cuda::check_cuda(cudaStreamEndCapture(stream_, &graph),
                     "cudaStreamEndCapture (the step queued work a graph cannot hold)");
    const cudaError_t e = cudaGraphInstantiate(&exec_, graph, 0);
    cudaGraphDestroy(graph);
    if (e != cudaSuccess) exec_ = nullptr;
    cuda::check_cuda(e, "cudaGraphInstantiate");
  }
  void drop() {
    if (exec_) {
      cudaStreamSynchronize(stream_);  // a launch may still be running
      cudaGraphExecDestroy(exec_);
    }
    exec_ = nullptr;
    warm_ = false;
  }

  cudaStream_t stream_;
  cudaGraphExec_t exec_ = nullptr;
  int64_t key_ = 0;
  bool warm_ = false;
};

class CudaBackend final : public Backend {
 public:
  CudaBackend(int device, bool bf16, bool tune_gemms) : bf16_(bf16), device_(device) {
    const int count = cuda_device_count();
    if (device < 0 || device >= count) {
      throw_error("cuda error: device ", device, " requested but ", count,
                  " CUDA device(s) are usable: pick a device in [0, ", count, ")");
    }
    cuda::check_cuda(cudaSetDevice(device), "cudaSetDevice");
    cuda::check_cuda(cudaFree(nullptr), "cudaFree (context creation)");
    in_use_at_start_ = device_in_use();
    cudaDeviceProp prop{};
    cuda::check_cuda(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
    name_ = "cuda:" + std::to_string(device) + " (" + prop.name + ")";
    peak_flops_ = peak_bf16_flops(prop.name);
    sm_count_ = prop.multiProcessorCount;
    tensor_core_bf16_ = prop.major >= 8;
    clusters_ = prop.major >= 9;
    cuda::check_cuda(cudaStreamCreate(&stream_), "cudaStreamCreate");
    cuda::check_cuda(cudaStreamCreateWithFlags(&side_stream_, cudaStreamNonBlocking),
                     "cudaStreamCreateWithFlags");
    gemm_workspace_ = allocate(kGemmWorkspaceBytes);
    gemm_ = std::make_unique<cuda::Gemm>(stream_, gemm_workspace_, kGemmWorkspaceBytes, tune_gemms);
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
  ActType act_type() const override { return bf16_ ? ActType::BF16 : ActType::F32; }
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
    measure_outside();  // before the allocation raises the count
    void* p = nullptr;
    const cudaError_t e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess) {
      cudaGetLastError();  // an allocation failure must not resurface at the next launch check
      throw_error("out of memory: cannot allocate ", gib(bytes), " GiB on ", name_, " (",
                  gib(allocated_ + outside_),
                  " GiB already taken by this process): ", cudaGetErrorString(e),
                  "; reduce train.micro_batch or the sequence length");
    }
    sizes_[p] = bytes;
    allocated_ += bytes;
    peak_ = std::max(peak_, allocated_ + outside_);
    peak_allocated_ = std::max(peak_allocated_, allocated_);
    return p;
  }
  void release(void* p) override {
    if (!p) return;
    const auto found = sizes_.find(p);
    if (found == sizes_.end())
      throw_error("cuda error: release of a pointer this backend did not allocate");
    cuda::check_cuda(cudaFree(p), "cudaFree");
    allocated_ -= found->second;
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
  size_t peak_memory() const override {
    measure_outside();
    return peak_;
  }
  size_t outside_memory() const override {
    measure_outside();
    return outside_;
  }
  size_t peak_allocated() const override { return peak_allocated_; }

  void to_act(Act dst, const float* src, int64_t n) override {
    with_act("to_act", [&](auto act) {
      auto* out = act(dst, "dst");
      if constexpr (std::is_same_v<decltype(out), bf16*>) {
        cuda::to_bf16(out, src, n, stream_);
      } else if (out != src) {
        cuda::check_cuda(
            cudaMemcpyAsync(out, src, n * sizeof(float), cudaMemcpyDeviceToDevice, stream_),
            "cudaMemcpyAsync (to_act)");
      }
    });
  }

  void init_fill(const InitFill& op) override { cuda::init_fill(op, stream_); }

  // ---- layer ops ----
  void embedding_forward(const EmbeddingForward& op) override {
    cuda::embedding_forward(op.out, op.ids, op.table, op.T, op.C, stream_);
  }
  void embedding_backward(const EmbeddingBackward& op) override {
    void* ws = scratch(cuda::embedding_backward_workspace_bytes(op.T));
    cuda::embedding_backward(op.dtable, op.dout, op.ids, op.T, op.C, ws, stream_);
  }
  void residual_rmsnorm_forward(const RmsNormForward& op) override {
    with_act("residual_rmsnorm_forward", [&](auto act) {
      cuda::residual_rmsnorm_forward(op.residual_out, act(op.normed, "normed"), op.rstd, op.hidden,
                                     op.residual_in, op.weight, op.T, op.C, op.eps, stream_);
    });
  }
  void rmsnorm_backward(const RmsNormBackward& op) override {
    void* ws = scratch(cuda::rmsnorm_backward_workspace_bytes(op.T, op.C));
    with_act("rmsnorm_backward", [&](auto act) {
      cuda::rmsnorm_backward(op.dresidual, act(op.dresidual_act, "dresidual_act"), op.dweight,
                             act(op.dnormed, "dnormed"), op.residual_out, op.rstd, op.weight, op.T,
                             op.C, ws, stream_);
    });
  }
  // out may be fp32 (the residual stream) or in the activation type. A few rows in bf16
  // (decoding) go to the skinny kernel, which reads the weights at full bandwidth where
  // cuBLASLt's tiles for large T would leave most SMs idle.
  void linear_forward(const LinearForward& op) override {
    with_act("linear_forward", [&](auto act) {
      const bool f32_out = op.out.type == ActType::F32;
      void* out = f32_out ? op.out.data : act(op.out, "out");
      if constexpr (std::is_same_v<decltype(act), ActCast<bf16>>) {
        const bf16* inp = act(op.inp, "inp");
        const bf16* weight = act(op.weight, "weight");
        if (tensor_core_bf16_ &&
            cuda::skinny_linear_fits(inp, op.ld_inp, weight, op.T, op.in_dim, op.out_dim)) {
          if (f32_out) {
            cuda::skinny_linear_forward(static_cast<float*>(out), op.ld_out, inp, op.ld_inp, weight,
                                        op.T, op.in_dim, op.out_dim, sm_count_, clusters_, stream_);
          } else {
            cuda::skinny_linear_forward(static_cast<bf16*>(out), op.ld_out, inp, op.ld_inp, weight,
                                        op.T, op.in_dim, op.out_dim, sm_count_, clusters_, stream_);
          }
          return;
        }
      }
      gemm_->forward(out, f32_out ? CUDA_R_32F : cuda_act_type(), op.ld_out, act(op.inp, "inp"),
                     op.ld_inp, act(op.weight, "weight"), cuda_act_type(), op.T, op.in_dim,
                     op.out_dim);
    });
  }
  void linear_backward(const LinearBackward& op) override {
    with_act("linear_backward", [&](auto act) {
      if (op.dinp.data) {
        gemm_->backward_input(act(op.dinp, "dinp"), op.ld_dinp, op.accumulate_dinp,
                              act(op.dout, "dout"), op.ld_dout, act(op.weight, "weight"),
                              cuda_act_type(), op.T, op.in_dim, op.out_dim);
      }
      if (op.dweight) {
        gemm_->backward_weight(op.dweight, act(op.dout, "dout"), op.ld_dout, act(op.inp, "inp"),
                               op.ld_inp, cuda_act_type(), op.T, op.in_dim, op.out_dim);
      }
    });
  }
  void conv1d_silu_forward(const Conv1dShape& s, const Conv1dForward& op) override {
    with_act("conv1d_silu_forward", [&](auto act) {
      cuda::conv1d_silu_forward(act(op.out, "out"), act(op.x, "x"), s.ld_x, op.weight, op.bias,
                                s.batch, s.seqlen, s.D, s.K, stream_);
    });
  }
  void conv1d_silu_backward(const Conv1dShape& s, const Conv1dBackward& op) override {
    check_dx_apart(s, op);  // the kernel's pointers are __restrict__
    void* ws = scratch(cuda::conv1d_backward_workspace_bytes(s.batch, s.seqlen, s.D, s.K));
    with_act("conv1d_silu_backward", [&](auto act) {
      // rank 0 (no term): null pointers, which the casts pass as they are.
      const cuda::ConvLowRank<typename decltype(act)::type> lowrank{
          act(op.lowrank.a, "lowrank.a"), op.lowrank.ld_a, act(op.lowrank.weight, "lowrank.weight"),
          op.lowrank.rank};
      cuda::conv1d_silu_backward(act(op.dx, "dx"), op.dweight, op.dbias, act(op.dout, "dout"),
                                 act(op.x, "x"), s.ld_x, op.weight, op.bias, s.batch, s.seqlen, s.D,
                                 s.K, lowrank, ws, stream_);
    });
  }
  // The bf16 kernel adds x_proj's term on the staged dout rows with tensor cores.
  bool conv_backward_takes_lowrank(const Conv1dShape& s, const Conv1dBackward& op) const override {
    return bf16_ && tensor_core_bf16_ && op.lowrank.a.type == ActType::BF16 &&
           op.lowrank.weight.type == ActType::BF16 &&
           cuda::conv1d_lowrank_fits(
               s.D, s.ld_x, op.lowrank.rank, op.lowrank.ld_a,
               {op.dx.data, op.dout.data, op.x.data, op.lowrank.a.data, op.lowrank.weight.data});
  }

  // ---- the selective scan (kernels/cuda/scan.h) ----
  // The scan reads every activation in in.u's type (and checks them); that one is checked here.
  size_t scan_saved_bytes(const ScanShape& s) const override {
    return cuda::scan_checkpoint_bytes(s, act_type());
  }
  void selective_scan_forward(const ScanShape& s, const ScanInputs& in, Act out, float* last_state,
                              void* saved) override {
    with_act("selective_scan_forward", [&](auto act) { act(in.u, "u"); });
    void* ws = scratch(cuda::scan_workspace_bytes(s));
    cuda::selective_scan_forward(s, in, out, last_state, saved, ws, stream_);
  }
  void selective_scan_backward(const ScanShape& s, const ScanInputs& in, ConstAct dout,
                               const void* saved, const ScanGrads& grads) override {
    with_act("selective_scan_backward", [&](auto act) { act(in.u, "u"); });
    void* ws = scratch(cuda::scan_workspace_bytes(s));
    cuda::selective_scan_backward(s, in, dout, saved, grads, ws, stream_);
  }

  // ---- recurrent mode (kernels/cuda/recurrent.h) ----
  void conv1d_silu_step(const Conv1dShape& s, const Conv1dStep& op) override {
    with_act("conv1d_silu_step", [&](auto act) {
      cuda::conv1d_silu_step(act(op.out, "out"), op.state, act(op.x, "x"), s.ld_x, op.weight,
                             op.bias, s.batch, s.D, s.K, stream_);
    });
  }
  void selective_scan_step(const ScanShape& s, const ScanInputs& in, Act out,
                           float* ssm_state) override {
    with_act("selective_scan_step", [&](auto act) {
      cuda::selective_scan_step(s, in, act(out, "out"), ssm_state, stream_);
    });
  }
  void argmax_rows(const ArgmaxRows& op) override { cuda::argmax_rows(op, stream_); }
  std::unique_ptr<StepRecorder> make_step_recorder() override {
    return std::make_unique<GraphRecorder>(stream_);
  }

  double lm_head_loss(const LmHeadLoss& op) override {
    void* ws = scratch(cuda::lm_head_workspace_bytes(
        op.T, op.Vp, act_bytes(), op.dnormed.data != nullptr, op.logits_out != nullptr));
    double loss = 0.0;
    with_act("lm_head_loss", [&](auto act) {
      loss = cuda::lm_head_loss(*gemm_, act(op.normed, "normed"), act(op.E, "E"), op.targets, op.T,
                                op.C, op.Vp, op.grad_scale, act(op.dnormed, "dnormed"), op.dE,
                                op.logits_out, ws, stream_);
    });
    return loss;
  }

  std::string gemm_algorithms() const override { return gemm_->algorithms(); }
  bool adopt_gemm_algorithms(const std::string& text) override { return gemm_->adopt(text); }

  // ---- elementwise and the optimizer ----
  void negative_exp(float* out, const float* in, int64_t n) override {
    cuda::negative_exp(out, in, n, stream_);
  }
  void mul_accumulate(float* dst, const float* a, const float* b, int64_t n) override {
    cuda::mul_accumulate(dst, a, b, n, stream_);
  }
  double sum_of_squares_of_spans(const float* x, const Span* spans, int count) override {
    const size_t bytes = cuda::sum_of_squares_workspace_bytes(spans, count);
    char* ws = static_cast<char*>(scratch(bytes + sizeof(double)));
    double* result = reinterpret_cast<double*>(ws + bytes);
    cuda::sum_of_squares(result, x, spans, count, ws, stream_);
    double total = 0.0;
    download(&total, result, sizeof(double));
    return total;
  }
  void adamw_step(const AdamWStep& op, const AdamWHyper& h) override {
    int64_t blocks = 0;
    const std::vector<cuda::AdamWBlockSegment> table =
        cuda::adamw_block_table(op.segments, op.segment_count, blocks);
    if (blocks == 0) return;
    const size_t bytes = table.size() * sizeof(cuda::AdamWBlockSegment);
    // An optimizer passes the same segments every step: the table goes up once.
    if (table.size() != adamw_table_.size() ||
        std::memcmp(table.data(), adamw_table_.data(), bytes) != 0) {
      if (table.size() > adamw_table_.size()) {
        release(adamw_table_device_);
        adamw_table_device_ = nullptr;
        adamw_table_.clear();
        adamw_table_device_ = allocate(bytes);
      }
      upload(adamw_table_device_, table.data(), bytes);
      adamw_table_ = table;
    }
    const auto* device_table = static_cast<const cuda::AdamWBlockSegment*>(adamw_table_device_);
    with_act("adamw_step", [&](auto act) {
      cuda::adamw_step(op.params, op.grads, op.m, op.v, act(op.compute_copy, "compute_copy"),
                       device_table, int(table.size()), blocks, h, op.packed_params, stream_);
    });
  }

 private:
  cudaDataType_t cuda_act_type() const { return bf16_ ? CUDA_R_16BF : CUDA_R_32F; }

  // Calls f with ActCast<A>{op} for the activation type A, for the ops whose kernels are
  // templates on it: each activation argument is checked as f reads it.
  template <typename F>
  void with_act(const char* op, F&& f) {
    if (bf16_) {
      f(ActCast<bf16>{op});
    } else {
      f(ActCast<float>{op});
    }
  }

  // Bytes in use on the device (by every process), as the driver sees it; on whatever device the
  // calling thread has chosen, so it chooses this one and goes back.
  size_t device_in_use() const {
    int previous = device_;
    cudaGetDevice(&previous);
    cuda::check_cuda(cudaSetDevice(device_), "cudaSetDevice");
    size_t free = 0, total = 0;
    const cudaError_t e = cudaMemGetInfo(&free, &total);
    cudaSetDevice(previous);
    cuda::check_cuda(e, "cudaMemGetInfo");
    return total - free;
  }

  // What the device has in use beyond what it had when the backend started and what the backend
  // allocated: the process's memory outside allocate() (and another process's, should one share
  // the device: one GPU per process is the setting the figure is meant for). A measurement, not
  // a change of state, hence const.
  void measure_outside() const {
    const size_t in_use = device_in_use(), accounted = in_use_at_start_ + allocated_;
    outside_ = in_use > accounted ? in_use - accounted : 0;
    peak_ = std::max(peak_, allocated_ + outside_);
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
  int sm_count_ = 1;
  bool clusters_ = false;          // thread-block clusters (compute capability 9.0 or more)
  bool tensor_core_bf16_ = false;  // bf16 MMA (compute capability 8.0+): the skinny GEMM
  cudaStream_t stream_ = nullptr;
  cudaStream_t side_stream_ = nullptr;  // download_concurrent's
  void* staging_ = nullptr;             // pinned, kStagingBytes, allocated at first use
  std::unordered_map<void*, size_t> sizes_;
  size_t allocated_ = 0;        // by allocate(), now
  size_t in_use_at_start_ = 0;  // on the device when the backend started (the context included)
  mutable size_t outside_ = 0;  // measured by measure_outside()
  mutable size_t peak_ = 0;     // of allocated_ + outside_
  size_t peak_allocated_ = 0;   // of allocated_ alone
  void* scratch_ = nullptr;
  size_t scratch_bytes_ = 0;
  void* gemm_workspace_ = nullptr;
  std::unique_ptr<cuda::Gemm> gemm_;
  std::vector<cuda::AdamWBlockSegment> adamw_table_;  // what adamw_table_device_ holds
  void* adamw_table_device_ = nullptr;
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

std::unique_ptr<Backend> make_cuda_backend(int device, bool bf16, bool tune_gemms) {
  return std::make_unique<CudaBackend>(device, bf16, tune_gemms);
}

}  // namespace mamba
