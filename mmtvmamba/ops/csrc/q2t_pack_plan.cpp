// Copyright (c) mmtvmamba contributors. All rights reserved.
//
// Input checks and per-call data of Q2T quantization and packing, as
// q2t_pack_plan.h describes them.
#include <cstdint>
#include <limits>
#include <vector>

#include <ATen/ATen.h>
#include <c10/util/Optional.h>

#include "q2t_pack_plan.h"

namespace mmtvmamba {
namespace q2t {

namespace {

constexpr int64_t kTableChannels = 128;  // channels per byte-permute table
constexpr int64_t kChunkPositions = 64;  // positions per permute result

void check_pack_inputs(const at::Tensor& x, const at::Tensor& index,
                       const at::Tensor& alpha, int64_t radius,
                       const char* op) {
  TORCH_CHECK(x.device().is_cpu(), op, ": x must be a CPU tensor");
  TORCH_CHECK_TYPE(x.scalar_type() == at::kFloat,
                   op, ": x must be float32, but got ", x.scalar_type(),
                   "; convert with .float()");
  TORCH_CHECK_VALUE(x.dim() == 3 && x.numel() > 0,
                    op, ": x must be a non-empty (batch, channels, "
                    "length) tensor, but got shape ", x.sizes());
  TORCH_CHECK_TYPE(index.scalar_type() == at::kLong && index.dim() == 1,
                   op, ": index must be a 1-D int64 tensor");
  TORCH_CHECK_VALUE(index.numel() > 0, op, ": index must not be empty");
  TORCH_CHECK_TYPE(alpha.scalar_type() == at::kFloat &&
                       alpha.sizes() == index.sizes(),
                   op, ": alpha must be float32 with the shape of index, "
                   "but got ", alpha.scalar_type(), " ", alpha.sizes());
  TORCH_CHECK_VALUE(radius == 1 || radius == 2, op, ": radius must be 1 "
                    "(ternary) or 2 (five levels), but got ", radius);
  TORCH_CHECK_VALUE(x.numel() < (int64_t{1} << 31) &&
                        x.size(1) * x.stride(1) < (int64_t{1} << 31),
                    op, ": x is too large for 32-bit offsets");
}

void check_norm(const c10::optional<at::Tensor>& weight,
                const c10::optional<at::Tensor>& bias, int64_t channels,
                const char* op) {
  for (const auto* tensor : {&weight, &bias}) {
    TORCH_CHECK_VALUE(
        !tensor->has_value() ||
            ((*tensor)->scalar_type() == at::kFloat &&
             (*tensor)->device().is_cpu() &&
             (*tensor)->sizes() == at::IntArrayRef{channels}),
        op, ": norm_weight and norm_bias must be float32 CPU tensors of "
        "shape (", channels, "), one entry per channel of x");
  }
  TORCH_CHECK_VALUE(weight.has_value() || !bias.has_value(),
                    op, ": norm_bias needs norm_weight; pass "
                    "torch.ones(channels) for a LayerNorm without weight");
}

PackLayout build_layout(const at::Tensor& index, const at::Tensor& alpha,
                        int64_t channels, int64_t channel_stride,
                        const char* op) {
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
                      op, ": index values must be in [0, ", channels,
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

}  // namespace

PackPlan plan_pack(const at::Tensor& x, const at::Tensor& index,
                   const at::Tensor& alpha, int64_t radius, double eps,
                   const c10::optional<at::Tensor>& norm_weight,
                   const c10::optional<at::Tensor>& norm_bias,
                   double norm_eps, const char* op) {
  check_pack_inputs(x, index, alpha, radius, op);
  const int64_t channels = x.size(1);
  check_norm(norm_weight, norm_bias, channels, op);
  const bool has_norm = norm_weight.has_value();
  const int64_t channel_stride = has_norm ? 1 : x.stride(1);

  PackPlan plan;
  plan.x = x;
  plan.layout = build_layout(index, alpha, channels, channel_stride, op);

  // The permute path reads whole tokens with contiguous loads.
  plan.simd = active_isa() == Isa::kAvx512;
  plan.permute = plan.simd && channel_stride == 1 &&
                 permute_path_supported() &&
                 add_permute_layout(plan.layout, index, channels);

  if (has_norm) {
    plan.norm_weight = norm_weight->contiguous();
    plan.norm_bias =
        norm_bias.has_value() ? norm_bias->contiguous() : at::Tensor();
    plan.norm_eps = static_cast<float>(norm_eps);
  }
  plan.eps = static_cast<float>(eps);
  plan.radius = static_cast<int>(radius);
  plan.planes = radius == 2 ? kQuinaryPlanes : kTernaryPlanes;
  plan.positions = index.numel();
  plan.tokens = x.size(0) * x.size(2);
  return plan;
}

PackScratch make_scratch(const PackPlan& plan) {
  PackScratch scratch;
  scratch.token.resize(plan.norm_weight.defined() ? plan.x.size(1) : 0);
  if (plan.permute) {
    scratch.codes.assign(plan.layout.table_chunks * kTableChannels, 0);
  }
  return scratch;
}

void pack_tokens(const PackPlan& plan, const PackArgs& args, int64_t m0,
                 int64_t m1, PackScratch& scratch) {
  if (plan.permute) {
    pack_tokens_permute(args, m0, m1, scratch.token.data(),
                        scratch.codes.data());
  } else if (plan.simd) {
    pack_tokens_avx512(args, m0, m1, scratch.token.data());
  } else {
    pack_tokens_portable(args, m0, m1, scratch.token.data());
  }
}

PackArgs pack_args(const PackPlan& plan, int32_t* out, int64_t out_first,
                   int64_t out_rows, float* rms) {
  const at::Tensor& x = plan.x;
  const PackLayout& layout = plan.layout;
  PackArgs args{};
  args.x = x.data_ptr<float>();
  args.batch = x.size(0);
  args.channels = x.size(1);
  args.length = x.size(2);
  args.stride_b = x.stride(0);
  args.stride_c = x.stride(1);
  args.stride_l = x.stride(2);
  if (plan.norm_weight.defined()) {
    args.norm = {plan.norm_weight.data_ptr<float>(),
                 plan.norm_bias.defined() ? plan.norm_bias.data_ptr<float>()
                                          : nullptr,
                 plan.norm_eps};
  }
  args.offsets = layout.offsets.data();
  args.valid = layout.valid.data();
  args.half_alpha = layout.half_alpha.data();
  args.upper_alpha = layout.upper_alpha.data();
  args.positions = plan.positions;
  args.kd = words_per_plane(plan.positions);
  if (plan.permute) {
    args.channel_half_alpha = layout.channel_half_alpha.data();
    args.channel_upper_alpha = layout.channel_upper_alpha.data();
    args.permute_index = layout.permute_index.data();
    args.chunk_masks = layout.chunk_masks.data();
    args.table_chunks = layout.table_chunks;
  }
  args.radius = plan.radius;
  args.eps = plan.eps;
  args.planes = plan.planes;
  args.out = out;
  args.out_first = out_first;
  args.out_rows = out_rows;
  args.rms = rms;
  return args;
}

}  // namespace q2t
}  // namespace mmtvmamba
