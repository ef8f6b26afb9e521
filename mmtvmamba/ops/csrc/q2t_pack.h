// Copyright (c) mmtvmamba contributors. All rights reserved.
//
// Fused Q2T quantization and packing of the activations of a deployed
// projection (the op q2t_pack). For every token, one pass computes its RMS
// over the channels, then every kernel position p (an input channel
// index[p], or padding) gets
//
//   code = clip(round((x / rms) / alpha[p]), -radius, radius)
//
// with round-half-to-even, and the codes are written as bit-planes in the
// packed layout of ternary.h. Doing this in one pass replaces a chain of
// tensor ops that each read and write the whole activation.
//
// The code is found by comparing |x| with the rounding thresholds instead
// of dividing: |code| >= 1 iff |x| > 0.5 * alpha[p] * rms, and |code| = 2
// iff |x| >= 1.5 * alpha[p] * rms (the strict and non-strict comparisons
// round 0.5 to 0 and 1.5 to 2, half to even). A multiply and a compare cost
// far less than two divisions. The two forms round differently, so a value
// within a rounding error of a threshold can get the neighbouring code.
//
// When the projection follows a LayerNorm, the op can apply it first: the
// token is normalized into a per-thread buffer, y = (x - mean) * rstd *
// weight + bias, and the RMS and codes are taken from y. The LayerNorm
// output is then never written to memory.
#pragma once

#include <cmath>
#include <cstdint>

#include "ternary.h"

namespace mmtvmamba {
namespace q2t {

// LayerNorm applied to every token before quantization, or absent when
// weight is null.
struct TokenNorm {
  const float* weight = nullptr;  // (channels)
  const float* bias = nullptr;    // (channels), or null for none
  float eps = 0.0f;
};

// Operands of one call. x is read as (batch, channels, length) with the
// given strides; token m is (m / length, m % length).
struct PackArgs {
  const float* x;
  int64_t batch, channels, length;
  int64_t stride_b, stride_c, stride_l;
  TokenNorm norm;
  // Offset of each position's channel in the token: in x when there is no
  // norm, else in the normalized token buffer (stride 1).
  const int32_t* offsets;
  const uint32_t* valid;   // per word: bit b set if position 32w+b is real
  // Per position: 0.5 * alpha and 1.5 * alpha, the code thresholds of a
  // token of RMS 1; 1 on padding.
  const float* half_alpha;
  const float* upper_alpha;
  int64_t positions, kd;
  // Data of the permute path; permute_index is null when the path does not
  // apply. The thresholds are in channel order, +inf for channels without a
  // position, padded to table_chunks * 128 channels. permute_index holds the
  // low 7 bits of each position's channel. chunk_masks has, per 64-position
  // chunk and 128-channel table, the positions whose channel is in that
  // table.
  const float* channel_half_alpha;
  const float* channel_upper_alpha;
  const uint8_t* permute_index;
  const uint64_t* chunk_masks;
  int64_t table_chunks;
  int radius;
  float eps;
  int planes;
  // out and rms hold tokens [out_first, out_first + out_rows): out in the
  // packed layout of an out_rows-row matrix, rms one float per token.
  int32_t* out;
  int64_t out_first, out_rows;
  float* rms;
};

inline const float* token_base(const PackArgs& args, int64_t m) {
  const int64_t b = m / args.length;
  const int64_t l = m % args.length;
  return args.x + b * args.stride_b + l * args.stride_l;
}

inline float token_rms(const PackArgs& args, const float* base, int64_t stride) {
  float sum = 0.0f;
  for (int64_t c = 0; c < args.channels; ++c) {
    const float v = base[c * stride];
    sum += v * v;
  }
  return std::sqrt(sum / static_cast<float>(args.channels) + args.eps);
}

// Write the LayerNorm of the token at base to out (channels floats), with
// the mean and variance taken in two passes as torch.nn.LayerNorm defines
// them (biased variance).
inline void normalize_token(const PackArgs& args, const float* base, float* out) {
  const int64_t channels = args.channels;
  float sum = 0.0f;
  for (int64_t c = 0; c < channels; ++c) {
    out[c] = base[c * args.stride_c];
    sum += out[c];
  }
  const float mean = sum / static_cast<float>(channels);
  float square_sum = 0.0f;
  for (int64_t c = 0; c < channels; ++c) {
    const float centered = out[c] - mean;
    square_sum += centered * centered;
  }
  const float variance = square_sum / static_cast<float>(channels);
  const float rstd = 1.0f / std::sqrt(variance + args.norm.eps);
  for (int64_t c = 0; c < channels; ++c) {
    const float bias = args.norm.bias ? args.norm.bias[c] : 0.0f;
    out[c] = (out[c] - mean) * rstd * args.norm.weight[c] + bias;
  }
}

// The token m as codes are read from it: x itself, or its LayerNorm written
// to buffer.
struct TokenView {
  const float* base;
  int64_t stride;
};

inline TokenView token_view(const PackArgs& args, int64_t m, float* buffer) {
  const float* base = token_base(args, m);
  if (args.norm.weight == nullptr) {
    return {base, args.stride_c};
  }
  normalize_token(args, base, buffer);
  return {buffer, 1};
}

// Write the plane words of token m, word w.
inline void store_words(const PackArgs& args, int64_t m, int64_t w, uint32_t nz,
                 uint32_t sign, uint32_t lo_nz) {
  const int64_t row = m - args.out_first;
  const int64_t g = row / kGroupRows;
  const int64_t lanes = group_lanes(g, args.out_rows);
  int32_t* dst = args.out + group_offset(g, args.planes, args.kd) +
                 w * args.planes * lanes + (row - g * kGroupRows);
  dst[0] = static_cast<int32_t>(nz);
  dst[lanes] = static_cast<int32_t>(sign);
  if (args.planes == kQuinaryPlanes) {
    dst[2 * lanes] = static_cast<int32_t>(lo_nz);
    dst[3 * lanes] = static_cast<int32_t>(lo_nz & sign);
  }
}

// Quantize and pack tokens [m0, m1). `buffer` has room for `channels`
// floats, used by a fused LayerNorm. The AVX-512 paths exist only where
// they are compiled. pack_tokens_avx512 gathers each position's channel.
// pack_tokens_permute (AVX-512 VBMI, only with args.permute_index) computes
// the codes in channel order and moves them to position order with byte
// permutes; `codes` is a zeroed buffer of table_chunks * 128 bytes.
void pack_tokens_portable(const PackArgs& args, int64_t m0, int64_t m1,
                          float* buffer);
void pack_tokens_avx512(const PackArgs& args, int64_t m0, int64_t m1,
                        float* buffer);
void pack_tokens_permute(const PackArgs& args, int64_t m0, int64_t m1,
                         float* buffer, uint8_t* codes);

// Whether this CPU and build can run pack_tokens_permute.
bool permute_path_supported();

}  // namespace q2t
}  // namespace mmtvmamba
