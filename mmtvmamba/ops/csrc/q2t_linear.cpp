// Copyright (c) mmtvmamba contributors. All rights reserved.
//
// The op q2t_linear: q2t_pack followed by ternary_mm or quinary_mm, in one
// parallel region. Each task quantizes and packs a block of tokens into its
// own buffer and at once multiplies it with a range of weight columns,
// applying the scales, bias, residual and activation. The
// call therefore wakes the thread pool once instead of twice, and the
// packed codes stay in the task's cache.
//
// Every output element goes through the pack kernels and the matmul
// kernels of the two ops, with the same inputs and in the same order, so
// the output is bitwise equal to theirs on the same instruction-set path.
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/Optional.h>

#include "parallel_tasks.h"
#include "q2t_pack_plan.h"
#include "ternary.h"
#include "ternary_blocks.h"
#include "ternary_checks.h"
#include "ternary_ops.h"

namespace mmtvmamba {

namespace {

constexpr char kOp[] = "q2t_linear";

// A task packs at most 64 tokens, whose codes take 64 * 4 * ceil(K / 32)
// words or less (48 KiB at K = 3072).
constexpr int64_t kMaxTaskRows = 64;

// Row blocks are multiples of the 4-row micro tile of the AVX-512 kernel.
constexpr int64_t kRowQuantum = 4;

// Tasks of one call: row blocks of row_block tokens, each split into
// col_blocks column ranges. Task t covers row block t % row_blocks, so
// consecutive tasks share their weight columns.
struct TaskGrid {
  int64_t row_block;
  int64_t row_blocks;
  int64_t col_block;
  int64_t col_blocks;
  bool parallel;

  int64_t count() const { return row_blocks * col_blocks; }
};

TaskGrid plan_tasks(int64_t m, int64_t n, int64_t kd, int64_t positions) {
  const int64_t threads = at::get_num_threads();

  // A call that the two ops would both run inline runs inline.
  const bool small =
      m * n * kd <= kInlineWork && m * positions <= q2t::kInlineCodes;
  if (threads == 1 || small) {
    return {kMaxTaskRows, at::divup(m, kMaxTaskRows), n, 1, false};
  }

  // Give every thread several tasks, as run_blocks of the matmul does. The
  // kernels sweep all columns of a block once per 4-row tile, so short row
  // blocks cost no extra weight traffic; M = 49 gives 7 blocks of 8 rows.
  const int64_t min_tasks = 4 * threads;
  const int64_t rows = at::divup(at::divup(m, min_tasks), kRowQuantum) *
                       kRowQuantum;
  const int64_t row_block = std::min(kMaxTaskRows, rows);
  TaskGrid grid{row_block, at::divup(m, row_block), n, 1, true};
  if (grid.row_blocks >= 2 * threads) {
    return grid;
  }

  // Too few rows: split the columns too. Each column range packs its rows
  // again, which costs K codes per token against N * ceil(K / 32) words of
  // the multiply.
  const int64_t splits = std::min(at::divup(min_tasks, grid.row_blocks),
                                  at::divup(n, kColumnQuantum));
  grid.col_block = at::divup(at::divup(n, splits), kColumnQuantum) *
                   kColumnQuantum;
  grid.col_blocks = at::divup(n, grid.col_block);
  return grid;
}

void check_weight(const at::Tensor& w_packed, int64_t positions) {
  const int64_t expected = kTernaryPlanes * words_per_plane(positions);
  TORCH_CHECK_VALUE(w_packed.dim() != 2 || w_packed.size(1) == expected, kOp,
                    ": w_packed has ", w_packed.size(1),
                    " words per row, but index has ", positions,
                    " positions, which need ", expected,
                    " (2 planes of ceil(positions / 32) words); pack the "
                    "weight columns in the order of index with pack_ternary");
  check_packed(w_packed, kTernaryPlanes, positions, kOp, "w_packed");
}

// Pack tokens [m0, m1) and compute their outputs in columns [n0, n1). The
// task's buffer is a packed matrix of its m1 - m0 rows, with its own
// 16-row groups. Each output depends only on its token's codes and RMS, so
// the results do not depend on where the blocks start.
void run_task(const q2t::PackPlan& pack_plan, const BlockPlan& block_plan,
              const MatmulArgs& args, const Epilogue& epilogue, int64_t m0,
              int64_t m1, int64_t n0, int64_t n1) {
  const int64_t rows = m1 - m0;
  std::vector<int32_t> packed(rows * pack_plan.planes * args.kd);
  std::vector<float> rms(rows);
  q2t::PackScratch scratch = q2t::make_scratch(pack_plan);
  const q2t::PackArgs pack =
      q2t::pack_args(pack_plan, packed.data(), m0, rows, rms.data());
  q2t::pack_tokens(pack_plan, pack, m0, m1, scratch);

  MatmulArgs block = args;
  block.a = packed.data();
  block.m = rows;
  block.out_float = args.out_float + m0 * args.n;
  block.row_scale = rms.data();
  Epilogue block_epilogue = epilogue;
  if (epilogue.residual != nullptr) {
    block_epilogue.residual += m0 * epilogue.residual_row_stride;
  }

  const int64_t col_block = weight_column_block(args.kd);
  for (int64_t c0 = n0; c0 < n1; c0 += col_block) {
    run_block(block_plan, block, block_epilogue, 0, rows, c0,
              std::min(n1, c0 + col_block));
  }
}

}  // namespace

at::Tensor q2t_linear(const at::Tensor& x, const at::Tensor& index,
                      const at::Tensor& alpha, int64_t radius, double eps,
                      const at::Tensor& w_packed, const at::Tensor& col_scale,
                      const c10::optional<at::Tensor>& bias,
                      const c10::optional<at::Tensor>& k_scale,
                      const c10::optional<at::Tensor>& residual,
                      const std::string& activation,
                      const c10::optional<at::Tensor>& norm_weight,
                      const c10::optional<at::Tensor>& norm_bias,
                      double norm_eps) {
  const q2t::PackPlan pack_plan = q2t::plan_pack(
      x, index, alpha, radius, eps, norm_weight, norm_bias, norm_eps, kOp);
  const int64_t positions = pack_plan.positions;
  TORCH_CHECK_VALUE(positions < kMaxK, kOp, ": index has ", positions,
                    " positions; the kernel supports fewer than ", kMaxK);
  check_weight(w_packed, positions);
  const int64_t m = pack_plan.tokens;
  const int64_t n = w_packed.size(0);
  const int64_t kd = words_per_plane(positions);
  check_scale(col_scale, kOp, "col_scale", n, true);
  check_scale(bias, kOp, "bias", n, false);
  check_scale(k_scale, kOp, "k_scale", kd, false);
  const Epilogue epilogue = make_epilogue(residual, activation, m, n, kOp);

  const at::Tensor w = w_packed.contiguous();
  const at::Tensor col = col_scale.contiguous();
  const at::Tensor b = bias ? bias->contiguous() : at::Tensor();
  const at::Tensor ks = k_scale ? k_scale->contiguous() : at::Tensor();
  at::Tensor out = at::empty({m, n}, x.options());

  MatmulArgs args;
  args.w = w.data_ptr<int32_t>();
  args.m = m;
  args.n = n;
  args.kd = kd;
  args.k_end = kd;
  args.a_planes = pack_plan.planes;
  args.out_float = out.data_ptr<float>();
  args.col_scale = col.data_ptr<float>();
  args.col_scale_per_column = col.numel() == n && n > 1;
  args.bias = b.defined() ? b.data_ptr<float>() : nullptr;
  const BlockPlan block_plan =
      plan_blocks(kd, ks.defined() ? ks.data_ptr<float>() : nullptr);

  const TaskGrid grid = plan_tasks(m, n, kd, positions);
  auto task = [&](int64_t t) {
    const int64_t m0 = (t % grid.row_blocks) * grid.row_block;
    const int64_t n0 = (t / grid.row_blocks) * grid.col_block;
    run_task(pack_plan, block_plan, args, epilogue, m0,
             std::min(m, m0 + grid.row_block), n0,
             std::min(n, n0 + grid.col_block));
  };
  if (!grid.parallel) {
    for (int64_t t = 0; t < grid.count(); ++t) {
      task(t);
    }
    return out;
  }
  run_tasks(grid.count(), task);
  return out;
}

}  // namespace mmtvmamba
