// Fills one tensor with its initialisation (InitFill, kernels/ops.h); the value of each element
// is kernels/init_element.h's, the same function the CUDA twin runs.
#pragma once
#include "kernels/ops.h"

namespace mamba::cpu {

void init_fill(const InitFill& f);

}  // namespace mamba::cpu
