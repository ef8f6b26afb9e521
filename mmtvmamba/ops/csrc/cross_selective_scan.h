// Copyright (c) mmtvmamba contributors. All rights reserved.
//
// Fused CPU forward of the four-direction cross selective scan of SS2D. The
// input is a (batch, H, W, D) feature map in channels-last order. Direction
// k walks its positions in the order of cross_scan:
//
//   k = 0  row-major            k = 2  row-major, reversed
//   k = 1  column-major         k = 3  column-major, reversed
//
// and runs the recurrence of selective_scan.h along that walk for channel d.
// It uses row k * D + d of A, D and delta_bias, and B[b, h, w, k, :] and
// C[b, h, w, k, :] at position (h, w). The output at a position is the sum of the four directions' outputs there, so it equals
// cross_merge(selective_scan(cross_scan(u))) without the reordering copies.
#pragma once

#include <cstdint>

#include "selective_scan.h"

namespace mmtvmamba {

// Number of scan directions.
constexpr int kCrossDirections = 4;

// Strides in floats of one direction's walk over a (H, W) grid. The walk
// visits outer_count lines of inner_count positions each, starting at
// element start.
struct CrossWalk {
  int64_t start = 0;
  int64_t outer = 0;
  int64_t inner = 0;
};

// Return the walk of direction k over a grid with the given row and column
// strides.
inline CrossWalk cross_walk(int k, int64_t height, int64_t width,
                            int64_t row_stride, int64_t column_stride) {
  const bool columns = k % 2 == 1;
  const int64_t outer = columns ? column_stride : row_stride;
  const int64_t inner = columns ? row_stride : column_stride;
  if (k < 2) {
    return {0, outer, inner};
  }
  const int64_t last = (height - 1) * row_stride + (width - 1) * column_stride;
  return {last, -outer, -inner};
}

// Float32 operands of one call. Strides are in floats. The channels of u,
// delta and y have unit stride, and y is contiguous.
struct CrossScanArgs {
  const float* u = nullptr;  // (batch, H, W, D)
  int64_t u_strides[3] = {0, 0, 0};
  const float* delta[kCrossDirections] = {nullptr, nullptr, nullptr,
                                          nullptr};  // (batch, H, W, D) each
  int64_t delta_strides[kCrossDirections][3] = {};
  const float* a = nullptr;  // (4 * D, states), contiguous
  const float* b = nullptr;  // (batch, H, W, 4, states)
  int64_t b_strides[5] = {0, 0, 0, 0, 0};
  const float* c = nullptr;  // (batch, H, W, 4, states)
  int64_t c_strides[5] = {0, 0, 0, 0, 0};
  const float* d = nullptr;           // (4 * D), or null for no skip term
  const float* delta_bias = nullptr;  // (4 * D), or null for no bias
  float* y = nullptr;                 // (batch, H, W, D), contiguous
  int64_t height = 0;
  int64_t width = 0;
  int64_t channels = 0;
  int64_t states = 0;
  // Channels per task, a multiple of 16. The last task of a batch item
  // covers fewer when D is not a multiple of task_channels.
  int64_t task_channels = 0;
  bool delta_softplus = false;
};

// Return the number of channel blocks per batch item of args.
inline int64_t cross_scan_blocks(const CrossScanArgs& args) {
  return (args.channels + args.task_channels - 1) / args.task_channels;
}

// Compute tasks [t0, t1) of args. Task t covers batch item
// t / cross_scan_blocks(args) and the t-th block of task_channels channels
// in it, in all four directions, so tasks write disjoint parts of y. The
// AVX-512 kernel exists only where it is compiled, and callers use it only
// while active_scan_isa() is kAvx512.
void cross_scan_tasks_portable(const CrossScanArgs& args, int64_t t0,
                               int64_t t1);
void cross_scan_tasks_avx512(const CrossScanArgs& args, int64_t t0,
                             int64_t t1);

}  // namespace mmtvmamba
