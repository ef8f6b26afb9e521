// Copyright (c) mmtvmamba contributors. All rights reserved.
//
// Input validation, blocking and threading of the ternary ops.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/Optional.h>

#include "parallel_tasks.h"
#include "ternary.h"
#include "ternary_blocks.h"
#include "ternary_checks.h"
#include "ternary_ops.h"

namespace mmtvmamba {

namespace {

// Rows per task before run_blocks shrinks the blocks for more tasks.
constexpr int64_t kRowBlock = 64;

bool debug_checks_enabled() {
  const char* env = std::getenv("MMTVMAMBA_DEBUG_CHECKS");
  return env != nullptr && std::strcmp(env, "") != 0 &&
         std::strcmp(env, "0") != 0;
}

void check_codes(const at::Tensor& codes, const char* op) {
  check_cpu(codes, op, "codes");
  TORCH_CHECK_TYPE(codes.scalar_type() == at::kChar, op,
                   ": codes must be int8, but got ", codes.scalar_type(),
                   "; convert with codes.to(torch.int8)");
  TORCH_CHECK_VALUE(codes.dim() == 2, op,
                    ": codes must be 2-D (rows, K), but got shape ",
                    codes.sizes());
  TORCH_CHECK_VALUE(codes.size(0) > 0 && codes.size(1) > 0, op,
                    ": codes must not be empty, but got shape ",
                    codes.sizes());
  TORCH_CHECK_VALUE(codes.size(1) < kMaxK, op, ": K=", codes.size(1),
                    " is too large; the kernel supports K < ", kMaxK);
}

// Raise on the first code outside [-limit, limit].
void check_code_values(const at::Tensor& codes, int limit, const char* op) {
  const int8_t* data = codes.data_ptr<int8_t>();
  const int64_t k = codes.size(1);
  const int64_t count = codes.numel();
  for (int64_t i = 0; i < count; ++i) {
    if (data[i] < -limit || data[i] > limit) {
      TORCH_CHECK_VALUE(false, op, ": codes[", i / k, ", ", i % k, "] is ",
                        static_cast<int>(data[i]), ", outside [", -limit,
                        ", ", limit,
                        "]; clamp or quantize the values to this range first");
    }
  }
}

at::Tensor pack_codes(const at::Tensor& codes, bool check, int planes,
                      const char* op) {
  check_codes(codes, op);
  const at::Tensor input = codes.contiguous();
  const int limit = planes == kQuinaryPlanes ? 2 : 1;
  if (check || debug_checks_enabled()) {
    check_code_values(input, limit, op);
  }

  const int64_t rows = input.size(0);
  const int64_t k = input.size(1);
  at::Tensor out = at::empty({rows, planes * words_per_plane(k)},
                             input.options().dtype(at::kInt));
  const int8_t* src = input.data_ptr<int8_t>();
  int32_t* dst = out.data_ptr<int32_t>();
  const bool simd = active_isa() != Isa::kPortable;
  const int64_t grain = (int64_t{1} << 16) / k + 1;
  at::parallel_for(0, rows, grain, [&](int64_t r0, int64_t r1) {
    if (simd) {
      pack_rows_avx2(src, rows, k, planes, r0, r1, dst);
    } else {
      pack_rows_portable(src, rows, k, planes, r0, r1, dst);
    }
  });
  return out;
}

// Run args on the thread pool in row x column blocks. Tasks are ordered
// column block first, so consecutive tasks reuse the weight block that is
// already in the cache.
void run_blocks(const MatmulArgs& args, const float* k_scale = nullptr,
                const Epilogue& epilogue = Epilogue{}) {
  const BlockPlan plan = plan_blocks(args.kd, k_scale);
  auto run = [&](int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    run_block(plan, args, epilogue, m0, m1, n0, n1);
  };

  if (args.m * args.n * args.kd <= kInlineWork) {
    run(0, args.m, 0, args.n);
    return;
  }

  int64_t col_block = weight_column_block(args.kd);
  int64_t row_block = kRowBlock;

  // Shrink the blocks until every thread gets several tasks.
  const int64_t min_tasks = 4 * at::get_num_threads();
  auto count_tasks = [&]() {
    return at::divup(args.m, row_block) * at::divup(args.n, col_block);
  };
  while (count_tasks() < min_tasks && col_block > kColumnQuantum) {
    col_block = std::max(kColumnQuantum,
                         col_block / 2 / kColumnQuantum * kColumnQuantum);
  }
  while (count_tasks() < min_tasks && row_block > kGroupRows) {
    row_block /= 2;
  }

  const int64_t row_blocks = at::divup(args.m, row_block);
  run_tasks(count_tasks(), [&](int64_t t) {
    const int64_t m0 = (t % row_blocks) * row_block;
    const int64_t n0 = (t / row_blocks) * col_block;
    run(m0, std::min(args.m, m0 + row_block), n0,
        std::min(args.n, n0 + col_block));
  });
}

at::Tensor matmul(const at::Tensor& a_packed, const at::Tensor& w_packed,
                  int64_t k, const c10::optional<at::Tensor>& row_scale,
                  const c10::optional<at::Tensor>& col_scale,
                  const c10::optional<at::Tensor>& bias,
                  const c10::optional<at::Tensor>& k_scale, int a_planes,
                  bool float_out, const char* op,
                  const Epilogue& epilogue = Epilogue{}) {
  TORCH_CHECK_VALUE(k > 0 && k < kMaxK, op, ": k must be in [1, ", kMaxK,
                    "), but got k=", k);
  check_packed(a_packed, a_planes, k, op, "a_packed");
  check_packed(w_packed, kTernaryPlanes, k, op, "w_packed");
  const int64_t m = a_packed.size(0);
  const int64_t n = w_packed.size(0);
  check_scale(row_scale, op, "row_scale", m, false);
  check_scale(col_scale, op, "col_scale", n, true);
  check_scale(bias, op, "bias", n, false);
  check_scale(k_scale, op, "k_scale", words_per_plane(k), false);

  const at::Tensor a = a_packed.contiguous();
  const at::Tensor w = w_packed.contiguous();
  MatmulArgs args;
  args.a = a.data_ptr<int32_t>();
  args.w = w.data_ptr<int32_t>();
  args.m = m;
  args.n = n;
  args.kd = words_per_plane(k);
  args.k_end = args.kd;
  args.a_planes = a_planes;

  if (!float_out) {
    at::Tensor out = at::empty({m, n}, a.options());
    args.out_int = out.data_ptr<int32_t>();
    run_blocks(args);
    return out;
  }

  TORCH_CHECK_VALUE(col_scale.has_value(), op,
                    ": col_scale is required; pass torch.ones(1) for none");
  const at::Tensor col = col_scale->contiguous();
  const at::Tensor row = row_scale ? row_scale->contiguous() : at::Tensor();
  const at::Tensor b = bias ? bias->contiguous() : at::Tensor();
  const at::Tensor ks = k_scale ? k_scale->contiguous() : at::Tensor();
  at::Tensor out = at::empty({m, n}, a.options().dtype(at::kFloat));
  args.out_float = out.data_ptr<float>();
  args.col_scale = col.data_ptr<float>();
  args.col_scale_per_column = col.numel() == n && n > 1;
  args.row_scale = row.defined() ? row.data_ptr<float>() : nullptr;
  args.bias = b.defined() ? b.data_ptr<float>() : nullptr;
  run_blocks(args, ks.defined() ? ks.data_ptr<float>() : nullptr, epilogue);
  return out;
}

at::Tensor unpack_codes(const at::Tensor& packed, int64_t k, int planes,
                        const char* op) {
  TORCH_CHECK_VALUE(k > 0 && k < kMaxK, op, ": k must be in [1, ", kMaxK,
                    "), but got k=", k);
  check_packed(packed, planes, k, op, "packed");
  const at::Tensor input = packed.contiguous();
  const int64_t rows = input.size(0);
  const int64_t kd = words_per_plane(k);
  at::Tensor out = at::empty({rows, k}, input.options().dtype(at::kChar));
  const uint32_t* src =
      reinterpret_cast<const uint32_t*>(input.data_ptr<int32_t>());
  int8_t* dst = out.data_ptr<int8_t>();
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t g = r / kGroupRows;
    const int64_t lanes = group_lanes(g, rows);
    const uint32_t* base =
        src + group_offset(g, planes, kd) + (r - g * kGroupRows);
    for (int64_t e = 0; e < k; ++e) {
      const uint32_t* word = base + (e / kWordBits) * planes * lanes;
      const int bit = static_cast<int>(e % kWordBits);
      int value = 0;
      for (int p = 0; p < planes; p += 2) {
        const int nz = (word[p * lanes] >> bit) & 1;
        const int sign = (word[(p + 1) * lanes] >> bit) & 1;
        value += nz * (1 - 2 * sign);
      }
      dst[r * k + e] = static_cast<int8_t>(value);
    }
  }
  return out;
}

}  // namespace

at::Tensor pack_ternary(const at::Tensor& codes, bool check) {
  return pack_codes(codes, check, kTernaryPlanes, "pack_ternary");
}

at::Tensor pack_quinary(const at::Tensor& codes, bool check) {
  return pack_codes(codes, check, kQuinaryPlanes, "pack_quinary");
}

at::Tensor unpack_ternary(const at::Tensor& packed, int64_t k) {
  return unpack_codes(packed, k, kTernaryPlanes, "unpack_ternary");
}

at::Tensor unpack_quinary(const at::Tensor& packed, int64_t k) {
  return unpack_codes(packed, k, kQuinaryPlanes, "unpack_quinary");
}

at::Tensor ternary_mm_int(const at::Tensor& a_packed,
                          const at::Tensor& w_packed, int64_t k) {
  return matmul(a_packed, w_packed, k, c10::nullopt, c10::nullopt,
                c10::nullopt, c10::nullopt, kTernaryPlanes, false,
                "ternary_mm_int");
}

at::Tensor quinary_mm_int(const at::Tensor& a_packed,
                          const at::Tensor& w_packed, int64_t k) {
  return matmul(a_packed, w_packed, k, c10::nullopt, c10::nullopt,
                c10::nullopt, c10::nullopt, kQuinaryPlanes, false,
                "quinary_mm_int");
}

at::Tensor ternary_mm(const at::Tensor& a_packed, const at::Tensor& w_packed,
                      int64_t k, const c10::optional<at::Tensor>& row_scale,
                      const at::Tensor& col_scale,
                      const c10::optional<at::Tensor>& bias,
                      const c10::optional<at::Tensor>& k_scale,
                      const c10::optional<at::Tensor>& residual,
                      const std::string& activation) {
  const Epilogue epilogue =
      make_epilogue(residual, activation, a_packed.size(0), w_packed.size(0),
                    "ternary_mm");
  return matmul(a_packed, w_packed, k, row_scale, col_scale, bias, k_scale,
                kTernaryPlanes, true, "ternary_mm", epilogue);
}

at::Tensor quinary_mm(const at::Tensor& a_packed, const at::Tensor& w_packed,
                      int64_t k, const c10::optional<at::Tensor>& row_scale,
                      const at::Tensor& col_scale,
                      const c10::optional<at::Tensor>& bias,
                      const c10::optional<at::Tensor>& k_scale,
                      const c10::optional<at::Tensor>& residual,
                      const std::string& activation) {
  const Epilogue epilogue =
      make_epilogue(residual, activation, a_packed.size(0), w_packed.size(0),
                    "quinary_mm");
  return matmul(a_packed, w_packed, k, row_scale, col_scale, bias, k_scale,
                kQuinaryPlanes, true, "quinary_mm", epilogue);
}

}  // namespace mmtvmamba
