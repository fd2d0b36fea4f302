#include "dist/gradient_reducer.h"

#include <algorithm>
#include <vector>

#include "dist/hierarchy.h"
#include "util/error.h"

#ifdef MAMBA_HAVE_NCCL
#include "dist/nccl_reducer.h"
#include "dist/peer_reducer.h"
#endif

namespace mamba {

namespace {

// The parts of the packed master (offset master) whose weights the model reads in fp32, with
// their place in its exact buffer.
struct ExactPiece {
  int64_t master, exact, count;
};

std::vector<ExactPiece> owned_exact(const ShardMap& map, const std::vector<ExactSpan>& spans) {
  std::vector<ExactPiece> pieces;
  size_t s = 0;  // ranges and spans both run in buffer order
  for (const ShardRange& r : map.ranges()) {
    const int64_t end = r.begin + r.count;
    while (s < spans.size() && spans[s].offset + spans[s].count <= r.begin) ++s;
    for (size_t t = s; t < spans.size() && spans[t].offset < end; ++t) {
      const int64_t lo = std::max(r.begin, spans[t].offset);
      const int64_t hi = std::min(end, spans[t].offset + spans[t].count);
      pieces.push_back({r.packed + lo - r.begin, spans[t].exact + lo - spans[t].offset, hi - lo});
    }
  }
  return pieces;
}

// The model's exact buffer with this rank's own values from its master and zero elsewhere, as the
// sum over ranks wants it (queued on the backend).
void stage_owned_exact(MambaLM& model, const std::vector<ExactPiece>& pieces, const float* master) {
  Backend& be = model.backend();
  be.fill_zero(model.exact(), size_t(model.exact_floats()) * sizeof(float));
  for (const ExactPiece& p : pieces) {
    be.copy(model.exact() + p.exact, master + p.master, size_t(p.count) * sizeof(float));
  }
}

class MpiGradientReducer final : public GradientReducer {
 public:
  MpiGradientReducer(const ReducerSettings& settings, Communicator& comm, MambaLM& model)
      : comm_(comm), model_(model) {
    if (settings.hierarchical && comm.world() > 1) {
      groups_ = split_by_node(comm);
      bucket_floats_ =
          std::max<int64_t>(1, int64_t(settings.bucket_mb * (1 << 20) / sizeof(float)));
    }
  }

  void finish() override {
    if (comm_.world() == 1) return;
    const int64_t n = model_.layout().total();
    Backend& be = model_.backend();
    if (be.host_accessible()) {
      reduce(model_.grads(), n);
      return;
    }
    staging_.resize(n);
    be.download(staging_.data(), model_.grads(), n * sizeof(float));
    reduce(staging_.data(), n);
    be.upload(model_.grads(), staging_.data(), n * sizeof(float));
  }

 private:
  void reduce(float* data, int64_t n) {
    if (!groups_.node) {
      comm_.allreduce_mean(data, n);
      return;
    }
    for (int64_t begin = 0; begin < n; begin += bucket_floats_) {
      hierarchical_mean(groups_, data + begin, std::min(bucket_floats_, n - begin), scratch_);
    }
  }

  Communicator& comm_;
  MambaLM& model_;
  NodeGroups groups_;  // hierarchical only
  int64_t bucket_floats_ = 0;
  std::vector<float> staging_, scratch_;
};

// ZeRO-1 through MPI, on buffers in host memory (the CPU backend, whose compute copy is fp32):
// bucket by bucket after backward, as the unsharded MPI path reduces after backward. The tail
// bucket, shorter than world slices, goes through a zero-padded copy.
class MpiShardedReducer final : public GradientReducer {
 public:
  MpiShardedReducer(Communicator& comm, MambaLM& model, const ShardMap& shard)
      : comm_(comm), model_(model), shard_(shard), exact_(owned_exact(shard, model.exact_spans())) {
    if (model.compute_copy().type != ActType::F32) {
      throw_error("config error: dist.shard_optimizer = true through MPI needs fp32 weights, and ",
                  model.backend().name(), " computes in bf16: run on the CPU or with NCCL");
    }
  }

  void finish() override {
    float* grads = model_.grads();
    for (const ShardBucket& b : shard_.buckets()) {
      received_.resize(b.slice);
      comm_.reduce_scatter_mean(padded(b, grads), received_.data(), b.slice);
      const ShardRange mine = shard_.part(b, comm_.rank());
      std::copy(received_.begin(), received_.begin() + mine.count, grads + mine.begin);
    }
  }

  void gather_weights(const float* master) override {
    float* params = static_cast<float*>(model_.compute_copy().data);
    for (const ShardBucket& b : shard_.buckets()) {
      if (b.slice * shard_.world() == b.end - b.begin) {
        comm_.allgather(params + b.begin, b.slice);
        continue;
      }
      const ShardRange mine = shard_.part(b, comm_.rank());
      scratch_.assign(size_t(b.slice * shard_.world()), 0.0f);
      std::copy(params + mine.begin, params + mine.begin + mine.count,
                scratch_.begin() + comm_.rank() * b.slice);
      comm_.allgather(scratch_.data(), b.slice);
      std::copy(scratch_.begin(), scratch_.begin() + (b.end - b.begin), params + b.begin);
    }
    stage_owned_exact(model_, exact_, master);
    comm_.allreduce_sum(reinterpret_cast<uint32_t*>(model_.exact()), model_.exact_floats());
  }

 private:
  // The bucket's world * slice floats to reduce: in place, or a padded copy for the tail.
  const float* padded(const ShardBucket& b, const float* buffer) {
    if (b.slice * shard_.world() == b.end - b.begin) return buffer + b.begin;
    scratch_.assign(size_t(b.slice * shard_.world()), 0.0f);
    std::copy(buffer + b.begin, buffer + b.end, scratch_.begin());
    return scratch_.data();
  }

  Communicator& comm_;
  MambaLM& model_;
  const ShardMap& shard_;
  const std::vector<ExactPiece> exact_;
  std::vector<float> received_, scratch_;
};

#ifdef MAMBA_HAVE_NCCL
class NcclGradientReducer final : public GradientReducer {
 public:
  NcclGradientReducer(const ReducerSettings& settings, Communicator& comm, MambaLM& model)
      : model_(model) {
    std::string id = comm.rank() == 0 ? nccl_unique_id() : std::string(128, '\0');
    comm.broadcast(id.data(), id.size(), 0);
    reducer_ = std::make_unique<NcclReducer>(
        id, comm.rank(), comm.world(), model.backend(), model.grads(), model.layout().total(),
        size_t(settings.bucket_mb * (1 << 20)), settings.timeout_s, settings.bf16_grads);
    if (settings.shard) {
      exact_ = owned_exact(*settings.shard, model.exact_spans());
      reducer_->shard(*settings.shard, model.compute_copy(), model.exact(), model.exact_floats());
    }
    if (settings.hierarchical) {
      check_even_nodes(comm);
      reducer_->split_by_node(comm.node());
    }
  }
  void ready(int64_t begin, int64_t end) override { reducer_->ready(begin, end); }
  void finish() override { reducer_->finish(); }
  void gather_weights(const float* master) override {
    stage_owned_exact(model_, exact_, master);
    reducer_->gather_weights();
  }

 private:
  MambaLM& model_;
  std::vector<ExactPiece> exact_;
  std::unique_ptr<NcclReducer> reducer_;
};

class PeerGradientReducer final : public GradientReducer {
 public:
  PeerGradientReducer(const ReducerSettings& settings, Communicator& comm, MambaLM& model)
      : reducer_(comm, model.backend(), model.grads(), model.layout().total(),
                 size_t(settings.bucket_mb * (1 << 20)), settings.timeout_s) {}
  void ready(int64_t begin, int64_t end) override { reducer_.ready(begin, end); }
  void finish() override { reducer_.finish(); }

 private:
  PeerReducer reducer_;
};
#endif

}  // namespace

std::unique_ptr<GradientReducer> make_gradient_reducer(const ReducerSettings& settings,
                                                       Communicator& comm, MambaLM& model) {
  if (settings.shard && settings.bf16_grads) {
    throw_error(
        "config error: dist.shard_optimizer = true with dist.bf16_grads = true is not "
        "supported: set one of them to false");
  }
  if (settings.shard && settings.hierarchical) {
    throw_error(
        "config error: dist.shard_optimizer = true with dist.hierarchical = true is not "
        "supported: set one of them to false");
  }
  if (settings.peer_copies) {
    const char* other = settings.bf16_grads     ? "dist.bf16_grads"
                        : settings.hierarchical ? "dist.hierarchical"
                        : settings.shard        ? "dist.shard_optimizer"
                                                : nullptr;
    if (other) {
      throw_error("config error: dist.peer_copies = true with ", other,
                  " = true is not supported: set one of them to false");
    }
  }
#ifdef MAMBA_HAVE_NCCL
  if (comm.world() > 1 && model.backend().native_stream()) {
    if (settings.peer_copies) return std::make_unique<PeerGradientReducer>(settings, comm, model);
    return std::make_unique<NcclGradientReducer>(settings, comm, model);
  }
#endif
  if (settings.peer_copies && comm.world() > 1) {
    throw_error(
        "config error: dist.peer_copies = true needs GPUs in a build with NCCL, and this run "
        "reduces gradients through MPI: set dist.peer_copies=false");
  }
  if (settings.bf16_grads && comm.world() > 1) {
    throw_error(
        "config error: dist.bf16_grads = true needs GPUs with NCCL, and this run "
        "reduces gradients through MPI: set dist.bf16_grads=false");
  }
  if (settings.shard) {
    if (!model.backend().host_accessible()) {
      throw_error(
          "config error: dist.shard_optimizer = true on GPUs needs NCCL, and this build reduces "
          "through MPI: set dist.shard_optimizer=false or build with NCCL (libnccl-dev)");
    }
    return std::make_unique<MpiShardedReducer>(comm, model, *settings.shard);
  }
  return std::make_unique<MpiGradientReducer>(settings, comm, model);
}

}  // namespace mamba
