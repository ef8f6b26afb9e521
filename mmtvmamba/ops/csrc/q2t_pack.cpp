// Copyright (c) mmtvmamba contributors. All rights reserved.
//
// Fused Q2T quantization and packing of the activations of a deployed
// projection. One pass per token computes its RMS over the channels, then
// for every kernel position p (an input channel index[p], or padding)
//
//   code = clip(round((x / rms) / alpha[p]), -radius, radius)
//
// with round-half-to-even, the same float32 operations in the same order as
// the fake-quantized model, and writes the bit-planes in the packed layout
// of ternary.h. Doing this in one pass replaces a chain of tensor ops that
// each read and write the whole activation.
#include <cmath>
#include <cstdint>
#include <tuple>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "ternary.h"

#if MMTVMAMBA_X86_KERNELS
#include <immintrin.h>
#define MMTVMAMBA_AVX512_PACK \
  __attribute__((target("avx512f,avx512bw,avx512vl")))
#endif

namespace mmtvmamba {

namespace {

// Operands of one call. x is read as (batch, channels, length) with the
// given strides; token m is (m / length, m % length).
struct PackArgs {
  const float* x;
  int64_t batch, channels, length;
  int64_t stride_b, stride_c, stride_l;
  const int32_t* offsets;  // x offset of each position's channel
  const uint32_t* valid;   // per word: bit b set if position 32w+b is real
  const float* alpha;      // per position, 1 on padding
  int64_t positions, kd;
  int radius;
  float eps;
  int planes;
  int32_t* out;
  float* rms;
};

const float* token_base(const PackArgs& args, int64_t m) {
  const int64_t b = m / args.length;
  const int64_t l = m % args.length;
  return args.x + b * args.stride_b + l * args.stride_l;
}

float token_rms(const PackArgs& args, const float* base) {
  float sum = 0.0f;
  for (int64_t c = 0; c < args.channels; ++c) {
    const float v = base[c * args.stride_c];
    sum += v * v;
  }
  return std::sqrt(sum / static_cast<float>(args.channels) + args.eps);
}

// Write the plane words of token m, word w.
void store_words(const PackArgs& args, int64_t m, int64_t w, uint32_t nz,
                 uint32_t sign, uint32_t lo_nz) {
  const int64_t rows = args.batch * args.length;
  const int64_t g = m / kGroupRows;
  const int64_t lanes = group_lanes(g, rows);
  int32_t* dst = args.out + group_offset(g, args.planes, args.kd) +
                 w * args.planes * lanes + (m - g * kGroupRows);
  dst[0] = static_cast<int32_t>(nz);
  dst[lanes] = static_cast<int32_t>(sign);
  if (args.planes == kQuinaryPlanes) {
    dst[2 * lanes] = static_cast<int32_t>(lo_nz);
    dst[3 * lanes] = static_cast<int32_t>(lo_nz & sign);
  }
}

void pack_tokens_portable(const PackArgs& args, int64_t m0, int64_t m1) {
  const float limit = static_cast<float>(args.radius);
  for (int64_t m = m0; m < m1; ++m) {
    const float* base = token_base(args, m);
    const float rms = token_rms(args, base);
    args.rms[m] = rms;
    for (int64_t w = 0; w < args.kd; ++w) {
      uint32_t nz = 0, sign = 0, lo_nz = 0;
      for (int bit = 0; bit < kWordBits; ++bit) {
        const int64_t p = w * kWordBits + bit;
        if (!((args.valid[w] >> bit) & 1u)) {
          continue;
        }
        const float u = (base[args.offsets[p]] / rms) / args.alpha[p];
        float code = std::nearbyint(u);
        code = code > limit ? limit : (code < -limit ? -limit : code);
        nz |= code != 0.0f ? 1u << bit : 0u;
        sign |= code < 0.0f ? 1u << bit : 0u;
        lo_nz |= std::fabs(code) == 2.0f ? 1u << bit : 0u;
      }
      store_words(args, m, w, nz, sign, lo_nz);
    }
  }
}

#if MMTVMAMBA_X86_KERNELS

// Codes of 16 positions of one token as three lane masks.
MMTVMAMBA_AVX512_PACK inline void code_masks(const float* base,
                                             const int32_t* offsets,
                                             const float* alpha,
                                             __mmask16 valid, __m512 rms,
                                             __m512 limit, __mmask16* nz,
                                             __mmask16* negative,
                                             __mmask16* two) {
  const __m512i index = _mm512_maskz_loadu_epi32(valid, offsets);
  const __m512 x = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), valid, index,
                                            base, 4);
  const __m512 a = _mm512_mask_loadu_ps(_mm512_set1_ps(1.0f), valid, alpha);
  const __m512 u = _mm512_div_ps(_mm512_div_ps(x, rms), a);
  __m512 code = _mm512_roundscale_ps(
      u, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  code = _mm512_min_ps(_mm512_max_ps(code, _mm512_sub_ps(_mm512_setzero_ps(),
                                                         limit)),
                       limit);
  const __m512 zero = _mm512_setzero_ps();
  *nz = _mm512_mask_cmp_ps_mask(valid, code, zero, _CMP_NEQ_OQ);
  *negative = _mm512_mask_cmp_ps_mask(valid, code, zero, _CMP_LT_OQ);
  *two = _mm512_mask_cmp_ps_mask(
      valid, _mm512_abs_ps(code), _mm512_set1_ps(2.0f), _CMP_EQ_OQ);
}

MMTVMAMBA_AVX512_PACK float token_rms_avx512(const PackArgs& args,
                                             const float* base) {
  if (args.stride_c != 1) {
    return token_rms(args, base);
  }
  __m512 sum = _mm512_setzero_ps();
  int64_t c = 0;
  for (; c + 16 <= args.channels; c += 16) {
    const __m512 v = _mm512_loadu_ps(base + c);
    sum = _mm512_fmadd_ps(v, v, sum);
  }
  const __mmask16 tail =
      static_cast<__mmask16>((1u << (args.channels - c)) - 1);
  const __m512 v = _mm512_maskz_loadu_ps(tail, base + c);
  sum = _mm512_fmadd_ps(v, v, sum);
  const float total = _mm512_reduce_add_ps(sum);
  return std::sqrt(total / static_cast<float>(args.channels) + args.eps);
}

MMTVMAMBA_AVX512_PACK void pack_tokens_avx512(const PackArgs& args,
                                              int64_t m0, int64_t m1) {
  const __m512 limit = _mm512_set1_ps(static_cast<float>(args.radius));
  for (int64_t m = m0; m < m1; ++m) {
    const float* base = token_base(args, m);
    const float rms_value = token_rms_avx512(args, base);
    args.rms[m] = rms_value;
    const __m512 rms = _mm512_set1_ps(rms_value);
    for (int64_t w = 0; w < args.kd; ++w) {
      const int64_t p = w * kWordBits;
      const uint32_t valid = args.valid[w];
      __mmask16 nz[2], negative[2], two[2];
      for (int half = 0; half < 2; ++half) {
        code_masks(base, args.offsets + p + 16 * half,
                   args.alpha + p + 16 * half,
                   static_cast<__mmask16>(valid >> (16 * half)), rms, limit,
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

#endif  // MMTVMAMBA_X86_KERNELS

}  // namespace

std::tuple<at::Tensor, at::Tensor> q2t_pack(const at::Tensor& x,
                                            const at::Tensor& index,
                                            const at::Tensor& alpha,
                                            int64_t radius, double eps) {
  TORCH_CHECK(x.device().is_cpu(), "q2t_pack: x must be a CPU tensor");
  TORCH_CHECK_TYPE(x.scalar_type() == at::kFloat,
                   "q2t_pack: x must be float32, but got ", x.scalar_type(),
                   "; convert with .float()");
  TORCH_CHECK_VALUE(x.dim() == 3 && x.numel() > 0,
                    "q2t_pack: x must be a non-empty (batch, channels, "
                    "length) tensor, but got shape ", x.sizes());
  TORCH_CHECK_TYPE(index.scalar_type() == at::kLong && index.dim() == 1,
                   "q2t_pack: index must be a 1-D int64 tensor");
  TORCH_CHECK_VALUE(index.numel() > 0, "q2t_pack: index must not be empty");
  TORCH_CHECK_TYPE(alpha.scalar_type() == at::kFloat &&
                       alpha.sizes() == index.sizes(),
                   "q2t_pack: alpha must be float32 with the shape of index, "
                   "but got ", alpha.scalar_type(), " ", alpha.sizes());
  TORCH_CHECK_VALUE(radius == 1 || radius == 2, "q2t_pack: radius must be 1 "
                    "(ternary) or 2 (five levels), but got ", radius);
  const int64_t channels = x.size(1);
  const int64_t positions = index.numel();
  TORCH_CHECK_VALUE(
      index.min().item<int64_t>() >= 0 &&
          index.max().item<int64_t>() <= channels,
      "q2t_pack: index values must be in [0, ", channels, "], where ",
      channels, " marks padding");
  TORCH_CHECK_VALUE(x.numel() < (int64_t{1} << 31) &&
                        channels * x.stride(1) < (int64_t{1} << 31),
                    "q2t_pack: x is too large for 32-bit offsets");

  const int64_t kd = words_per_plane(positions);
  const at::Tensor idx = index.contiguous();
  const at::Tensor scale = alpha.contiguous();
  const int64_t* idx_data = idx.data_ptr<int64_t>();

  // Padding positions (index == channels) and the tail of the last word
  // are masked off, so their codes are 0.
  std::vector<int32_t> offsets(kd * kWordBits, 0);
  std::vector<uint32_t> valid(kd, 0);
  std::vector<float> alpha_padded(kd * kWordBits, 1.0f);
  const float* alpha_data = scale.data_ptr<float>();
  for (int64_t p = 0; p < positions; ++p) {
    if (idx_data[p] == channels) {
      continue;
    }
    offsets[p] = static_cast<int32_t>(idx_data[p] * x.stride(1));
    valid[p / kWordBits] |= 1u << (p % kWordBits);
    alpha_padded[p] = alpha_data[p];
  }

  const int planes = radius == 2 ? kQuinaryPlanes : kTernaryPlanes;
  const int64_t rows = x.size(0) * x.size(2);
  at::Tensor out = at::empty({rows, planes * kd}, x.options().dtype(at::kInt));
  at::Tensor rms = at::empty({rows}, x.options());
  PackArgs args{x.data_ptr<float>(), x.size(0), channels, x.size(2),
                x.stride(0), x.stride(1), x.stride(2), offsets.data(),
                valid.data(), alpha_padded.data(), positions, kd,
                static_cast<int>(radius), static_cast<float>(eps), planes,
                out.data_ptr<int32_t>(), rms.data_ptr<float>()};

  const bool simd = MMTVMAMBA_X86_KERNELS && active_isa() == Isa::kAvx512;
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 14) / positions);
  at::parallel_for(0, rows, grain, [&](int64_t m0, int64_t m1) {
#if MMTVMAMBA_X86_KERNELS
    if (simd) {
      pack_tokens_avx512(args, m0, m1);
      return;
    }
#endif
    pack_tokens_portable(args, m0, m1);
  });
  return std::make_tuple(out, rms);
}

}  // namespace mmtvmamba
