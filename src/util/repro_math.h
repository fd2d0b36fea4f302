// log, exp, expm1 and cos(2 pi w) in double precision that give bit-identical results on the host
// and on the GPU, for initialisation (kernels/init_element.h). The libraries' versions do not:
// glibc's and CUDA's log or cos differ in the last bits, and either may change between versions.
// These are built only from operations IEEE 754 rounds correctly everywhere (+, -, *, /, fma,
// rint, and exact bit manipulation): range reduction, then a Taylor polynomial by Horner's rule.
//
// Compilers may fuse a multiply and a following add into one fma (GCC with -march=native, nvcc
// by default), which rounds once instead of twice. So every multiply whose result is added is
// written as an explicit fma here, and every other product feeds only a multiply, a division, a
// square root, a comparison or a conversion, or is exact (a power-of-two scaling): no result
// depends on what the compiler fuses (scripts/check_init_contraction.sh checks it: the CPU and
// CUDA init kernels compile to the same code with fusing on and off). Accuracy: within 2 units in
// the last place of a double (tests/test_init.cpp), far below a float's rounding.
#pragma once
#include <math.h>

#include <cstdint>
#include <cstring>

#include "util/host_device.h"

namespace mamba::repro {

MAMBA_HOST_DEVICE inline uint64_t bits_of(double x) {
  uint64_t b;
  memcpy(&b, &x, sizeof b);
  return b;
}

MAMBA_HOST_DEVICE inline double from_bits(uint64_t b) {
  double x;
  memcpy(&x, &b, sizeof x);
  return x;
}

// 2^k for a normal result (-1022 <= k <= 1023).
MAMBA_HOST_DEVICE inline double pow2(int k) {
  return from_bits(uint64_t(k + 1023) << 52);
}

constexpr double kLn2Hi = 0x1.62e42p-1;           // ln 2 in 21 bits: k * kLn2Hi is exact
constexpr double kLn2Lo = 0x1.fdf473de6af28p-22;  // ln 2 - kLn2Hi
constexpr double kInvLn2 = 0x1.71547652b82fep+0;
constexpr double kSqrt2 = 0x1.6a09e667f3bcdp+0;
constexpr double kTwoPi = 0x1.921fb54442d18p+2;

// expm1(r) / r for |r| <= 1: the Taylor series of (e^r - 1) / r = sum r^j / (j + 1)!, through
// r^19 (the first term left out is below 2^-65).
MAMBA_HOST_DEVICE inline double expm1_over_x(double r) {
  double p = 0x1.e542ba4020225p-62;      // 1/20!
  p = fma(p, r, 0x1.2f49b46814157p-57);  // 1/19!
  p = fma(p, r, 0x1.6827863b97d97p-53);  // 1/18!
  p = fma(p, r, 0x1.952c77030ad4ap-49);  // 1/17!
  p = fma(p, r, 0x1.ae7f3e733b81fp-45);  // 1/16!
  p = fma(p, r, 0x1.ae7f3e733b81fp-41);  // 1/15!
  p = fma(p, r, 0x1.93974a8c07c9dp-37);  // 1/14!
  p = fma(p, r, 0x1.6124613a86d09p-33);  // 1/13!
  p = fma(p, r, 0x1.1eed8eff8d898p-29);  // 1/12!
  p = fma(p, r, 0x1.ae64567f544e4p-26);  // 1/11!
  p = fma(p, r, 0x1.27e4fb7789f5cp-22);  // 1/10!
  p = fma(p, r, 0x1.71de3a556c734p-19);  // 1/9!
  p = fma(p, r, 0x1.a01a01a01a01ap-16);  // 1/8!
  p = fma(p, r, 0x1.a01a01a01a01ap-13);  // 1/7!
  p = fma(p, r, 0x1.6c16c16c16c17p-10);  // 1/6!
  p = fma(p, r, 0x1.1111111111111p-7);   // 1/5!
  p = fma(p, r, 0x1.5555555555555p-5);   // 1/4!
  p = fma(p, r, 0x1.5555555555555p-3);   // 1/3!
  p = fma(p, r, 0.5);                    // 1/2!
  return fma(p, r, 1.0);
}

// e^x = e^r 2^k for -700 < x < 700, with |r| <= ln(2) / 2: returns e^r, and 2^k in scale.
MAMBA_HOST_DEVICE inline double exp_reduced(double x, double& scale) {
  const double k = rint(x * kInvLn2);
  double r = fma(-k, kLn2Hi, x);
  r = fma(-k, kLn2Lo, r);
  scale = pow2(int(k));
  return fma(r, expm1_over_x(r), 1.0);
}

MAMBA_HOST_DEVICE inline double exp(double x) {
  double scale;
  const double e_r = exp_reduced(x, scale);
  return e_r * scale;
}

// e^x - 1 for -700 < x < 700: the series where exp(x) - 1 would cancel (|x| <= 1).
MAMBA_HOST_DEVICE inline double expm1(double x) {
  if (x >= -1.0 && x <= 1.0) return x * expm1_over_x(x);
  double scale;
  const double e_r = exp_reduced(x, scale);
  return fma(e_r, scale, -1.0);
}

// ln x for normal positive x: x = 2^e m with m in [sqrt(1/2), sqrt(2)], and
// ln m = 2 atanh(s) = 2 (s + s^3/3 + s^5/5 + ...) with s = (m - 1) / (m + 1), |s| <= 0.172;
// through s^21 (the first term left out is below 2^-56 of the sum).
MAMBA_HOST_DEVICE inline double log(double x) {
  uint64_t b = bits_of(x);
  int e = int(b >> 52) - 1023;
  b = (b & 0x000fffffffffffffull) | 0x3ff0000000000000ull;  // the mantissa, in [1, 2)
  double m = from_bits(b);
  if (m > kSqrt2) {
    m = from_bits(b - (uint64_t(1) << 52));  // m / 2, exactly
    ++e;
  }
  const double s = (m - 1.0) / (m + 1.0);
  const double s2 = s * s;
  double p = 0x1.642c8590b2164p-5;       // 1/23
  p = fma(p, s2, 0x1.8618618618618p-5);  // 1/21
  p = fma(p, s2, 0x1.af286bca1af28p-5);  // 1/19
  p = fma(p, s2, 0x1.e1e1e1e1e1e1ep-5);  // 1/17
  p = fma(p, s2, 0x1.1111111111111p-4);  // 1/15
  p = fma(p, s2, 0x1.3b13b13b13b14p-4);  // 1/13
  p = fma(p, s2, 0x1.745d1745d1746p-4);  // 1/11
  p = fma(p, s2, 0x1.c71c71c71c71cp-4);  // 1/9
  p = fma(p, s2, 0x1.2492492492492p-3);  // 1/7
  p = fma(p, s2, 0x1.999999999999ap-3);  // 1/5
  p = fma(p, s2, 0x1.5555555555555p-2);  // 1/3
  const double two_s = 2.0 * s;
  const double ln_m = fma(two_s, s2 * p, two_s);
  return fma(double(e), kLn2Hi, fma(double(e), kLn2Lo, ln_m));
}

// cos(x) and sin(x) for |x| <= pi/4, Taylor series through x^20 and x^21 (the first terms left
// out are below 2^-60).
MAMBA_HOST_DEVICE inline double cos_small(double x) {
  const double x2 = x * x;
  double p = 0x1.e542ba4020225p-62;        // 1/20!
  p = fma(p, x2, -0x1.6827863b97d97p-53);  // -1/18!
  p = fma(p, x2, 0x1.ae7f3e733b81fp-45);   // 1/16!
  p = fma(p, x2, -0x1.93974a8c07c9dp-37);  // -1/14!
  p = fma(p, x2, 0x1.1eed8eff8d898p-29);   // 1/12!
  p = fma(p, x2, -0x1.27e4fb7789f5cp-22);  // -1/10!
  p = fma(p, x2, 0x1.a01a01a01a01ap-16);   // 1/8!
  p = fma(p, x2, -0x1.6c16c16c16c17p-10);  // -1/6!
  p = fma(p, x2, 0x1.5555555555555p-5);    // 1/4!
  p = fma(p, x2, -0.5);                    // -1/2!
  return fma(p, x2, 1.0);
}

MAMBA_HOST_DEVICE inline double sin_small(double x) {
  const double x2 = x * x;
  double p = 0x1.71b8ef6dcf572p-66;        // 1/21!
  p = fma(p, x2, -0x1.2f49b46814157p-57);  // -1/19!
  p = fma(p, x2, 0x1.952c77030ad4ap-49);   // 1/17!
  p = fma(p, x2, -0x1.ae7f3e733b81fp-41);  // -1/15!
  p = fma(p, x2, 0x1.6124613a86d09p-33);   // 1/13!
  p = fma(p, x2, -0x1.ae64567f544e4p-26);  // -1/11!
  p = fma(p, x2, 0x1.71de3a556c734p-19);   // 1/9!
  p = fma(p, x2, -0x1.a01a01a01a01ap-13);  // -1/7!
  p = fma(p, x2, 0x1.1111111111111p-7);    // 1/5!
  p = fma(p, x2, -0x1.5555555555555p-3);   // -1/3!
  return fma(x, x2 * p, x);
}

// cos(2 pi w) for w in [0, 1]. The reduction to an eighth of a turn works on w, where it is
// exact (w, 1 - w, 1/2 - w and 1/4 - w are all representable for the w a counter draws); only
// then is the angle formed.
MAMBA_HOST_DEVICE inline double cos_2pi(double w) {
  if (w > 0.5) w = 1.0 - w;  // cos(2 pi w) = cos(2 pi (1 - w))
  double sign = 1.0;
  if (w > 0.25) {  // cos(2 pi w) = -cos(2 pi (1/2 - w))
    w = 0.5 - w;
    sign = -1.0;
  }
  // w in [0, 1/4]; beyond 1/8, cos(2 pi w) = sin(2 pi (1/4 - w)).
  const double c = w > 0.125 ? sin_small((0.25 - w) * kTwoPi) : cos_small(w * kTwoPi);
  return sign * c;
}

}  // namespace mamba::repro
