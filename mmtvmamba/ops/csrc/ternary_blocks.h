// Copyright (c) mmtvmamba contributors. All rights reserved.
//
// Output blocks of a matmul call: the kernel of the active instruction-set
// path, its K segments and its epilogue, run on one block at a time. The
// ternary matmul ops and q2t_linear split their outputs into blocks and
// run them from the tasks of one parallel region.
#pragma once

#include <cstdint>
#include <vector>

#include "ternary.h"

namespace mmtvmamba {

// Weight bytes per column block, sized to stay in a per-core L2 of 1 MiB or
// more while the row blocks of a task stream past it.
// NOTE: not tuned per CPU; CPUs with a smaller L2 may want smaller blocks.
constexpr int64_t kWeightBlockBytes = 512 * 1024;

// Column blocks are multiples of the AVX-512 micro tile (2 groups of 16).
constexpr int64_t kColumnQuantum = 32;

// Below this many word operations (M * N * kd), about 80 us of work on one
// Zen 4 core, the call runs on the calling thread. In a 2-vCPU VM the dt
// projection of VMamba-T stage 3 (196 x 384 x 1 word) took 23 us on one
// thread and 45-60 us on two, so waking the pool costs more than smaller
// calls can gain.
constexpr int64_t kInlineWork = 1 << 18;

// A run of consecutive K words that share one activation scale.
struct Segment {
  int64_t begin;
  int64_t end;
  float scale;
};

// Kernel and K segments of one matmul call, shared by all its blocks.
struct BlockPlan {
  Isa isa = Isa::kPortable;
  std::vector<Segment> segments;
  // The segments as block_avx512 reads them (seg_begin has one entry more);
  // empty unless that kernel applies the segments itself.
  std::vector<int64_t> seg_begin;
  std::vector<float> seg_scale;
};

// Return the plan of a call with kd words per plane and the word scales
// k_scale (kd entries), or null for none.
BlockPlan plan_blocks(int64_t kd, const float* k_scale);

// Compute output rows [m0, m1) and columns [n0, n1) of args over every K
// segment of plan, then apply epilogue to them. n0 must be a multiple of
// kGroupRows.
void run_block(const BlockPlan& plan, const MatmulArgs& args,
               const Epilogue& epilogue, int64_t m0, int64_t m1, int64_t n0,
               int64_t n1);

// Return the width of a column block whose packed weight fits
// kWeightBlockBytes, with kd words per plane: a multiple of kColumnQuantum,
// at least kColumnQuantum.
int64_t weight_column_block(int64_t kd);

}  // namespace mmtvmamba
