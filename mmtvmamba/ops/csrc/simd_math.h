// Copyright (c) mmtvmamba contributors. All rights reserved.
//
// AVX-512F math functions shared by the kernels. Only functions marked with
// MMTVMAMBA_AVX512F use these instructions; callers reach them only after a
// CPUID check. Include this header after <immintrin.h>.
#pragma once

#include "ternary.h"

#if MMTVMAMBA_X86_KERNELS

#define MMTVMAMBA_AVX512F __attribute__((target("avx512f")))

namespace mmtvmamba {
namespace simd {

// ln(2) = kLn2Hi + kLn2Lo. kLn2Hi (0x3f317200) has 9 trailing zero bits, so
// n * kLn2Hi is exact for the |n| <= 151 that exp_ps produces.
constexpr float kLn2Hi = 0.693145751953125f;
constexpr float kLn2Lo = 1.4286068e-06f;
constexpr float kLog2e = 1.442695f;

// exp(x) is 0 in float32 below -104 and +inf above 89, so x is clamped to
// this range first. That keeps n finite and the reduced argument small.
constexpr float kExpMin = -104.0f;
constexpr float kExpMax = 89.0f;

// Compute exp(x) to about 1 ulp. x = n * ln(2) + r with n an integer and
// |r| <= ln(2) / 2, so exp(x) = 2^n * exp(r). The degree-7 Taylor
// polynomial of exp(r) has a truncation error below 1e-8 relative on that
// interval. NaN inputs give NaN, because vmaxps and vminps return their
// second operand when one operand is NaN, and x is passed second.
MMTVMAMBA_AVX512F inline __m512 exp_ps(__m512 x) {
  x = _mm512_max_ps(_mm512_set1_ps(kExpMin), x);
  x = _mm512_min_ps(_mm512_set1_ps(kExpMax), x);

  const __m512 n =
      _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(kLog2e)),
                           _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Hi), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Lo), r);

  __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));

  // vscalefps computes p * 2^n with one rounding, so results in the
  // subnormal range and overflow to +inf come out right.
  return _mm512_scalef_ps(p, n);
}

}  // namespace simd
}  // namespace mmtvmamba

#endif  // MMTVMAMBA_X86_KERNELS
