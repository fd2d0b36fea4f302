// Token embedding lookup. Token-major: out[t, c] = table[ids[t], c].
// Backward accumulates: dtable[ids[t], c] += dout[t, c].
#pragma once
#include <cstdint>

namespace mamba::cpu {

void embedding_forward(float* out, const int32_t* ids, const float* table, int64_t T, int C);
void embedding_backward(float* dtable, const float* dout, const int32_t* ids, int64_t T, int C);

}  // namespace mamba::cpu
