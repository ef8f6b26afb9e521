// Copyright (c) mmtvmamba contributors. All rights reserved.
//
// AVX-512 paths of q2t_pack (see q2t_pack.h). Only functions marked with
// the target attributes below use these instructions; the entry point calls
// them only after a CPUID check.
#include <cmath>
#include <cstdint>

#include "q2t_pack.h"

#if MMTVMAMBA_X86_KERNELS

#include <immintrin.h>

#define MMTVMAMBA_AVX512_PACK \
  __attribute__((target("avx512f,avx512bw,avx512vl")))
#define MMTVMAMBA_AVX512_VBMI \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512vbmi")))

// GCC 12 reports a false -Wmaybe-uninitialized on the _mm512_undefined_*()
// pass-through operand of intrinsics such as _mm512_reduce_add_ps once they
// are inlined into the functions below.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace mmtvmamba {
namespace q2t {

namespace {

// Codes of 16 positions of one token as three lane masks.
MMTVMAMBA_AVX512_PACK inline void code_masks(const PackArgs& args,
                                             const float* base, int64_t p,
                                             __mmask16 valid, __m512 rms,
                                             __mmask16* nz,
                                             __mmask16* negative,
                                             __mmask16* two) {
  const __m512i index = _mm512_maskz_loadu_epi32(valid, args.offsets + p);
  const __m512 x = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), valid, index,
                                            base, 4);
  const __m512 magnitude = _mm512_abs_ps(x);
  const __m512 lower =
      _mm512_mul_ps(_mm512_loadu_ps(args.half_alpha + p), rms);
  *nz = _mm512_mask_cmp_ps_mask(valid, magnitude, lower, _CMP_GT_OQ);
  *negative =
      _mm512_mask_cmp_ps_mask(*nz, x, _mm512_setzero_ps(), _CMP_LT_OQ);
  *two = 0;
  if (args.radius == 2) {
    const __m512 upper =
        _mm512_mul_ps(_mm512_loadu_ps(args.upper_alpha + p), rms);
    *two = _mm512_mask_cmp_ps_mask(valid, magnitude, upper, _CMP_GE_OQ);
  }
}

// Mask of channels [c, channels), for c within 16 of channels.
MMTVMAMBA_AVX512_PACK inline __mmask16 tail_mask(int64_t channels,
                                                 int64_t c) {
  return static_cast<__mmask16>((1u << (channels - c)) - 1);
}

// normalize_token for a token whose channels are contiguous (stride 1).
// The sums run over 16 lanes, so they round differently from the scalar
// loop of the portable path.
MMTVMAMBA_AVX512_PACK void normalize_token_avx512(const PackArgs& args,
                                                  const float* base,
                                                  float* out) {
  const int64_t channels = args.channels;
  const int64_t full = channels / 16 * 16;
  const __mmask16 tail = tail_mask(channels, full);

  __m512 sum = _mm512_setzero_ps();
  for (int64_t c = 0; c < full; c += 16) {
    sum = _mm512_add_ps(sum, _mm512_loadu_ps(base + c));
  }
  sum = _mm512_add_ps(sum, _mm512_maskz_loadu_ps(tail, base + full));
  const float mean_value =
      _mm512_reduce_add_ps(sum) / static_cast<float>(channels);
  const __m512 mean = _mm512_set1_ps(mean_value);

  __m512 square_sum = _mm512_setzero_ps();
  for (int64_t c = 0; c < full; c += 16) {
    const __m512 centered = _mm512_sub_ps(_mm512_loadu_ps(base + c), mean);
    square_sum = _mm512_fmadd_ps(centered, centered, square_sum);
  }
  const __m512 centered_tail =
      _mm512_maskz_sub_ps(tail, _mm512_maskz_loadu_ps(tail, base + full),
                          mean);
  square_sum = _mm512_fmadd_ps(centered_tail, centered_tail, square_sum);
  const float variance =
      _mm512_reduce_add_ps(square_sum) / static_cast<float>(channels);
  const __m512 rstd =
      _mm512_set1_ps(1.0f / std::sqrt(variance + args.norm.eps));

  for (int64_t c = 0; c < channels; c += 16) {
    const __mmask16 mask = c < full ? __mmask16{0xFFFF} : tail;
    const __m512 x = _mm512_maskz_loadu_ps(mask, base + c);
    const __m512 weight = _mm512_maskz_loadu_ps(mask, args.norm.weight + c);
    const __m512 bias = args.norm.bias
                            ? _mm512_maskz_loadu_ps(mask, args.norm.bias + c)
                            : _mm512_setzero_ps();
    const __m512 scaled =
        _mm512_mul_ps(_mm512_mul_ps(_mm512_sub_ps(x, mean), rstd), weight);
    _mm512_mask_storeu_ps(out + c, mask, _mm512_add_ps(scaled, bias));
  }
}

MMTVMAMBA_AVX512_PACK TokenView token_view_avx512(const PackArgs& args,
                                                  int64_t m, float* buffer) {
  if (args.norm.weight == nullptr || args.stride_c != 1) {
    return token_view(args, m, buffer);
  }
  normalize_token_avx512(args, token_base(args, m), buffer);
  return {buffer, 1};
}

MMTVMAMBA_AVX512_PACK float token_rms_avx512(const PackArgs& args,
                                             const TokenView& token) {
  const float* base = token.base;
  if (token.stride != 1) {
    return token_rms(args, base, token.stride);
  }
  __m512 sum = _mm512_setzero_ps();
  int64_t c = 0;
  for (; c + 16 <= args.channels; c += 16) {
    const __m512 v = _mm512_loadu_ps(base + c);
    sum = _mm512_fmadd_ps(v, v, sum);
  }
  const __m512 v = _mm512_maskz_loadu_ps(tail_mask(args.channels, c),
                                         base + c);
  sum = _mm512_fmadd_ps(v, v, sum);
  const float total = _mm512_reduce_add_ps(sum);
  return std::sqrt(total / static_cast<float>(args.channels) + args.eps);
}

}  // namespace

MMTVMAMBA_AVX512_PACK void pack_tokens_avx512(const PackArgs& args,
                                              int64_t m0, int64_t m1,
                                              float* buffer) {
  for (int64_t m = m0; m < m1; ++m) {
    const TokenView token = token_view_avx512(args, m, buffer);
    const float* base = token.base;
    const float rms_value = token_rms_avx512(args, token);
    args.rms[m - args.out_first] = rms_value;
    const __m512 rms = _mm512_set1_ps(rms_value);
    for (int64_t w = 0; w < args.kd; ++w) {
      const int64_t p = w * kWordBits;
      const uint32_t valid = args.valid[w];
      __mmask16 nz[2], negative[2], two[2];
      for (int half = 0; half < 2; ++half) {
        code_masks(args, base, p + 16 * half,
                   static_cast<__mmask16>(valid >> (16 * half)), rms,
                   &nz[half], &negative[half], &two[half]);
      }
      auto word = [](const __mmask16* masks) {
        return static_cast<uint32_t>(masks[0]) |
               (static_cast<uint32_t>(masks[1]) << 16);
      };
      store_words(args, m, w, word(nz), word(negative), word(two));
    }
  }
}


namespace {

// Write one code byte per channel of the token at base (stride 1) to codes:
// bit 0 nonzero, bit 1 negative, bit 2 magnitude 2. Channels without a
// position have infinite thresholds and get 0.
MMTVMAMBA_AVX512_VBMI void channel_codes(const PackArgs& args,
                                         const float* base, __m512 rms,
                                         uint8_t* codes) {
  const int64_t channels = args.channels;
  for (int64_t c0 = 0; c0 < channels; c0 += 64) {
    uint64_t nz = 0, negative = 0, two = 0;
    for (int64_t c = c0; c < c0 + 64 && c < channels; c += 16) {
      const __mmask16 mask =
          channels - c >= 16 ? __mmask16{0xFFFF} : tail_mask(channels, c);
      const __m512 x = _mm512_maskz_loadu_ps(mask, base + c);
      const __m512 magnitude = _mm512_abs_ps(x);
      const __m512 lower =
          _mm512_mul_ps(_mm512_loadu_ps(args.channel_half_alpha + c), rms);
      const __mmask16 lane_nz =
          _mm512_mask_cmp_ps_mask(mask, magnitude, lower, _CMP_GT_OQ);
      const __mmask16 lane_negative =
          _mm512_mask_cmp_ps_mask(lane_nz, x, _mm512_setzero_ps(), _CMP_LT_OQ);
      __mmask16 lane_two = 0;
      if (args.radius == 2) {
        const __m512 upper = _mm512_mul_ps(
            _mm512_loadu_ps(args.channel_upper_alpha + c), rms);
        lane_two =
            _mm512_mask_cmp_ps_mask(mask, magnitude, upper, _CMP_GE_OQ);
      }
      const int shift = static_cast<int>(c - c0);
      nz |= static_cast<uint64_t>(lane_nz) << shift;
      negative |= static_cast<uint64_t>(lane_negative) << shift;
      two |= static_cast<uint64_t>(lane_two) << shift;
    }
    const __m512i bytes = _mm512_or_si512(
        _mm512_maskz_mov_epi8(nz, _mm512_set1_epi8(1)),
        _mm512_or_si512(_mm512_maskz_mov_epi8(negative, _mm512_set1_epi8(2)),
                        _mm512_maskz_mov_epi8(two, _mm512_set1_epi8(4))));
    _mm512_storeu_si512(codes + c0, bytes);
  }
}

// Return the code bytes of the 64 positions of chunk `chunk`, gathered from
// the channel-order codes with one two-table byte permute per 128 channels.
MMTVMAMBA_AVX512_VBMI __m512i position_codes(const PackArgs& args,
                                             const uint8_t* codes,
                                             int64_t chunk) {
  const __m512i low_bits =
      _mm512_loadu_si512(args.permute_index + chunk * 64);
  const uint64_t* masks = args.chunk_masks + chunk * args.table_chunks;
  __m512i result = _mm512_setzero_si512();
  for (int64_t t = 0; t < args.table_chunks; ++t) {
    if (masks[t] == 0) {
      continue;
    }
    const __m512i lower = _mm512_loadu_si512(codes + t * 128);
    const __m512i upper = _mm512_loadu_si512(codes + t * 128 + 64);
    const __m512i picked =
        _mm512_permutex2var_epi8(lower, low_bits, upper);
    result = _mm512_mask_mov_epi8(result, masks[t], picked);
  }
  return result;
}

}  // namespace

MMTVMAMBA_AVX512_VBMI void pack_tokens_permute(const PackArgs& args,
                                               int64_t m0, int64_t m1,
                                               float* buffer,
                                               uint8_t* codes) {
  const int64_t chunks = (args.kd + 1) / 2;
  for (int64_t m = m0; m < m1; ++m) {
    const TokenView token = token_view_avx512(args, m, buffer);
    const float rms_value = token_rms_avx512(args, token);
    args.rms[m - args.out_first] = rms_value;
    channel_codes(args, token.base, _mm512_set1_ps(rms_value), codes);

    for (int64_t chunk = 0; chunk < chunks; ++chunk) {
      const __m512i bytes = position_codes(args, codes, chunk);
      const uint64_t nz = _mm512_test_epi8_mask(bytes, _mm512_set1_epi8(1));
      const uint64_t negative =
          _mm512_test_epi8_mask(bytes, _mm512_set1_epi8(2));
      const uint64_t two = _mm512_test_epi8_mask(bytes, _mm512_set1_epi8(4));
      for (int64_t half = 0; half < 2 && 2 * chunk + half < args.kd; ++half) {
        const int shift = static_cast<int>(32 * half);
        store_words(args, m, 2 * chunk + half,
                    static_cast<uint32_t>(nz >> shift),
                    static_cast<uint32_t>(negative >> shift),
                    static_cast<uint32_t>(two >> shift));
      }
    }
  }
}

bool permute_path_supported() {
  return __builtin_cpu_supports("avx512f") &&
         __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512vbmi");
}
}  // namespace q2t
}  // namespace mmtvmamba

#pragma GCC diagnostic pop

#else  // no x86 kernels in this build

#include <c10/util/Exception.h>

namespace mmtvmamba {
namespace q2t {

void pack_tokens_avx512(const PackArgs&, int64_t, int64_t, float*) {
  TORCH_CHECK(false, "the AVX-512 q2t_pack path is not compiled in this "
                     "build; select the portable path");
}

void pack_tokens_permute(const PackArgs&, int64_t, int64_t, float*,
                         uint8_t*) {
  TORCH_CHECK(false, "the AVX-512 q2t_pack path is not compiled in this "
                     "build; select the portable path");
}

bool permute_path_supported() {
  return false;
}

}  // namespace q2t
}  // namespace mmtvmamba

#endif
