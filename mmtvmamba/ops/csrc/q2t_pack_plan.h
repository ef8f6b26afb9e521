// Copyright (c) mmtvmamba contributors. All rights reserved.
//
// Input checks and per-call data of Q2T quantization and packing, shared by
// the ops q2t_pack and q2t_linear. A call builds one PackPlan, and its
// tasks pack their tokens from it with pack_tokens.
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/ATen.h>
#include <c10/util/Optional.h>

#include "q2t_pack.h"

namespace mmtvmamba {
namespace q2t {

// Calls of fewer than 2^17 codes (tens of microseconds of work) run
// inline, because waking a pool thread would cost more than it saves, as
// for kInlineWork of the matmul.
constexpr int64_t kInlineCodes = int64_t{1} << 17;

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

// Validated inputs of one call: the layout of its positions, the
// contiguous LayerNorm parameters and the kernel path.
struct PackPlan {
  at::Tensor x;
  PackLayout layout;
  at::Tensor norm_weight;  // undefined without a fused LayerNorm
  at::Tensor norm_bias;    // undefined without a LayerNorm bias
  float norm_eps = 0.0f;
  float eps = 0.0f;
  int radius = 1;
  int planes = kTernaryPlanes;
  int64_t positions = 0;
  int64_t tokens = 0;  // batch * length
  bool simd = false;     // AVX-512 paths
  bool permute = false;  // pack_tokens_permute, which implies simd
};

// Check the inputs of the op `op` and return its plan. x is (batch,
// channels, length), index and alpha have one entry per kernel position.
PackPlan plan_pack(const at::Tensor& x, const at::Tensor& index,
                   const at::Tensor& alpha, int64_t radius, double eps,
                   const c10::optional<at::Tensor>& norm_weight,
                   const c10::optional<at::Tensor>& norm_bias,
                   double norm_eps, const char* op);

// Return the arguments of the pack kernels for plan that write tokens
// [out_first, out_first + out_rows) to out and their RMS to rms. plan must
// outlive them.
PackArgs pack_args(const PackPlan& plan, int32_t* out, int64_t out_first,
                   int64_t out_rows, float* rms);

// Buffers of one task: a normalized token and the channel codes of the
// permute path. One scratch serves any number of pack_tokens calls of a
// plan, one at a time.
struct PackScratch {
  std::vector<float> token;
  std::vector<uint8_t> codes;
};

PackScratch make_scratch(const PackPlan& plan);

// Quantize and pack tokens [m0, m1) on the path of plan.
void pack_tokens(const PackPlan& plan, const PackArgs& args, int64_t m0,
                 int64_t m1, PackScratch& scratch);

}  // namespace q2t
}  // namespace mmtvmamba
