// Copyright (c) mmtvmamba contributors. All rights reserved.
//
// Residual addition and activation applied to a block of a float matmul
// output while the block is still in the cache, so neither needs another
// pass over the whole output.
//
// GELU(x) = x / 2 * (1 + erf(x / sqrt(2))). The portable path calls
// std::erf. The AVX-512 path evaluates erf(z) = 1 - t * P(t) * exp(-z^2),
// t = 1 / (1 + 0.3275911 * |z|), with the degree-4 polynomial P of
// Abramowitz and Stegun (formula 7.1.26, absolute error below 1.5e-7).
#include <cmath>
#include <cstdint>

#include <c10/util/Exception.h>

#include "ternary.h"

#if MMTVMAMBA_X86_KERNELS
#include "scan_math_avx512.h"
#endif

namespace mmtvmamba {

namespace {

constexpr float kSqrtHalf = 0.70710678f;

float gelu(float x) {
  return 0.5f * x * (1.0f + std::erf(x * kSqrtHalf));
}

}  // namespace

void epilogue_portable(const Epilogue& epilogue, float* out, int64_t n,
                       int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  const bool use_gelu = epilogue.activation == Activation::kGelu;
  for (int64_t m = m0; m < m1; ++m) {
    float* row = out + m * n;
    for (int64_t j = n0; j < n1; ++j) {
      float value = row[j];
      if (epilogue.residual != nullptr) {
        value += epilogue.residual[m * epilogue.residual_row_stride +
                                   j * epilogue.residual_col_stride];
      }
      row[j] = use_gelu ? gelu(value) : value;
    }
  }
}

#if MMTVMAMBA_X86_KERNELS

namespace {

// erf(z) for 16 lanes by formula 7.1.26; odd in z.
MMTVMAMBA_AVX512F inline __m512 erf_ps(__m512 z) {
  const __m512 magnitude = _mm512_abs_ps(z);
  const __m512 t = _mm512_div_ps(
      _mm512_set1_ps(1.0f),
      _mm512_fmadd_ps(_mm512_set1_ps(0.3275911f), magnitude,
                      _mm512_set1_ps(1.0f)));
  __m512 p = _mm512_set1_ps(1.061405429f);
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.453152027f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.421413741f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.284496736f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.254829592f));
  const __m512 decay = exp_ps(
      _mm512_mul_ps(_mm512_sub_ps(_mm512_setzero_ps(), magnitude), magnitude));
  const __m512 erf_abs = _mm512_fnmadd_ps(_mm512_mul_ps(p, t), decay,
                                          _mm512_set1_ps(1.0f));
  // Copy the sign of z onto erf(|z|).
  const __m512i sign_bit = _mm512_set1_epi32(static_cast<int>(0x80000000u));
  return _mm512_castsi512_ps(_mm512_ternarylogic_epi32(
      _mm512_castps_si512(erf_abs), _mm512_castps_si512(z), sign_bit, 0xD8));
}

MMTVMAMBA_AVX512F inline __m512 gelu_ps(__m512 x) {
  const __m512 half_x = _mm512_mul_ps(_mm512_set1_ps(0.5f), x);
  const __m512 erf = erf_ps(_mm512_mul_ps(x, _mm512_set1_ps(kSqrtHalf)));
  return _mm512_fmadd_ps(half_x, erf, half_x);
}

}  // namespace

MMTVMAMBA_AVX512F void epilogue_avx512(const Epilogue& epilogue, float* out,
                                       int64_t n, int64_t m0, int64_t m1,
                                       int64_t n0, int64_t n1) {
  if (epilogue.residual != nullptr && epilogue.residual_col_stride != 1) {
    epilogue_portable(epilogue, out, n, m0, m1, n0, n1);
    return;
  }
  const bool use_gelu = epilogue.activation == Activation::kGelu;
  for (int64_t m = m0; m < m1; ++m) {
    float* row = out + m * n;
    const float* residual =
        epilogue.residual != nullptr
            ? epilogue.residual + m * epilogue.residual_row_stride
            : nullptr;
    for (int64_t j = n0; j < n1; j += 16) {
      const __mmask16 mask =
          n1 - j >= 16 ? __mmask16{0xFFFF}
                       : static_cast<__mmask16>((1u << (n1 - j)) - 1u);
      __m512 value = _mm512_maskz_loadu_ps(mask, row + j);
      if (residual != nullptr) {
        value = _mm512_add_ps(value, _mm512_maskz_loadu_ps(mask, residual + j));
      }
      if (use_gelu) {
        value = gelu_ps(value);
      }
      _mm512_mask_storeu_ps(row + j, mask, value);
    }
  }
}

#else  // no x86 kernels in this build

void epilogue_avx512(const Epilogue&, float*, int64_t, int64_t, int64_t,
                     int64_t, int64_t) {
  TORCH_CHECK(false, "the AVX-512 epilogue is not compiled in this build; "
                     "select the portable path");
}

#endif

}  // namespace mmtvmamba
