// Copyright (c) mmtvmamba contributors. All rights reserved.
//
// Entry point, input checks and portable path of q2t_pack; q2t_pack.h
// describes what the op computes.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <tuple>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "parallel_tasks.h"
#include "q2t_pack.h"
#include "ternary_ops.h"

namespace mmtvmamba {

namespace q2t {

void pack_tokens_portable(const PackArgs& args, int64_t m0, int64_t m1,
                          float* buffer) {
  const bool five_levels = args.radius == 2;
  for (int64_t m = m0; m < m1; ++m) {
    const TokenView token = token_view(args, m, buffer);
    const float* base = token.base;
    const float rms = token_rms(args, base, token.stride);
    args.rms[m] = rms;
    for (int64_t w = 0; w < args.kd; ++w) {
      uint32_t nz = 0, sign = 0, lo_nz = 0;
      for (int bit = 0; bit < kWordBits; ++bit) {
        const int64_t p = w * kWordBits + bit;
        if (!((args.valid[w] >> bit) & 1u)) {
          continue;
        }
        const float x = base[args.offsets[p]];
        const bool nonzero = std::fabs(x) > args.half_alpha[p] * rms;
        const bool two =
            five_levels && std::fabs(x) >= args.upper_alpha[p] * rms;
        nz |= nonzero ? 1u << bit : 0u;
        sign |= nonzero && x < 0.0f ? 1u << bit : 0u;
        lo_nz |= two ? 1u << bit : 0u;
      }
      store_words(args, m, w, nz, sign, lo_nz);
    }
  }
}

}  // namespace q2t

namespace {

using q2t::PackArgs;

void check_pack_inputs(const at::Tensor& x, const at::Tensor& index,
                       const at::Tensor& alpha, int64_t radius) {
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
  TORCH_CHECK_VALUE(x.numel() < (int64_t{1} << 31) &&
                        x.size(1) * x.stride(1) < (int64_t{1} << 31),
                    "q2t_pack: x is too large for 32-bit offsets");
}

void check_norm(const c10::optional<at::Tensor>& weight,
                const c10::optional<at::Tensor>& bias, int64_t channels) {
  for (const auto* tensor : {&weight, &bias}) {
    TORCH_CHECK_VALUE(
        !tensor->has_value() ||
            ((*tensor)->scalar_type() == at::kFloat &&
             (*tensor)->device().is_cpu() &&
             (*tensor)->sizes() == at::IntArrayRef{channels}),
        "q2t_pack: norm_weight and norm_bias must be float32 CPU tensors of "
        "shape (", channels, "), one entry per channel of x");
  }
  TORCH_CHECK_VALUE(weight.has_value() || !bias.has_value(),
                    "q2t_pack: norm_bias needs norm_weight; pass "
                    "torch.ones(channels) for a LayerNorm without weight");
}

// Kernel positions of one call: the offset of each position's channel in a
// token, a per-word mask of the real positions and the code thresholds of
// each position for a token of RMS 1. Padding positions (index ==
// channels) and the tail of the last word are masked off, so their codes
// are 0. The permute_* vectors hold the data of the permute path and are
// empty when it does not apply.
struct PackLayout {
  std::vector<int32_t> offsets;
  std::vector<uint32_t> valid;
  std::vector<float> half_alpha;
  std::vector<float> upper_alpha;

  std::vector<float> channel_half_alpha;
  std::vector<float> channel_upper_alpha;
  std::vector<uint8_t> permute_index;
  std::vector<uint64_t> chunk_masks;
  int64_t table_chunks = 0;
};

constexpr int64_t kTableChannels = 128;  // channels per byte-permute table
constexpr int64_t kChunkPositions = 64;  // positions per permute result

PackLayout build_layout(const at::Tensor& index, const at::Tensor& alpha,
                        int64_t channels, int64_t channel_stride) {
  const int64_t positions = index.numel();
  const int64_t kd = words_per_plane(positions);
  const at::Tensor idx = index.contiguous();
  const at::Tensor scale = alpha.contiguous();
  const int64_t* idx_data = idx.data_ptr<int64_t>();
  const float* alpha_data = scale.data_ptr<float>();

  PackLayout layout{std::vector<int32_t>(kd * kWordBits, 0),
                    std::vector<uint32_t>(kd, 0),
                    std::vector<float>(kd * kWordBits, 1.0f),
                    std::vector<float>(kd * kWordBits, 1.0f)};
  for (int64_t p = 0; p < positions; ++p) {
    const int64_t channel = idx_data[p];
    TORCH_CHECK_VALUE(channel >= 0 && channel <= channels,
                      "q2t_pack: index values must be in [0, ", channels,
                      "], where ", channels, " marks padding, but index[",
                      p, "] is ", channel);
    if (channel == channels) {
      continue;
    }
    layout.offsets[p] = static_cast<int32_t>(channel * channel_stride);
    layout.valid[p / kWordBits] |= 1u << (p % kWordBits);
    layout.half_alpha[p] = 0.5f * alpha_data[p];
    layout.upper_alpha[p] = 1.5f * alpha_data[p];
  }
  return layout;
}

// Fill the permute path data of layout. Returns false, leaving it empty,
// when a channel has two positions, because the path computes one code per
// channel.
bool add_permute_layout(PackLayout& layout, const at::Tensor& index,
                        int64_t channels) {
  const int64_t positions = index.numel();
  const int64_t chunks = (positions + kChunkPositions - 1) / kChunkPositions;
  const int64_t tables = (channels + kTableChannels - 1) / kTableChannels;
  const at::Tensor idx = index.contiguous();
  const int64_t* idx_data = idx.data_ptr<int64_t>();
  const float inf = std::numeric_limits<float>::infinity();

  std::vector<float> half(tables * kTableChannels, inf);
  std::vector<float> upper(tables * kTableChannels, inf);
  std::vector<uint8_t> low_bits(chunks * kChunkPositions, 0);
  std::vector<uint64_t> masks(chunks * tables, 0);
  for (int64_t p = 0; p < positions; ++p) {
    const int64_t channel = idx_data[p];
    if (channel == channels) {
      continue;
    }
    if (half[channel] != inf) {
      return false;
    }
    half[channel] = layout.half_alpha[p];
    upper[channel] = layout.upper_alpha[p];
    low_bits[p] = static_cast<uint8_t>(channel % kTableChannels);
    masks[(p / kChunkPositions) * tables + channel / kTableChannels] |=
        uint64_t{1} << (p % kChunkPositions);
  }
  layout.channel_half_alpha = std::move(half);
  layout.channel_upper_alpha = std::move(upper);
  layout.permute_index = std::move(low_bits);
  layout.chunk_masks = std::move(masks);
  layout.table_chunks = tables;
  return true;
}

PackArgs make_args(const at::Tensor& x, const PackLayout& layout,
                   int64_t positions, int64_t radius, double eps,
                   at::Tensor& out, at::Tensor& rms) {
  PackArgs args{};
  args.x = x.data_ptr<float>();
  args.batch = x.size(0);
  args.channels = x.size(1);
  args.length = x.size(2);
  args.stride_b = x.stride(0);
  args.stride_c = x.stride(1);
  args.stride_l = x.stride(2);
  args.offsets = layout.offsets.data();
  args.valid = layout.valid.data();
  args.half_alpha = layout.half_alpha.data();
  args.upper_alpha = layout.upper_alpha.data();
  args.positions = positions;
  args.kd = words_per_plane(positions);
  if (!layout.permute_index.empty()) {
    args.channel_half_alpha = layout.channel_half_alpha.data();
    args.channel_upper_alpha = layout.channel_upper_alpha.data();
    args.permute_index = layout.permute_index.data();
    args.chunk_masks = layout.chunk_masks.data();
    args.table_chunks = layout.table_chunks;
  }
  args.radius = static_cast<int>(radius);
  args.eps = static_cast<float>(eps);
  args.planes = radius == 2 ? kQuinaryPlanes : kTernaryPlanes;
  args.out = out.data_ptr<int32_t>();
  args.rms = rms.data_ptr<float>();
  return args;
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> q2t_pack(
    const at::Tensor& x, const at::Tensor& index, const at::Tensor& alpha,
    int64_t radius, double eps, const c10::optional<at::Tensor>& norm_weight,
    const c10::optional<at::Tensor>& norm_bias, double norm_eps) {
  check_pack_inputs(x, index, alpha, radius);
  const int64_t channels = x.size(1);
  check_norm(norm_weight, norm_bias, channels);
  const bool has_norm = norm_weight.has_value();
  const int64_t channel_stride = has_norm ? 1 : x.stride(1);
  PackLayout layout = build_layout(index, alpha, channels, channel_stride);

  // The permute path reads whole tokens with contiguous loads.
  const bool simd = active_isa() == Isa::kAvx512;
  const bool permute = simd && channel_stride == 1 &&
                       q2t::permute_path_supported() &&
                       add_permute_layout(layout, index, channels);

  const int64_t positions = index.numel();
  const int planes = radius == 2 ? kQuinaryPlanes : kTernaryPlanes;
  const int64_t rows = x.size(0) * x.size(2);
  at::Tensor out = at::empty({rows, planes * words_per_plane(positions)},
                             x.options().dtype(at::kInt));
  at::Tensor rms = at::empty({rows}, x.options());
  const at::Tensor weight = has_norm ? norm_weight->contiguous() : at::Tensor();
  const at::Tensor bias =
      norm_bias.has_value() ? norm_bias->contiguous() : at::Tensor();
  PackArgs args = make_args(x, layout, positions, radius, eps, out, rms);
  if (has_norm) {
    args.norm = {weight.data_ptr<float>(),
                 bias.defined() ? bias.data_ptr<float>() : nullptr,
                 static_cast<float>(norm_eps)};
  }

  // Calls of fewer than 2^17 codes (tens of microseconds of work) run
  // inline, because waking a pool thread would cost more than it saves, as
  // for kInlineWork of the matmul. Larger calls run in tasks small enough
  // that each thread gets several.
  const int64_t task_rows =
      rows * positions <= (int64_t{1} << 17)
          ? rows
          : std::max<int64_t>({int64_t{1}, (int64_t{1} << 15) / positions,
                               rows / (4 * at::get_num_threads())});
  run_tasks(at::divup(rows, task_rows), [&](int64_t t) {
    const int64_t m0 = t * task_rows;
    const int64_t m1 = std::min(rows, m0 + task_rows);
    std::vector<float> buffer(has_norm ? channels : 0);
    if (permute) {
      std::vector<uint8_t> codes(args.table_chunks * kTableChannels, 0);
      q2t::pack_tokens_permute(args, m0, m1, buffer.data(), codes.data());
    } else if (simd) {
      q2t::pack_tokens_avx512(args, m0, m1, buffer.data());
    } else {
      q2t::pack_tokens_portable(args, m0, m1, buffer.data());
    }
  });
  return std::make_tuple(out, rms);
}

}  // namespace mmtvmamba
