// CUDA's bf16 as an activation type of kernels/ops.h, so that ActCast<__nv_bfloat16> checks it.
#pragma once
#include <cuda_bf16.h>

#include "kernels/ops.h"

namespace mamba {

template <>
struct ActTypeOf<__nv_bfloat16> {
  static constexpr ActType value = ActType::BF16;
};

}  // namespace mamba
