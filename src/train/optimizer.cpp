#include "train/optimizer.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace mamba {

AdamW::AdamW(const ParamLayout& layout, Backend& backend, const AdamWSettings& settings,
             std::vector<ShardRange> ranges)
    : be_(backend), settings_(settings), ranges_(std::move(ranges)) {
  const bool sharded = !ranges_.empty();
  if (!sharded) ranges_.push_back({0, 0, layout.total()});
  for (const ShardRange& r : ranges_) size_ += r.count;
  // The overlaps of ranges and tensors, neighbours in one weight-decay group merged: a tensor's
  // group holds throughout it.
  const std::vector<ParamTensor>& tensors = layout.tensors();
  size_t t = 0;  // ranges and tensors both run in buffer order
  for (const ShardRange& r : ranges_) {
    const int64_t end = r.begin + r.count;
    while (t < tensors.size() && tensors[t].offset + tensors[t].numel <= r.begin) ++t;
    for (size_t u = t; u < tensors.size() && tensors[u].offset < end; ++u) {
      const ParamTensor& p = tensors[u];
      const int64_t lo = std::max(r.begin, p.offset);
      const int64_t hi = std::min(end, p.offset + p.numel);
      const int64_t packed = r.packed + lo - r.begin;
      AdamWSegment* last = segments_.empty() ? nullptr : &segments_.back();
      if (last && last->offset + last->count == lo && last->packed + last->count == packed &&
          last->weight_decay == p.weight_decay) {
        last->count += hi - lo;
      } else {
        segments_.push_back({lo, packed, hi - lo, p.weight_decay});
      }
    }
  }
  const size_t bytes = size_ * sizeof(float);
  m_ = static_cast<float*>(be_.allocate(bytes));
  v_ = static_cast<float*>(be_.allocate(bytes));
  be_.fill_zero(m_, bytes);
  be_.fill_zero(v_, bytes);
  if (sharded) {
    master_ = static_cast<float*>(be_.allocate(bytes));
    be_.fill_zero(master_, bytes);
  }
}

AdamW::~AdamW() {
  if (master_) be_.release(master_);
  be_.release(m_);
  be_.release(v_);
}

void AdamW::step(float* params, const float* grads, float lr, Act compute_copy, float grad_scale) {
  ++steps_taken;
  const AdamWHyper h{
      lr,          settings_.beta1, settings_.beta2, settings_.eps, settings_.weight_decay,
      steps_taken, grad_scale};
  AdamWStep op;
  op.params = master_ ? master_ : params;
  op.grads = grads;
  op.m = m_;
  op.v = v_;
  op.compute_copy = compute_copy;
  op.segments = segments_.data();
  op.segment_count = int(segments_.size());
  op.packed_params = master_ != nullptr;
  be_.adamw_step(op, h);
}

void AdamW::take_master(const float* weights) {
  for (const ShardRange& r : ranges_) {
    be_.copy(master_ + r.packed, weights + r.begin, size_t(r.count) * sizeof(float));
  }
}

std::vector<float> AdamW::download(const float* moment) const {
  std::vector<float> host(size_);
  be_.download(host.data(), moment, host.size() * sizeof(float));
  return host;
}

void AdamW::load_moment(int moment, int64_t at, const float* values, int64_t n) {
  float* target = moment == 0 ? m_ : v_;
  for (const ShardRange& r : ranges_) {
    const int64_t lo = std::max(at, r.begin), hi = std::min(at + n, r.begin + r.count);
    if (lo >= hi) continue;
    be_.upload(target + r.packed + lo - r.begin, values + lo - at, size_t(hi - lo) * sizeof(float));
  }
}

void AdamW::zero_moments() {
  be_.fill_zero(m_, size_ * sizeof(float));
  be_.fill_zero(v_, size_ * sizeof(float));
  steps_taken = 0;
}

double grad_norm(Backend& backend, const float* grads, int64_t n) {
  return grad_norm(backend, grads, {{0, 0, n}}, [](double x) { return x; });
}

double grad_norm(Backend& backend, const float* grads, const std::vector<ShardRange>& ranges,
                 const std::function<double(double)>& sum_over_ranks) {
  // One reduction over all ranges: a rank's shard is a slice of every bucket, hundreds of ranges,
  // and a sum per range would wait for the device once each.
  std::vector<Span> spans;
  spans.reserve(ranges.size());
  for (const ShardRange& r : ranges) spans.push_back({r.begin, r.count});
  const double squares = backend.sum_of_squares_of_spans(grads, spans.data(), int(spans.size()));
  return std::sqrt(sum_over_ranks(squares));
}

float clip_coefficient(double norm, float max_norm) {
  return max_norm > 0.0f ? float(std::min(1.0, double(max_norm) / (norm + 1e-6))) : 1.0f;
}

}  // namespace mamba
