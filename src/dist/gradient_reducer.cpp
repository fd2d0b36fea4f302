#include "dist/gradient_reducer.h"

#include <vector>

#include "util/error.h"

#ifdef MAMBA_HAVE_NCCL
#include "dist/nccl_reducer.h"
#endif

namespace mamba {

namespace {

class MpiGradientReducer final : public GradientReducer {
 public:
  MpiGradientReducer(Communicator& comm, MambaLM& model) : comm_(comm), model_(model) {}

  void finish() override {
    if (comm_.world() == 1) return;
    const int64_t n = model_.layout().total();
    Backend& be = model_.backend();
    if (be.host_accessible()) {
      comm_.allreduce_mean(model_.grads(), n);
      return;
    }
    staging_.resize(n);
    be.download(staging_.data(), model_.grads(), n * sizeof(float));
    comm_.allreduce_mean(staging_.data(), n);
    be.upload(model_.grads(), staging_.data(), n * sizeof(float));
  }

 private:
  Communicator& comm_;
  MambaLM& model_;
  std::vector<float> staging_;
};

#ifdef MAMBA_HAVE_NCCL
class NcclGradientReducer final : public GradientReducer {
 public:
  NcclGradientReducer(const ReducerSettings& settings, Communicator& comm, MambaLM& model) {
    std::string id = comm.rank() == 0 ? nccl_unique_id() : std::string(128, '\0');
    comm.broadcast(id.data(), id.size(), 0);
    reducer_ = std::make_unique<NcclReducer>(
        id, comm.rank(), comm.world(), model.backend(), model.grads(), model.layout().total(),
        size_t(settings.bucket_mb * (1 << 20)), settings.timeout_s, settings.bf16_grads);
  }
  void ready(int64_t begin, int64_t end) override { reducer_->ready(begin, end); }
  void finish() override { reducer_->finish(); }

 private:
  std::unique_ptr<NcclReducer> reducer_;
};
#endif

}  // namespace

std::unique_ptr<GradientReducer> make_gradient_reducer(const ReducerSettings& settings,
                                                       Communicator& comm, MambaLM& model) {
#ifdef MAMBA_HAVE_NCCL
  if (comm.world() > 1 && model.backend().native_stream()) {
    return std::make_unique<NcclGradientReducer>(settings, comm, model);
  }
#endif
  if (settings.bf16_grads && comm.world() > 1) {
    throw_error(
        "config error: dist.bf16_grads = true needs GPUs with NCCL, and this run "
        "reduces gradients through MPI: set dist.bf16_grads=false");
  }
  return std::make_unique<MpiGradientReducer>(comm, model);
}

}  // namespace mamba
