// Copyright (c) mmtvmamba contributors. All rights reserved.
//
// Entry point and portable path of q2t_pack. q2t_pack.h describes what the
// op computes, and q2t_pack_plan.cpp checks its inputs.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <tuple>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "parallel_tasks.h"
#include "q2t_pack.h"
#include "q2t_pack_plan.h"
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
    args.rms[m - args.out_first] = rms;
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

std::tuple<at::Tensor, at::Tensor> q2t_pack(
    const at::Tensor& x, const at::Tensor& index, const at::Tensor& alpha,
    int64_t radius, double eps, const c10::optional<at::Tensor>& norm_weight,
    const c10::optional<at::Tensor>& norm_bias, double norm_eps) {
  const q2t::PackPlan plan = q2t::plan_pack(x, index, alpha, radius, eps,
                                            norm_weight, norm_bias, norm_eps,
                                            "q2t_pack");
  const int64_t positions = plan.positions;
  const int64_t rows = plan.tokens;
  at::Tensor out = at::empty({rows, plan.planes * words_per_plane(positions)},
                             x.options().dtype(at::kInt));
  at::Tensor rms = at::empty({rows}, x.options());
  const q2t::PackArgs args = q2t::pack_args(plan, out.data_ptr<int32_t>(), 0,
                                            rows, rms.data_ptr<float>());

  // Small calls run inline (q2t::kInlineCodes). Larger calls run in tasks
  // small enough that each thread gets several.
  const int64_t task_rows =
      rows * positions <= q2t::kInlineCodes
          ? rows
          : std::max<int64_t>({int64_t{1}, (int64_t{1} << 15) / positions,
                               rows / (4 * at::get_num_threads())});
  run_tasks(at::divup(rows, task_rows), [&](int64_t t) {
    const int64_t m0 = t * task_rows;
    const int64_t m1 = std::min(rows, m0 + task_rows);
    q2t::PackScratch scratch = q2t::make_scratch(plan);
    q2t::pack_tokens(plan, args, m0, m1, scratch);
  });
  return std::make_tuple(out, rms);
}

}  // namespace mmtvmamba
