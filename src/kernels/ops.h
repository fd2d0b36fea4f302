// The arguments of the backend ops (kernels/backend.h), one struct per op, as the CPU kernels
// (the math, in kernels/cpu/<name>.h) and the CUDA kernels read them. Each struct lists its
// tensors with their shapes; an op's activations carry their element type (Act), and the kernel
// that reads one checks it (ActCast), so an fp32 buffer handed to a bf16 kernel is an error that
// names the op and the argument instead of garbage.
//
// Types of the tensors:
//   float*          fp32 on the backend's device: the residual stream and its gradient, norms'
//                   rstd, parameters (master weights), gradients, optimizer moments, scan states.
//   Act, ConstAct   activations in the backend's activation type (Backend::act_type(): fp32 on
//                   the CPU, bf16 on CUDA, fp32 on CUDA's debugging path): GEMM inputs and
//                   outputs, the scan's inputs and outputs, and their gradients; and the compute
//                   copy of the weights (same layout as the parameters).
// Layouts are token-major ([tokens, features]); `ld` is a row stride in elements, so slices of a
// wider buffer ([x | z], [dt | B | C]) need no copy.
#pragma once
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <utility>

#include "util/error.h"

namespace mamba {

enum class ActType { F32, BF16 };

inline size_t type_bytes(ActType t) {
  return t == ActType::BF16 ? 2 : 4;
}
inline const char* type_name(ActType t) {
  return t == ActType::BF16 ? "bf16" : "fp32";
}

// An activation tensor: device memory and the element type it holds.
struct Act {
  void* data = nullptr;
  ActType type = ActType::F32;
  // The tensor from element `elements` on (a column slice of token-major rows).
  Act at(int64_t elements) const {
    return {static_cast<char*>(data) + elements * int64_t(type_bytes(type)), type};
  }
};

struct ConstAct {
  const void* data = nullptr;
  ActType type = ActType::F32;
  ConstAct() = default;
  ConstAct(const void* d, ActType t) : data(d), type(t) {}
  ConstAct(Act a) : data(a.data), type(a.type) {}  // implicit: a writable tensor is readable
  ConstAct at(int64_t elements) const {
    return {static_cast<const char*>(data) + elements * int64_t(type_bytes(type)), type};
  }
};

// fp32 buffers seen as activations (the CPU's activations, fp32 outputs of a GEMM).
inline Act f32_act(float* p) {
  return {p, ActType::F32};
}
inline ConstAct f32_act(const float* p) {
  return {p, ActType::F32};
}

template <typename T>
struct ActTypeOf;  // the ActType of element type T; CUDA's bf16 is added by kernels/cuda/act_type.h
template <>
struct ActTypeOf<float> {
  static constexpr ActType value = ActType::F32;
};

// The typed pointers of one op's activations: each access checks that the argument holds T and
// throws mamba::Error naming the op and the argument when not. A null tensor (an optional
// argument left out) passes as null.
template <typename T>
struct ActCast {
  using type = T;
  const char* op;
  T* operator()(Act a, const char* arg) const {
    check(a.data, a.type, arg);
    return static_cast<T*>(a.data);
  }
  const T* operator()(ConstAct a, const char* arg) const {
    check(a.data, a.type, arg);
    return static_cast<const T*>(a.data);
  }

 private:
  void check(const void* data, ActType type, const char* arg) const {
    if (data && type != ActTypeOf<T>::value) {
      throw_error("op error: ", op, ": ", arg, " holds ", type_name(type),
                  " but this kernel reads ", type_name(ActTypeOf<T>::value),
                  "; allocate it in the backend's activation type (Backend::act_type)");
    }
  }
};

// ---- token embedding (kernels/cpu/embedding.h) ----
// out[t] = table[ids[t]]. 3 tensors.
struct EmbeddingForward {
  const int32_t* ids = nullptr;  // [T]
  const float* table = nullptr;  // [vocab, C]
  float* out = nullptr;          // [T, C]
  int64_t T = 0;
  int C = 0;
};
// dtable[ids[t]] += dout[t]. 3 tensors.
struct EmbeddingBackward {
  const int32_t* ids = nullptr;  // [T]
  const float* dout = nullptr;   // [T, C]
  float* dtable = nullptr;       // [vocab, C] +=
  int64_t T = 0;
  int C = 0;
};

// ---- RMSNorm with the residual add (kernels/cpu/rmsnorm.h) ----
// residual_out = hidden + residual_in; normed = residual_out * rstd * weight. 6 tensors.
struct RmsNormForward {
  const float* hidden = nullptr;       // [T, C]
  const float* residual_in = nullptr;  // [T, C]; null: residual_out = hidden
  const float* weight = nullptr;       // [C]
  float* residual_out = nullptr;       // [T, C]; null: not written (normed recomputed)
  Act normed;                          // [T, C]
  float* rstd = nullptr;               // [T]
  int64_t T = 0;
  int C = 0;
  float eps = 0;
};
// dresidual += d/d(residual_out); dweight += d/d(weight); dresidual_act = the updated dresidual
// in the activation type (the next GEMM's operand, without a pass of its own). 7 tensors.
struct RmsNormBackward {
  ConstAct dnormed;                     // [T, C]
  const float* residual_out = nullptr;  // [T, C], as forward wrote it
  const float* rstd = nullptr;          // [T]
  const float* weight = nullptr;        // [C]
  float* dresidual = nullptr;           // [T, C] +=
  float* dweight = nullptr;             // [C] +=
  Act dresidual_act;                    // [T, C]; null: not written
  int64_t T = 0;
  int C = 0;
};

// ---- linear layer without bias (kernels/cpu/linear.h) ----
// out = inp @ weight^T. out is in the activation type, or fp32 (the last projection writes the
// fp32 residual stream). 3 tensors.
struct LinearForward {
  ConstAct inp;     // [T, in_dim], row stride ld_inp
  ConstAct weight;  // [out_dim, in_dim], the compute copy
  Act out;          // [T, out_dim], row stride ld_out
  int64_t ld_inp = 0, ld_out = 0;
  int64_t T = 0;
  int in_dim = 0, out_dim = 0;
};
// dinp (=, or += when accumulate_dinp) dout @ weight; dweight += dout^T @ inp. 5 tensors.
struct LinearBackward {
  ConstAct dout;             // [T, out_dim], row stride ld_dout
  ConstAct inp;              // [T, in_dim], row stride ld_inp
  ConstAct weight;           // [out_dim, in_dim]
  Act dinp;                  // [T, in_dim], row stride ld_dinp; null: not wanted
  float* dweight = nullptr;  // [out_dim, in_dim] +=; null: not wanted
  int64_t ld_dout = 0, ld_inp = 0, ld_dinp = 0;
  bool accumulate_dinp = false;
  int64_t T = 0;
  int in_dim = 0, out_dim = 0;
};

// ---- causal depthwise conv1d + SiLU (kernels/cpu/conv1d.h) ----
struct Conv1dShape {
  int batch = 0;
  int64_t seqlen = 0;
  int D = 0;         // channels
  int K = 0;         // taps
  int64_t ld_x = 0;  // row stride of x and dx
};
// out = silu(causal_conv(x) + bias). 4 tensors.
struct Conv1dForward {
  ConstAct x;                     // [T, ld_x]
  const float* weight = nullptr;  // [D, K]
  const float* bias = nullptr;    // [D]
  Act out;                        // [T, D]
};
// A low-rank term of a gradient: a x weight, [T, rank] x [rank, D], weight in a linear layer's
// layout ([out_dim = rank, in_dim = D]): the input gradient of that layer.
struct LowRankGrad {
  ConstAct a;  // [T, rank], rows of stride ld_a
  int64_t ld_a = 0;
  ConstAct weight;  // [rank, D]
  int rank = 0;     // 0: no term
};
// dx = d/dx (overwritten); dweight, dbias +=. dx must not overlap x or dout. 7 tensors, 9 with
// lowrank: then the output's gradient is dout + lowrank's term (rounded to the activation type),
// as if linear_backward had first accumulated that layer's input gradient into dout (x_proj's,
// whose only reader is this op). Backends take lowrank where conv_backward_takes_lowrank says.
struct Conv1dBackward {
  ConstAct dout;                  // [T, D]
  ConstAct x;                     // [T, ld_x]
  const float* weight = nullptr;  // [D, K]
  const float* bias = nullptr;    // [D]
  Act dx;                         // [T, ld_x]
  float* dweight = nullptr;       // [D, K] +=
  float* dbias = nullptr;         // [D] +=
  LowRankGrad lowrank;
};

// Throws unless op.dx is a buffer of its own: backends read x and dout while they write dx.
inline void check_dx_apart(const Conv1dShape& s, const Conv1dBackward& op) {
  const int64_t rows = int64_t(s.batch) * s.seqlen;
  const auto span = [&](const void* p, ActType type, int64_t elements) {
    const auto begin = reinterpret_cast<uintptr_t>(p);
    return std::pair<uintptr_t, uintptr_t>{begin, begin + uintptr_t(elements) * type_bytes(type)};
  };
  const auto dx = span(op.dx.data, op.dx.type, rows * s.ld_x);
  for (const auto& other :
       {span(op.x.data, op.x.type, rows * s.ld_x), span(op.dout.data, op.dout.type, rows * s.D)}) {
    if (dx.first < other.second && other.first < dx.second) {
      throw_error("conv1d_silu_backward: dx overlaps x or dout; give it a buffer of its own");
    }
  }
}

// ---- the selective scan (kernels/cpu/scan.h: math, layouts, overwrite / accumulate rules) ----
struct ScanShape {
  int batch = 0;
  int64_t seqlen = 0;
  int d_inner = 0;
  int d_state = 0;
  int64_t ld_z = 0;   // row stride of z / dz
  int64_t ld_bc = 0;  // row stride of B, C / dB, dC
};
// 8 tensors: 5 activations, 3 fp32 parameters.
struct ScanInputs {
  ConstAct u, delta;                  // [T, d_inner]
  ConstAct B, C;                      // [T, ld_bc]
  ConstAct z;                         // [T, ld_z]
  const float* A = nullptr;           // [d_inner, d_state], negative
  const float* D = nullptr;           // [d_inner]
  const float* delta_bias = nullptr;  // [d_inner]
};
// 8 tensors: the activations' gradients are overwritten, the parameters' accumulated.
struct ScanGrads {
  Act du, ddelta;                // [T, d_inner]
  Act dB, dC;                    // [T, ld_bc]
  Act dz;                        // [T, ld_z]
  float* dA = nullptr;           // [d_inner, d_state] +=
  float* dD = nullptr;           // [d_inner] +=
  float* ddelta_bias = nullptr;  // [d_inner] +=
  Act out;  // [T, d_inner]: the forward's out, re-formed from the recomputed states; null: not
            // wanted
};

// ---- recurrent (generation) mode: one new token per sequence (kernels/cpu/recurrent.h) ----
// The conv and the scan at one position with their state carried between calls; rows are the
// batch's sequences (T = batch). Same math as conv1d.h and scan.h at the last position.
// out = silu(causal_conv([state | x]) + bias), then x is shifted into state. 5 tensors.
struct Conv1dStep {
  ConstAct x;                     // [batch, ld_x] (Conv1dShape's ld_x; seqlen is 1)
  const float* weight = nullptr;  // [D, K]
  const float* bias = nullptr;    // [D]
  float* state = nullptr;         // [batch, D, K-1] the previous K-1 inputs, oldest first
  Act out;                        // [batch, D]
};
// The scan step takes the scan's structs (ScanShape with seqlen 1, ScanInputs with one row per
// sequence) and updates ssm_state [batch, d_inner, d_state], h after the previous token, in place.

// ---- greedy choice (the sampler's temperature 0) ----
// out[r] = the first index of the largest of x[r, 0 .. n), rows of stride ld. 2 tensors.
struct ArgmaxRows {
  const float* x = nullptr;  // [rows, ld]
  int32_t* out = nullptr;    // [rows]
  int rows = 0, n = 0;
  int64_t ld = 0;
};

// ---- LM head + mean cross-entropy (kernels/cpu/cross_entropy.h) ----
// logits = normed @ E^T over the padded vocab Vp; the loss is the mean over T tokens. With
// dnormed set it also writes dnormed (= grad_scale * dloss/dnormed) and adds
// grad_scale * dloss/dE to dE. 5 tensors.
struct LmHeadLoss {
  ConstAct normed;                   // [T, C]
  ConstAct E;                        // [Vp, C], the tied embedding's compute copy
  const int32_t* targets = nullptr;  // [T]
  Act dnormed;                       // [T, C]; null: forward only
  float* dE = nullptr;               // [Vp, C] +=
  float* logits_out = nullptr;       // [T, Vp] fp32, forward only: all logits (golden checks)
  int64_t T = 0;
  int C = 0, Vp = 0;
  float grad_scale = 1.0f;
};

// ---- parameter initialisation (kernels/init_element.h) ----
// dst[i] = a function of (seed, stream, i) alone, so that every backend fills a tensor with the
// same bits. What the function is:
enum class InitKind {
  Constant,     // value
  Normal,       // value * N(0, 1)
  Uniform,      // value * U[-1, 1)
  LogIndex,     // ln(1 + i % period): A_log's ln 1 .. ln N in each row
  InvSoftplus,  // dt = max(exp(U[log_lo, log_hi)), floor); dst = ln(e^dt - 1), so softplus = dt
};
// 1 tensor.
struct InitFill {
  InitKind kind = InitKind::Constant;
  float* dst = nullptr;  // [n]
  int64_t n = 0;
  uint64_t seed = 0, stream = 0;  // the random streams: element i takes draw i of this one
  double value = 0.0;
  int64_t period = 1;
  double log_lo = 0.0, log_hi = 0.0, floor = 0.0;
};

// ---- the gradient norm (kernels/cpu/adamw.h) ----
// Elements [offset, offset + count) of a flat buffer: a ZeRO-1 rank's slices of the gradients.
struct Span {
  int64_t offset = 0, count = 0;
};

// ---- AdamW (kernels/cpu/adamw.h) ----
struct AdamWHyper {
  float lr, beta1, beta2, eps, weight_decay;
  int64_t step;
  // The gradients are taken times this (gradient clipping's coefficient), in fp32, as a
  // separate scaling pass over them would round.
  float grad_scale = 1.0f;
};
// A run of the flat buffers one AdamW step updates: elements [offset, offset + count) of params,
// grads and the compute copy, whose moments (and, with AdamWStep::packed_params, fp32 weights)
// sit at [packed, packed + count) (ZeRO-1 packs a rank's slices; unsharded packed == offset).
// Weight decay applies where weight_decay is set.
struct AdamWSegment {
  int64_t offset = 0, packed = 0, count = 0;
  bool weight_decay = false;
};
// One AdamW step over all segments in one pass (one launch on CUDA): params, m and v updated in
// place from grads, and the updated weight written to the compute copy in the activation type,
// so that no separate conversion pass follows. 5 tensors.
struct AdamWStep {
  float* params = nullptr;       // parameter layout, or packed when packed_params
  const float* grads = nullptr;  // parameter layout
  float* m = nullptr;            // packed
  float* v = nullptr;            // packed
  Act compute_copy;  // parameter layout; null: not written; aliasing params (fp32): nothing to do
  const AdamWSegment* segments = nullptr;  // host memory, in buffer order, not overlapping
  int segment_count = 0;
  // ZeRO-1's fp32 master shard: params holds only the segments' weights, packed as m and v are.
  bool packed_params = false;
};

}  // namespace mamba
