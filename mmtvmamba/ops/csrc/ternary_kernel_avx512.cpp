// Copyright (c) mmtvmamba contributors. All rights reserved.
//
// AVX-512 kernel (F, BW, VL, VPOPCNTDQ). Only functions marked with
// MMTVMAMBA_AVX512 use these instructions, so the library still loads on
// CPUs without them. The dispatcher calls block_avx512 only after a CPUID
// check.
//
// Register blocking: one micro tile is kRowTile activation rows by
// kColTile groups of 16 weight rows (output columns). Per 32-bit word of K
// it loads 2 * kColTile weight vectors and broadcasts 2 words per
// activation row. Each (row, group) pair then costs 6 vector instructions
// per 512 multiply-accumulates: AND, VPTERNLOGD, 2 VPOPCNTD and 2 VPADDD.
// The 4 x 2 tile keeps its 16 accumulators and 4 weight vectors in the 32
// zmm registers. With GCC 12, a 4 x 3 tile spilled accumulators to the
// stack and ran slower.
#include <cstdint>

#include "ternary.h"

#if MMTVMAMBA_X86_KERNELS

#include <immintrin.h>

#define MMTVMAMBA_AVX512 \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512vpopcntdq")))

namespace mmtvmamba {

namespace {

constexpr int kRowTile = 4;
constexpr int kColTile = 2;

// VPTERNLOG truth table of a & (b ^ c) for operands (a, b, c).
constexpr int kAndXor = 0x60;

// Weight operand of a micro tile: the first of up to kColTile consecutive
// groups, the words between groups and the lanes of a partial last group.
struct WeightTile {
  const int32_t* base;
  int64_t group_words;
  int64_t lanes;
};

// Activation operand of a micro tile: the base of each row and the lanes of
// their common group (kRowTile divides kGroupRows, so a tile never spans
// two groups).
struct ActTile {
  const int32_t* rows[kRowTile];
  int64_t lanes;
};

// Accumulate the tile over K words [k0, k1) and write dot products to dots,
// ordered [row][column group]. When Masked, NR is 1 and the weight group
// has lanes < 16 and is read with a masked load.
template <int MR, int NR, int Levels, bool Masked>
MMTVMAMBA_AVX512 inline void dot_tile(const ActTile& act,
                                      const WeightTile& weight, int64_t k0,
                                      int64_t k1, __m512i* dots) {
  constexpr int kPlanes = 2 * Levels;
  const __mmask16 mask =
      Masked ? static_cast<__mmask16>((1u << weight.lanes) - 1) : 0xFFFF;
  const int64_t w_step = kTernaryPlanes * weight.lanes;
  const int64_t a_step = kPlanes * act.lanes;

  __m512i count_nz[MR][NR];
  __m512i count_neg[MR][NR];
  for (int i = 0; i < MR; ++i) {
    for (int j = 0; j < NR; ++j) {
      count_nz[i][j] = _mm512_setzero_si512();
      count_neg[i][j] = _mm512_setzero_si512();
    }
  }

  for (int64_t k = k0; k < k1; ++k) {
    __m512i w_nz[NR];
    __m512i w_sign[NR];
    for (int j = 0; j < NR; ++j) {
      const int32_t* w = weight.base + j * weight.group_words + k * w_step;
      if (Masked) {
        w_nz[j] = _mm512_maskz_loadu_epi32(mask, w);
        w_sign[j] = _mm512_maskz_loadu_epi32(mask, w + weight.lanes);
      } else {
        w_nz[j] = _mm512_loadu_si512(w);
        w_sign[j] = _mm512_loadu_si512(w + kGroupRows);
      }
    }

    for (int level = 0; level < Levels; ++level) {
      for (int i = 0; i < MR; ++i) {
        const int32_t* a = act.rows[i] + k * a_step + 2 * level * act.lanes;
        const __m512i a_nz = _mm512_set1_epi32(a[0]);
        const __m512i a_sign = _mm512_set1_epi32(a[act.lanes]);
        for (int j = 0; j < NR; ++j) {
          const __m512i both = _mm512_and_si512(a_nz, w_nz[j]);
          const __m512i negative =
              _mm512_ternarylogic_epi32(both, a_sign, w_sign[j], kAndXor);
          count_nz[i][j] =
              _mm512_add_epi32(count_nz[i][j], _mm512_popcnt_epi32(both));
          count_neg[i][j] = _mm512_add_epi32(count_neg[i][j],
                                             _mm512_popcnt_epi32(negative));
        }
      }
    }
  }

  for (int i = 0; i < MR; ++i) {
    for (int j = 0; j < NR; ++j) {
      const __m512i twice_neg =
          _mm512_add_epi32(count_neg[i][j], count_neg[i][j]);
      dots[i * NR + j] = _mm512_sub_epi32(count_nz[i][j], twice_neg);
    }
  }
}

// Sum the dot products of every K segment, each times its scale, in float
// accumulators that stay in registers.
template <int MR, int NR, int Levels, bool Masked>
MMTVMAMBA_AVX512 inline void segment_tile(const MatmulArgs& args,
                                          const ActTile& act,
                                          const WeightTile& weight,
                                          __m512* sums) {
  for (int i = 0; i < MR * NR; ++i) {
    sums[i] = _mm512_setzero_ps();
  }
  for (int64_t s = 0; s < args.num_segments; ++s) {
    __m512i dots[MR * NR];
    dot_tile<MR, NR, Levels, Masked>(act, weight, args.seg_begin[s],
                                     args.seg_begin[s + 1], dots);
    const __m512 scale = _mm512_set1_ps(args.seg_scale[s]);
    for (int i = 0; i < MR * NR; ++i) {
      sums[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dots[i]), scale, sums[i]);
    }
  }
}

// Store 16 (or mask-selected) float sums of output row `row` starting at
// column `col` through the float epilogue.
MMTVMAMBA_AVX512 inline void store_sums(const MatmulArgs& args, int64_t row,
                                        int64_t col, __mmask16 mask,
                                        __m512 sum) {
  const float row_scale = args.row_scale ? args.row_scale[row] : 1.0f;
  const __m512 col_scale =
      args.col_scale_per_column
          ? _mm512_maskz_loadu_ps(mask, args.col_scale + col)
          : _mm512_set1_ps(args.col_scale[0]);
  const __m512 scale = _mm512_mul_ps(_mm512_set1_ps(row_scale), col_scale);
  const __m512 bias = args.bias ? _mm512_maskz_loadu_ps(mask, args.bias + col)
                                : _mm512_setzero_ps();
  _mm512_mask_storeu_ps(args.out_float + row * args.n + col, mask,
                        _mm512_fmadd_ps(sum, scale, bias));
}

// Store 16 (or mask-selected) dot products of output row `row` starting at
// column `col`, applying the float epilogue when the output is float.
MMTVMAMBA_AVX512 inline void store_dots(const MatmulArgs& args, int64_t row,
                                        int64_t col, __mmask16 mask,
                                        __m512i dot) {
  if (args.out_int != nullptr) {
    _mm512_mask_storeu_epi32(args.out_int + row * args.n + col, mask, dot);
    return;
  }

  const float row_scale = args.row_scale ? args.row_scale[row] : 1.0f;
  const __m512 col_scale =
      args.col_scale_per_column
          ? _mm512_maskz_loadu_ps(mask, args.col_scale + col)
          : _mm512_set1_ps(args.col_scale[0]);
  const __m512 scale = _mm512_mul_ps(
      _mm512_set1_ps(row_scale * args.k_scale), col_scale);
  float* out = args.out_float + row * args.n + col;
  __m512 base = args.bias ? _mm512_maskz_loadu_ps(mask, args.bias + col)
                          : _mm512_setzero_ps();
  if (args.accumulate) {
    base = _mm512_add_ps(base, _mm512_maskz_loadu_ps(mask, out));
  }
  const __m512 value =
      _mm512_fmadd_ps(_mm512_maskz_cvtepi32_ps(mask, dot), scale, base);
  _mm512_mask_storeu_ps(out, mask, value);
}

template <int MR, int NR, int Levels, bool Masked>
MMTVMAMBA_AVX512 void run_tile(const MatmulArgs& args, const ActTile& act,
                               int64_t row, const WeightTile& weight,
                               int64_t col) {
  const __mmask16 mask =
      Masked ? static_cast<__mmask16>((1u << weight.lanes) - 1) : 0xFFFF;
  if (args.num_segments > 0) {
    __m512 sums[MR * NR];
    segment_tile<MR, NR, Levels, Masked>(args, act, weight, sums);
    for (int i = 0; i < MR; ++i) {
      for (int j = 0; j < NR; ++j) {
        store_sums(args, row + i, col + j * kGroupRows, mask,
                   sums[i * NR + j]);
      }
    }
    return;
  }

  __m512i dots[MR * NR];
  dot_tile<MR, NR, Levels, Masked>(act, weight, args.k_begin, args.k_end,
                                   dots);
  for (int i = 0; i < MR; ++i) {
    for (int j = 0; j < NR; ++j) {
      store_dots(args, row + i, col + j * kGroupRows, mask,
                 dots[i * NR + j]);
    }
  }
}

// Sweep the column groups of [n0, n1) for one row tile of MR rows.
template <int MR, int Levels>
MMTVMAMBA_AVX512 void sweep_columns(const MatmulArgs& args,
                                    const ActTile& act, int64_t row,
                                    int64_t n0, int64_t n1) {
  const int64_t group_words = kGroupRows * kTernaryPlanes * args.kd;
  const int64_t full_end = args.n / kGroupRows;
  const int64_t g_end = (n1 + kGroupRows - 1) / kGroupRows;
  const int64_t full_stop = g_end < full_end ? g_end : full_end;
  int64_t g = n0 / kGroupRows;
  for (; g + kColTile <= full_stop; g += kColTile) {
    const WeightTile weight{args.w + g * group_words, group_words,
                            kGroupRows};
    run_tile<MR, kColTile, Levels, false>(args, act, row, weight,
                                          g * kGroupRows);
  }

  if (g < full_stop) {
    const WeightTile rest{args.w + g * group_words, group_words, kGroupRows};
    run_tile<MR, 1, Levels, false>(args, act, row, rest, g * kGroupRows);
    g += 1;
  }

  // The last group of the weight may be partial; it is stored with fewer
  // lanes, so it goes through the masked path.
  if (g < g_end && g == full_end) {
    const WeightTile weight{args.w + g * group_words, group_words,
                            group_lanes(g, args.n)};
    run_tile<MR, 1, Levels, true>(args, act, row, weight, g * kGroupRows);
  }
}

template <int Levels>
MMTVMAMBA_AVX512 void block_levels(const MatmulArgs& args, int64_t m0,
                                   int64_t m1, int64_t n0, int64_t n1) {
  static_assert(kColTile == 2, "sweep_columns handles one leftover group");
  static_assert(kGroupRows % kRowTile == 0, "row tiles must not span groups");
  const int planes = args.a_planes;
  for (int64_t row = m0; row < m1; row += kRowTile) {
    const int64_t g = row / kGroupRows;
    ActTile act{};
    act.lanes = group_lanes(g, args.m);
    const int64_t rows_left = m1 - row;
    const int mr = rows_left < kRowTile ? static_cast<int>(rows_left)
                                        : kRowTile;
    for (int i = 0; i < mr; ++i) {
      act.rows[i] = args.a + group_offset(g, planes, args.kd) +
                    (row + i - g * kGroupRows);
    }
    switch (mr) {
      case 4:
        sweep_columns<4, Levels>(args, act, row, n0, n1);
        break;
      case 3:
        sweep_columns<3, Levels>(args, act, row, n0, n1);
        break;
      case 2:
        sweep_columns<2, Levels>(args, act, row, n0, n1);
        break;
      default:
        sweep_columns<1, Levels>(args, act, row, n0, n1);
        break;
    }
  }
}

}  // namespace

MMTVMAMBA_AVX512 void block_avx512(const MatmulArgs& args, int64_t m0,
                                   int64_t m1, int64_t n0, int64_t n1) {
  if (args.a_planes == kQuinaryPlanes) {
    block_levels<2>(args, m0, m1, n0, n1);
  } else {
    block_levels<1>(args, m0, m1, n0, n1);
  }
}

}  // namespace mmtvmamba

#else  // no x86 kernels in this build

#include <c10/util/Exception.h>

namespace mmtvmamba {

void block_avx512(const MatmulArgs&, int64_t, int64_t, int64_t, int64_t) {
  TORCH_CHECK(false, "the AVX-512 ternary kernel is not compiled in this "
                     "build; select the portable path");
}

}  // namespace mmtvmamba

#endif
