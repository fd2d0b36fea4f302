// Counter-based random numbers: draw i of a stream is a pure function of (seed, stream, i), so
// any element can be computed on its own, in any order, on any thread, on the host or the GPU,
// with the same result. Parameter initialisation uses them (kernels/init_element.h): each tensor
// is a stream, each element one draw. The draws are those of a splitmix64 sequence whose start
// the seed and the stream pick; the transforms to floating point use only exact operations or
// util/repro_math.h, so they too are bit-identical everywhere.
#pragma once
#include <cstdint>

#include "util/host_device.h"
#include "util/repro_math.h"
#include "util/splitmix.h"

namespace mamba {

// Where stream `stream` of `seed` starts.
MAMBA_HOST_DEVICE constexpr uint64_t stream_key(uint64_t seed, uint64_t stream) {
  return splitmix64(seed ^ splitmix64(stream));
}

// Draw i of the stream that starts at key: the (i + 1)-th output of splitmix64 from there.
MAMBA_HOST_DEVICE constexpr uint64_t counter_draw(uint64_t key, uint64_t i) {
  return splitmix64(key + i * kSplitmixGamma);
}

// Uniform in [0, 1) from the draw's top 53 bits, exactly (a double holds them all).
MAMBA_HOST_DEVICE inline double draw_unit(uint64_t bits) {
  return double(bits >> 11) * 0x1p-53;
}

// Uniform in [-1, 1), exactly: 2 u - 1 needs no more bits than u.
MAMBA_HOST_DEVICE inline double draw_symmetric(uint64_t bits) {
  return fma(double(bits >> 11), 0x1p-52, -1.0);
}

// Standard normal by Box-Muller from one draw: its top 32 bits give u1 in (0, 1] (so the log is
// finite; |z| <= 6.7), its low 32 bits the angle.
MAMBA_HOST_DEVICE inline double draw_normal(uint64_t bits) {
  const double u1 = double((bits >> 32) + 1) * 0x1p-32;
  const double w = double(bits & 0xffffffffull) * 0x1p-32;
  const double r = sqrt(-2.0 * repro::log(u1));
  return r * repro::cos_2pi(w);
}

}  // namespace mamba
