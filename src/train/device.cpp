#include "train/device.h"

#include "util/error.h"
#ifdef MAMBA_HAVE_CUDA
#include "kernels/cuda/cuda_backend.h"
#endif

namespace mamba {

bool cuda_available() {
#ifdef MAMBA_HAVE_CUDA
  return cuda_device_count() > 0;
#else
  return false;
#endif
}

std::unique_ptr<Backend> make_backend(const ExperimentConfig& cfg, int local_rank) {
  const bool cuda =
      cfg.train.device == Device::Cuda || (cfg.train.device == Device::Auto && cuda_available());
  if (!cuda) {
    if (cfg.train.precision == Precision::Bf16) {
      throw_error("config error: train.precision = bf16 in ", cfg.source,
                  " needs a GPU, and this run uses the CPU: set train.precision=fp32");
    }
    if (cfg.train.tune_gemms) {
      throw_error("config error: train.tune_gemms = true in ", cfg.source,
                  " needs a GPU, and this run uses the CPU: set train.tune_gemms=false");
    }
    return make_cpu_backend();
  }
#ifdef MAMBA_HAVE_CUDA
  const int count = cuda_device_count();
  if (count == 0) {
    throw_error("config error: train.device = cuda in ", cfg.source,
                " but no GPU is visible: set train.device=cpu (or auto)");
  }
  return make_cuda_backend(local_rank % count, cfg.train.precision == Precision::Bf16,
                           cfg.train.tune_gemms);
#else
  (void)local_rank;
  throw_error("config error: train.device = cuda in ", cfg.source,
              " but this build has no CUDA backend: rebuild where nvcc is found, or set "
              "train.device=cpu");
#endif
}

}  // namespace mamba
