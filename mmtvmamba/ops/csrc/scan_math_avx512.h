// Copyright (c) mmtvmamba contributors. All rights reserved.
//
// AVX-512F math shared by the selective scan kernels and the GELU of the
// matmul epilogue: accurate exp, log1p on [0, 1] and PyTorch's softplus,
// 16 float lanes at a time. Include it only in x86 builds
// (MMTVMAMBA_SCAN_AVX512 or MMTVMAMBA_X86_KERNELS is 1). The functions carry the avx512f
// target attribute, so they inline only into functions marked with
// MMTVMAMBA_AVX512F, which callers run after a CPUID check.
#pragma once

#include <cstdint>

// GCC 12 reports a false -Wmaybe-uninitialized on the _mm512_undefined_*()
// pass-through operand of many unmasked intrinsics once they are inlined.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop

#define MMTVMAMBA_AVX512F __attribute__((target("avx512f")))

namespace mmtvmamba {

constexpr int64_t kLanes = 16;
constexpr __mmask16 kAllLanes = 0xFFFF;

// ln(2) = kLn2Hi + kLn2Lo. kLn2Hi (0x3f317200) has 9 trailing zero bits, so
// n * kLn2Hi is exact for the |n| <= 151 that exp_ps produces.
constexpr float kLn2Hi = 0.693145751953125f;
constexpr float kLn2Lo = 1.4286068e-06f;
constexpr float kLn2 = 0.6931472f;
constexpr float kLog2e = 1.442695f;

// exp(x) is 0 in float32 below -104 and +inf above 89, so x is clamped to
// this range first. That keeps n finite and the reduced argument small.
constexpr float kExpMin = -104.0f;
constexpr float kExpMax = 89.0f;

// Inputs above this are returned unchanged by PyTorch's softplus.
constexpr float kSoftplusThreshold = 20.0f;

MMTVMAMBA_AVX512F inline __mmask16 tail_mask(int64_t left) {
  return left >= kLanes ? kAllLanes
                        : static_cast<__mmask16>((1u << left) - 1u);
}

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

// Compute log1p(z) for z in [0, 1]. Write 1 + z = 2^e * (1 + f). For
// z <= 0.5, e = 0 and f = z. Above, e = 1 and f = (z - 1) / 2, which is
// exact because z - 1 is exact for z in [0.5, 1] (Sterbenz's lemma). So f
// lies in [-0.25, 0.5] with no rounding error, and
// log1p(f) = 2 * atanh(s) with s = f / (2 + f), |s| <= 0.2, is summed up to
// s^11. That leaves a truncation error below 1e-9 relative, and the small
// results for tiny z keep their relative accuracy.
MMTVMAMBA_AVX512F inline __m512 log1p_unit_ps(__m512 z) {
  const __mmask16 upper =
      _mm512_cmp_ps_mask(z, _mm512_set1_ps(0.5f), _CMP_GT_OQ);
  const __m512 f = _mm512_mask_fmadd_ps(z, upper, _mm512_set1_ps(0.5f),
                                        _mm512_set1_ps(-0.5f));
  const __m512 e_ln2 = _mm512_maskz_mov_ps(upper, _mm512_set1_ps(kLn2));

  const __m512 s = _mm512_div_ps(f, _mm512_add_ps(_mm512_set1_ps(2.0f), f));
  const __m512 s2 = _mm512_mul_ps(s, s);
  __m512 q = _mm512_set1_ps(1.0f / 11.0f);
  q = _mm512_fmadd_ps(q, s2, _mm512_set1_ps(1.0f / 9.0f));
  q = _mm512_fmadd_ps(q, s2, _mm512_set1_ps(1.0f / 7.0f));
  q = _mm512_fmadd_ps(q, s2, _mm512_set1_ps(1.0f / 5.0f));
  q = _mm512_fmadd_ps(q, s2, _mm512_set1_ps(1.0f / 3.0f));
  const __m512 two_s = _mm512_add_ps(s, s);
  const __m512 log1p_f = _mm512_fmadd_ps(_mm512_mul_ps(two_s, s2), q, two_s);
  return _mm512_add_ps(e_ln2, log1p_f);
}

// Compute PyTorch's softplus: x for x > 20, else log1p(exp(x)), evaluated
// as max(x, 0) + log1p(exp(-|x|)) so that exp never overflows.
MMTVMAMBA_AVX512F inline __m512 softplus_ps(__m512 x) {
  const __m512i sign = _mm512_set1_epi32(static_cast<int>(0x80000000u));
  const __m512 minus_abs = _mm512_castsi512_ps(
      _mm512_or_si512(_mm512_castps_si512(x), sign));
  // x is the second operand, so NaN propagates.
  const __m512 positive = _mm512_max_ps(_mm512_setzero_ps(), x);
  const __m512 smooth =
      _mm512_add_ps(positive, log1p_unit_ps(exp_ps(minus_abs)));

  const __mmask16 large = _mm512_cmp_ps_mask(
      x, _mm512_set1_ps(kSoftplusThreshold), _CMP_GT_OQ);
  return _mm512_mask_blend_ps(large, smooth, x);
}

}  // namespace mmtvmamba
