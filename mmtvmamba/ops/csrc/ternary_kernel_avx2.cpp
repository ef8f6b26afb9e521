// Copyright (c) mmtvmamba contributors. All rights reserved.
//
// AVX2 kernel and the SIMD packer. AVX2 has no vector popcount, so the
// kernel counts bits per byte with a 16-entry nibble table (VPSHUFB),
// accumulates the signed per-byte dot products in int8 for at most
// kByteSteps steps, then widens them to int32 lanes.
#include <cstdint>
#include <cstring>

#include "ternary.h"

#if MMTVMAMBA_X86_KERNELS

#include <immintrin.h>

#define MMTVMAMBA_AVX2 __attribute__((target("avx2")))

namespace mmtvmamba {

namespace {

constexpr int kRowTile = 2;

// Each step adds a value in [-8, 8] to an int8 lane, so 15 steps stay
// within [-120, 120].
constexpr int kByteSteps = 15;

// Return the per-lane mask for a masked load of `lanes` int32 values.
MMTVMAMBA_AVX2 inline __m256i lane_mask(int64_t lanes) {
  const __m256i index = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(lanes)),
                            index);
}

MMTVMAMBA_AVX2 inline __m256i popcount_bytes(__m256i x, __m256i table,
                                             __m256i low_nibble) {
  const __m256i low = _mm256_and_si256(x, low_nibble);
  const __m256i high = _mm256_and_si256(_mm256_srli_epi16(x, 4), low_nibble);
  return _mm256_add_epi8(_mm256_shuffle_epi8(table, low),
                         _mm256_shuffle_epi8(table, high));
}

// Add the int8 lanes of bytes, in groups of 4, to the int32 lanes of sums.
MMTVMAMBA_AVX2 inline __m256i widen_add(__m256i sums, __m256i bytes) {
  const __m256i pairs =
      _mm256_maddubs_epi16(_mm256_set1_epi8(1), bytes);
  return _mm256_add_epi32(sums,
                          _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
}

// Compute the dot products over K words [k0, k1) of MR activation rows
// with one weight group (2 halves of 8 lanes). lanes < 16 only for a partial last group.
template <int MR, int Levels>
MMTVMAMBA_AVX2 void dot_group(const int32_t* const* a_rows, int64_t a_lanes,
                              const int32_t* w, int64_t lanes, int64_t k0,
                              int64_t k1, __m256i* dots) {
  constexpr int kPlanes = 2 * Levels;
  const __m256i table = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3,
                                         2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3,
                                         1, 2, 2, 3, 2, 3, 3, 4);
  const __m256i low_nibble = _mm256_set1_epi8(0x0F);
  const __m256i masks[2] = {lane_mask(lanes), lane_mask(lanes - 8)};
  const int64_t w_step = kTernaryPlanes * lanes;
  const int64_t a_step = kPlanes * a_lanes;

  __m256i sums[MR][2];
  __m256i bytes[MR][2];
  for (int i = 0; i < MR; ++i) {
    for (int h = 0; h < 2; ++h) {
      sums[i][h] = _mm256_setzero_si256();
      bytes[i][h] = _mm256_setzero_si256();
    }
  }

  int steps = 0;
  for (int64_t k = k0; k < k1; ++k) {
    __m256i w_nz[2];
    __m256i w_sign[2];
    for (int h = 0; h < 2; ++h) {
      const int32_t* src = w + k * w_step + 8 * h;
      w_nz[h] = _mm256_maskload_epi32(src, masks[h]);
      w_sign[h] = _mm256_maskload_epi32(src + lanes, masks[h]);
    }

    for (int level = 0; level < Levels; ++level) {
      for (int i = 0; i < MR; ++i) {
        const int32_t* a = a_rows[i] + k * a_step + 2 * level * a_lanes;
        const __m256i a_nz = _mm256_set1_epi32(a[0]);
        const __m256i a_sign = _mm256_set1_epi32(a[a_lanes]);
        for (int h = 0; h < 2; ++h) {
          const __m256i both = _mm256_and_si256(a_nz, w_nz[h]);
          const __m256i negative = _mm256_and_si256(
              both, _mm256_xor_si256(a_sign, w_sign[h]));
          const __m256i count_neg =
              popcount_bytes(negative, table, low_nibble);
          const __m256i dot = _mm256_sub_epi8(
              popcount_bytes(both, table, low_nibble),
              _mm256_add_epi8(count_neg, count_neg));
          bytes[i][h] = _mm256_add_epi8(bytes[i][h], dot);
        }
      }

      if (++steps == kByteSteps) {
        for (int i = 0; i < MR; ++i) {
          for (int h = 0; h < 2; ++h) {
            sums[i][h] = widen_add(sums[i][h], bytes[i][h]);
            bytes[i][h] = _mm256_setzero_si256();
          }
        }
        steps = 0;
      }
    }
  }

  for (int i = 0; i < MR; ++i) {
    for (int h = 0; h < 2; ++h) {
      dots[2 * i + h] = widen_add(sums[i][h], bytes[i][h]);
    }
  }
}

MMTVMAMBA_AVX2 inline void store_half(const MatmulArgs& args, int64_t row,
                                      int64_t col, __m256i mask,
                                      __m256i dot) {
  if (args.out_int != nullptr) {
    _mm256_maskstore_epi32(args.out_int + row * args.n + col, mask, dot);
    return;
  }

  const float row_scale = args.row_scale ? args.row_scale[row] : 1.0f;
  const __m256 col_scale =
      args.col_scale_per_column
          ? _mm256_maskload_ps(args.col_scale + col, mask)
          : _mm256_set1_ps(args.col_scale[0]);
  const __m256 bias = args.bias ? _mm256_maskload_ps(args.bias + col, mask)
                                : _mm256_setzero_ps();
  const __m256 scale =
      _mm256_mul_ps(_mm256_set1_ps(row_scale * args.k_scale), col_scale);
  float* out = args.out_float + row * args.n + col;
  __m256 value =
      _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(dot), scale), bias);
  if (args.accumulate) {
    value = _mm256_add_ps(value, _mm256_maskload_ps(out, mask));
  }
  _mm256_maskstore_ps(out, mask, value);
}

template <int MR, int Levels>
MMTVMAMBA_AVX2 void sweep_columns(const MatmulArgs& args,
                                  const int32_t* const* a_rows,
                                  int64_t a_lanes, int64_t row, int64_t n0,
                                  int64_t n1) {
  const int64_t group_words = kGroupRows * kTernaryPlanes * args.kd;
  for (int64_t g = n0 / kGroupRows; g * kGroupRows < n1; ++g) {
    const int64_t lanes = group_lanes(g, args.n);
    __m256i dots[2 * MR];
    dot_group<MR, Levels>(a_rows, a_lanes, args.w + g * group_words, lanes,
                          args.k_begin, args.k_end, dots);
    const __m256i masks[2] = {lane_mask(lanes), lane_mask(lanes - 8)};
    for (int i = 0; i < MR; ++i) {
      for (int h = 0; h < 2; ++h) {
        store_half(args, row + i, g * kGroupRows + 8 * h, masks[h],
                   dots[2 * i + h]);
      }
    }
  }
}

template <int Levels>
MMTVMAMBA_AVX2 void block_levels(const MatmulArgs& args, int64_t m0,
                                 int64_t m1, int64_t n0, int64_t n1) {
  static_assert(kGroupRows % kRowTile == 0, "row tiles must not span groups");
  for (int64_t row = m0; row < m1; row += kRowTile) {
    const int64_t g = row / kGroupRows;
    const int64_t a_lanes = group_lanes(g, args.m);
    const int32_t* a_rows[kRowTile] = {};
    const int mr = m1 - row < kRowTile ? 1 : kRowTile;
    for (int i = 0; i < mr; ++i) {
      a_rows[i] = args.a + group_offset(g, args.a_planes, args.kd) +
                  (row + i - g * kGroupRows);
    }
    if (mr == kRowTile) {
      sweep_columns<kRowTile, Levels>(args, a_rows, a_lanes, row, n0, n1);
    } else {
      sweep_columns<1, Levels>(args, a_rows, a_lanes, row, n0, n1);
    }
  }
}

// Pack 32 codes: bit j of each output word describes codes[j].
MMTVMAMBA_AVX2 inline void pack_word(const int8_t* codes, uint32_t* nz,
                                     uint32_t* sign, uint32_t* lo_nz) {
  const __m256i x =
      _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes));
  const __m256i zero = _mm256_cmpeq_epi8(x, _mm256_setzero_si256());
  const __m256i two = _mm256_or_si256(
      _mm256_cmpeq_epi8(x, _mm256_set1_epi8(2)),
      _mm256_cmpeq_epi8(x, _mm256_set1_epi8(-2)));
  *nz = ~static_cast<uint32_t>(_mm256_movemask_epi8(zero));
  *sign = static_cast<uint32_t>(_mm256_movemask_epi8(x));
  *lo_nz = static_cast<uint32_t>(_mm256_movemask_epi8(two));
}

}  // namespace

MMTVMAMBA_AVX2 void block_avx2(const MatmulArgs& args, int64_t m0,
                               int64_t m1, int64_t n0, int64_t n1) {
  if (args.a_planes == kQuinaryPlanes) {
    block_levels<2>(args, m0, m1, n0, n1);
  } else {
    block_levels<1>(args, m0, m1, n0, n1);
  }
}

MMTVMAMBA_AVX2 void pack_rows_avx2(const int8_t* codes, int64_t rows,
                                   int64_t k, int planes, int64_t r0,
                                   int64_t r1, int32_t* out) {
  const int64_t kd = words_per_plane(k);
  alignas(32) int8_t tail[kWordBits];
  for (int64_t r = r0; r < r1; ++r) {
    const int8_t* row = codes + r * k;
    const int64_t g = r / kGroupRows;
    const int64_t lanes = group_lanes(g, rows);
    int32_t* base = out + group_offset(g, planes, kd) + (r - g * kGroupRows);
    for (int64_t word = 0; word < kd; ++word) {
      const int64_t start = word * kWordBits;
      const int8_t* src = row + start;
      if (start + kWordBits > k) {
        // Zero-fill the last partial word so padding bits stay zero and the
        // load does not read past the end of the codes.
        std::memset(tail, 0, sizeof(tail));
        std::memcpy(tail, src, static_cast<size_t>(k - start));
        src = tail;
      }
      uint32_t nz, sign, lo_nz;
      pack_word(src, &nz, &sign, &lo_nz);
      int32_t* dst = base + word * planes * lanes;
      dst[0] = static_cast<int32_t>(nz);
      dst[lanes] = static_cast<int32_t>(sign);
      if (planes == kQuinaryPlanes) {
        dst[2 * lanes] = static_cast<int32_t>(lo_nz);
        dst[3 * lanes] = static_cast<int32_t>(lo_nz & sign);
      }
    }
  }
}

}  // namespace mmtvmamba

#else  // no x86 kernels in this build

#include <c10/util/Exception.h>

namespace mmtvmamba {

void block_avx2(const MatmulArgs&, int64_t, int64_t, int64_t, int64_t) {
  TORCH_CHECK(false, "the AVX2 ternary kernel is not compiled in this "
                     "build; select the portable path");
}

void pack_rows_avx2(const int8_t*, int64_t, int64_t, int, int64_t, int64_t,
                    int32_t*) {
  TORCH_CHECK(false, "the AVX2 ternary packer is not compiled in this "
                     "build; select the portable path");
}

}  // namespace mmtvmamba

#endif
