// Copyright (c) mmtvmamba contributors. All rights reserved.
//
// Portable C++ kernels: the reference that the SIMD paths are tested against
// and the only path on non-x86 builds.
#include <cstdint>

#include "ternary.h"

namespace mmtvmamba {

namespace {

// GCC lowers __builtin_popcount to a library call when the target has no
// popcount instruction (x86-64 without -mpopcnt), so such builds use the
// branch-free bit count, which compilers can also vectorize.
inline int popcount32(uint32_t x) {
#if defined(__GNUC__) && (defined(__POPCNT__) || defined(__aarch64__))
  return __builtin_popcount(x);
#else
  // Sum the bits in pairs, then nibbles, then bytes.
  x = x - ((x >> 1) & 0x55555555u);
  x = (x & 0x33333333u) + ((x >> 2) & 0x33333333u);
  x = (x + (x >> 4)) & 0x0F0F0F0Fu;
  return static_cast<int>((x * 0x01010101u) >> 24);
#endif
}

// Location of one packed row: the address of its word (0, 0) and the
// distance between consecutive (word, plane) entries.
struct RowView {
  const uint32_t* base;
  int64_t stride;
};

RowView row_view(const int32_t* data, int64_t rows, int64_t row, int planes,
                 int64_t kd) {
  const int64_t g = row / kGroupRows;
  const int64_t lanes = group_lanes(g, rows);
  const int32_t* base =
      data + group_offset(g, planes, kd) + (row - g * kGroupRows);
  return {reinterpret_cast<const uint32_t*>(base), lanes};
}

// Store `count` dot products of output row `row` from column `col`,
// applying the float epilogue when the output is float.
void store_row(const MatmulArgs& args, int64_t row, int64_t col,
               int64_t count, const int32_t* acc) {
  if (args.out_int != nullptr) {
    for (int64_t l = 0; l < count; ++l) {
      args.out_int[row * args.n + col + l] = acc[l];
    }
    return;
  }

  const float row_scale = args.row_scale ? args.row_scale[row] : 1.0f;
  for (int64_t l = 0; l < count; ++l) {
    const int64_t j = col + l;
    const float col_scale = args.col_scale[args.col_scale_per_column ? j : 0];
    const float bias = args.bias ? args.bias[j] : 0.0f;
    float& out = args.out_float[row * args.n + j];
    const float value =
        static_cast<float>(acc[l]) * (row_scale * args.k_scale * col_scale) +
        bias;
    out = args.accumulate ? out + value : value;
  }
}

// Accumulate the dot products over K words [k0, k1) of activation row `a`
// with the `lanes` weight rows of one group. The inner loop runs over contiguous lanes, so
// compilers can vectorize it where the target has a vector popcount.
void dot_group(const RowView& a, int a_planes, const uint32_t* w,
               int64_t lanes, int64_t k0, int64_t k1, int32_t* acc) {
  const int levels = a_planes / 2;
  for (int64_t l = 0; l < lanes; ++l) {
    acc[l] = 0;
  }
  for (int64_t k = k0; k < k1; ++k) {
    const uint32_t* w_nz = w + 2 * k * lanes;
    const uint32_t* w_sign = w_nz + lanes;
    for (int level = 0; level < levels; ++level) {
      const int64_t p = k * a_planes + 2 * level;
      const uint32_t a_nz = a.base[p * a.stride];
      const uint32_t a_sign = a.base[(p + 1) * a.stride];
      for (int64_t l = 0; l < lanes; ++l) {
        const uint32_t both = a_nz & w_nz[l];
        const uint32_t negative = both & (a_sign ^ w_sign[l]);
        acc[l] += popcount32(both) - 2 * popcount32(negative);
      }
    }
  }
}

}  // namespace

void block_portable(const MatmulArgs& args, int64_t m0, int64_t m1,
                    int64_t n0, int64_t n1) {
  const int64_t group_words = kGroupRows * kTernaryPlanes * args.kd;
  const uint32_t* weights = reinterpret_cast<const uint32_t*>(args.w);
  int32_t acc[kGroupRows];
  for (int64_t g = n0 / kGroupRows; g * kGroupRows < n1; ++g) {
    const int64_t lanes = group_lanes(g, args.n);
    const uint32_t* w = weights + g * group_words;
    for (int64_t i = m0; i < m1; ++i) {
      const RowView a = row_view(args.a, args.m, i, args.a_planes, args.kd);
      dot_group(a, args.a_planes, w, lanes, args.k_begin, args.k_end, acc);
      store_row(args, i, g * kGroupRows, lanes, acc);
    }
  }
}

void pack_rows_portable(const int8_t* codes, int64_t rows, int64_t k,
                        int planes, int64_t r0, int64_t r1, int32_t* out) {
  const int64_t kd = words_per_plane(k);
  for (int64_t r = r0; r < r1; ++r) {
    const int8_t* row = codes + r * k;
    const int64_t g = r / kGroupRows;
    const int64_t lanes = group_lanes(g, rows);
    int32_t* base = out + group_offset(g, planes, kd) + (r - g * kGroupRows);
    for (int64_t word = 0; word < kd; ++word) {
      uint32_t nz = 0, sign = 0, lo_nz = 0;
      const int64_t end =
          (word + 1) * kWordBits < k ? (word + 1) * kWordBits : k;
      for (int64_t e = word * kWordBits; e < end; ++e) {
        const uint32_t bit = 1u << (e - word * kWordBits);
        nz |= row[e] != 0 ? bit : 0u;
        sign |= row[e] < 0 ? bit : 0u;
        lo_nz |= (row[e] == 2 || row[e] == -2) ? bit : 0u;
      }
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
