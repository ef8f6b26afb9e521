// Copyright (c) mmtvmamba contributors. All rights reserved.
//
// Output blocks of a matmul call, as ternary_blocks.h describes them.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "ternary.h"
#include "ternary_blocks.h"

namespace mmtvmamba {

namespace {

// Split the kd words into runs of equal k_scale entries, or return one
// segment of scale 1 when there is no k_scale.
std::vector<Segment> k_segments(const float* k_scale, int64_t kd) {
  if (k_scale == nullptr) {
    return {{0, kd, 1.0f}};
  }
  std::vector<Segment> segments;
  int64_t begin = 0;
  for (int64_t k = 1; k <= kd; ++k) {
    if (k == kd || k_scale[k] != k_scale[begin]) {
      segments.push_back({begin, k, k_scale[begin]});
      begin = k;
    }
  }
  return segments;
}

// Compute one output block over every K segment. Segments after the first
// add to the block the first one wrote, which is still in the cache.
template <typename Block>
void run_segments(const MatmulArgs& args,
                  const std::vector<Segment>& segments, Block block,
                  int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  MatmulArgs part = args;
  for (size_t s = 0; s < segments.size(); ++s) {
    part.k_begin = segments[s].begin;
    part.k_end = segments[s].end;
    part.k_scale = segments[s].scale;
    part.accumulate = s > 0;
    part.bias = s == 0 ? args.bias : nullptr;
    block(part, m0, m1, n0, n1);
  }
}

}  // namespace

BlockPlan plan_blocks(int64_t kd, const float* k_scale) {
  BlockPlan plan;
  plan.isa = active_isa();
  plan.segments = k_segments(k_scale, kd);

  // The AVX-512 kernel sums the segments in registers in one pass; the
  // other kernels run once per segment and add to the output.
  if (plan.isa == Isa::kAvx512 && kAvx512Segments && k_scale != nullptr) {
    for (const Segment& segment : plan.segments) {
      plan.seg_begin.push_back(segment.begin);
      plan.seg_scale.push_back(segment.scale);
    }
    plan.seg_begin.push_back(kd);
  }
  return plan;
}

void run_block(const BlockPlan& plan, const MatmulArgs& args,
               const Epilogue& epilogue, int64_t m0, int64_t m1, int64_t n0,
               int64_t n1) {
  auto block = plan.isa == Isa::kAvx512 ? block_avx512
               : plan.isa == Isa::kAvx2 ? block_avx2
                                        : block_portable;
  if (plan.seg_scale.empty()) {
    run_segments(args, plan.segments, block, m0, m1, n0, n1);
  } else {
    MatmulArgs one_pass = args;
    one_pass.seg_begin = plan.seg_begin.data();
    one_pass.seg_scale = plan.seg_scale.data();
    one_pass.num_segments = static_cast<int64_t>(plan.seg_scale.size());
    block(one_pass, m0, m1, n0, n1);
  }

  if (epilogue.active()) {
    auto finish =
        plan.isa == Isa::kAvx512 ? epilogue_avx512 : epilogue_portable;
    finish(epilogue, args.out_float, args.n, m0, m1, n0, n1);
  }
}

int64_t weight_column_block(int64_t kd) {
  const int64_t row_bytes = kTernaryPlanes * kd * 4;
  const int64_t col_block = kWeightBlockBytes / row_bytes;
  return std::max(kColumnQuantum,
                  col_block / kColumnQuantum * kColumnQuantum);
}

}  // namespace mmtvmamba
