// Copyright (c) mmtvmamba contributors. All rights reserved.
//
// AVX-512F selective scan kernel. Only functions marked with
// MMTVMAMBA_AVX512F use these instructions, so the library still loads on
// CPUs without them. The dispatcher calls scan_rows_avx512 only after a
// CPUID check.
//
// A row is processed in blocks of kBlock time steps and each block in two
// passes. The first computes dt (with softplus) and dt * u, 16 lanes at a
// time. The second advances each state 16 steps at a time: it computes the
// decays exp(dt * A) in the lanes, solves h_t = a_t * h_{t-1} + b_t across
// the 16 lanes in registers by a prefix scan of the affine maps (a, b) in 4
// shift-and-combine steps, and then adds the state carried in from the
// previous 16 steps as h = P_t * carry + H_t, where P_t is the running
// product of the decays and H_t the state scanned from zero. Only that
// carry links the iterations, so the out-of-order core overlaps the
// transcendental work of consecutive iterations.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "selective_scan.h"

#if MMTVMAMBA_SCAN_AVX512

#include "scan_math_avx512.h"

namespace mmtvmamba {

namespace {

// Return v moved up by kShift lanes, so lane i contains v[i - kShift] for
// i >= kShift. Lanes below kShift contain zeros that the caller masks out.
template <int kShift>
MMTVMAMBA_AVX512F inline __m512 shift_up(__m512 v) {
  return _mm512_castsi512_ps(_mm512_alignr_epi32(
      _mm512_castps_si512(v), _mm512_setzero_si512(), kLanes - kShift));
}

// Compose lane i's map with the map kShift lanes below it:
// (a_i, b_i) o (a_j, b_j) = (a_i * a_j, a_i * b_j + b_i), j = i - kShift.
// Lanes below kShift have no such map and keep their values, so no decay is
// multiplied by a padding zero (inf * 0 would give NaN).
template <int kShift>
MMTVMAMBA_AVX512F inline void combine_lanes(__m512& decay, __m512& drive) {
  constexpr __mmask16 kUpper = static_cast<__mmask16>(kAllLanes << kShift);
  drive = _mm512_mask3_fmadd_ps(decay, shift_up<kShift>(drive), drive, kUpper);
  decay = _mm512_mask_mul_ps(decay, kUpper, decay, shift_up<kShift>(decay));
}

// Turn per-lane decays a_t and drives b_t into the running products
// a_0 * ... * a_t and the states h_t of h_t = a_t * h_{t-1} + b_t with
// h_{-1} = 0 (Hillis-Steele prefix scan over the 16 lanes).
MMTVMAMBA_AVX512F inline void scan_lanes(__m512& decay, __m512& drive) {
  combine_lanes<1>(decay, drive);
  combine_lanes<2>(decay, drive);
  combine_lanes<4>(decay, drive);
  combine_lanes<8>(decay, drive);
}

MMTVMAMBA_AVX512F inline __m512 broadcast_last(__m512 v) {
  return _mm512_permutexvar_ps(_mm512_set1_epi32(kLanes - 1), v);
}

// Time steps per block, a multiple of kLanes. A block's dt and dt * u stay
// in stack buffers (2 x 1 KiB, so in L1) between the two passes.
constexpr int64_t kBlock = 256;

// Fill dt[0, count) with delta + delta_bias, passed through softplus if
// kSoftplus, and du with dt * u. Lanes past count are computed from zeros.
template <bool kSoftplus>
MMTVMAMBA_AVX512F void time_steps(const ScanRow& row, int64_t t0,
                                  int64_t count, float* dt, float* du) {
  const __m512 bias = _mm512_set1_ps(row.delta_bias);
  for (int64_t t = 0; t < count; t += kLanes) {
    const __mmask16 mask = tail_mask(count - t);
    __m512 step = _mm512_add_ps(
        _mm512_maskz_loadu_ps(mask, row.delta + t0 + t), bias);
    if (kSoftplus) {
      step = softplus_ps(step);
    }
    const __m512 u = _mm512_maskz_loadu_ps(mask, row.u + t0 + t);
    _mm512_storeu_ps(dt + t, step);
    _mm512_storeu_ps(du + t, _mm512_mul_ps(step, u));
  }
}

// Advance state n over the block [t0, t0 + count) and add C * h to y.
// kFirst marks state 0, which starts y as D * u instead of reading it.
// Returns the state after the block, broadcast to all lanes. Only a row's
// last block can end in a partial vector, so the lanes past count, which
// feed that carry, never reach a stored output.
template <bool kFirst>
MMTVMAMBA_AVX512F __m512 scan_state(const ScanRow& row, int64_t length,
                                    int64_t n, int64_t t0, int64_t count,
                                    const float* dt, const float* du,
                                    __m512 carry) {
  const __m512 a = _mm512_set1_ps(row.a[n]);
  const __m512 d = _mm512_set1_ps(row.d);
  const float* b = row.b + n * length + t0;
  const float* c = row.c + n * length + t0;
  float* y = row.y + t0;

  for (int64_t t = 0; t < count; t += kLanes) {
    const __mmask16 mask = tail_mask(count - t);
    __m512 decay = exp_ps(_mm512_mul_ps(_mm512_loadu_ps(dt + t), a));
    __m512 drive = _mm512_mul_ps(_mm512_loadu_ps(du + t),
                                 _mm512_maskz_loadu_ps(mask, b + t));
    scan_lanes(decay, drive);
    const __m512 h = _mm512_fmadd_ps(decay, carry, drive);
    carry = broadcast_last(h);

    const __m512 base =
        kFirst ? _mm512_mul_ps(d, _mm512_maskz_loadu_ps(mask, row.u + t0 + t))
               : _mm512_maskz_loadu_ps(mask, y + t);
    const __m512 out =
        _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, c + t), h, base);
    _mm512_mask_storeu_ps(y + t, mask, out);
  }
  return carry;
}

// Scan one row block by block, with one float per state in carries. The
// two passes keep the dependency chain of one loop iteration short enough for
// the out-of-order core to overlap many iterations. One fused loop over
// time measured about 1.3 times slower (1.9 against 1.4 ns per time step
// with d_state 1 on one AMD EPYC Zen 4 core).
template <bool kSoftplus>
MMTVMAMBA_AVX512F void scan_one_row(const ScanRow& row, int64_t length,
                                    int64_t states, float* carries) {
  alignas(64) float dt[kBlock];
  alignas(64) float du[kBlock];
  for (int64_t n = 0; n < states; ++n) {
    carries[n] = 0.0f;
  }

  for (int64_t t0 = 0; t0 < length; t0 += kBlock) {
    const int64_t count = std::min(kBlock, length - t0);
    time_steps<kSoftplus>(row, t0, count, dt, du);

    for (int64_t n = 0; n < states; ++n) {
      const __m512 carry_in = _mm512_set1_ps(carries[n]);
      const __m512 carry_out =
          n == 0 ? scan_state<true>(row, length, n, t0, count, dt, du,
                                    carry_in)
                 : scan_state<false>(row, length, n, t0, count, dt, du,
                                     carry_in);
      carries[n] = _mm512_cvtss_f32(carry_out);
    }
  }
}

}  // namespace

MMTVMAMBA_AVX512F void scan_rows_avx512(const ScanArgs& args, int64_t r0,
                                        int64_t r1) {
  std::vector<float> carries(args.states);
  for (int64_t r = r0; r < r1; ++r) {
    if (args.delta_softplus) {
      scan_one_row<true>(scan_row(args, r), args.length, args.states,
                         carries.data());
    } else {
      scan_one_row<false>(scan_row(args, r), args.length, args.states,
                          carries.data());
    }
  }
}

}  // namespace mmtvmamba

#else  // no x86 kernels in this build

#include <c10/util/Exception.h>

namespace mmtvmamba {

void scan_rows_avx512(const ScanArgs&, int64_t, int64_t) {
  TORCH_CHECK(false, "the AVX-512 selective scan kernel is not compiled in "
                     "this build; select the portable path");
}

}  // namespace mmtvmamba

#endif
