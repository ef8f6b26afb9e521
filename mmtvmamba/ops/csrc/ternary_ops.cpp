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
#include "ternary_ops.h"

namespace mmtvmamba {

namespace {

// Weight bytes per column block, sized to stay in a per-core L2 of 1 MiB or
// more while the row blocks of a task stream past it.
// NOTE: not tuned per CPU; CPUs with a smaller L2 may want smaller blocks.
constexpr int64_t kWeightBlockBytes = 512 * 1024;

// Column blocks are multiples of the AVX-512 micro tile (2 groups of 16).
constexpr int64_t kColumnQuantum = 32;
constexpr int64_t kRowBlock = 64;

// Below this many word operations (M * N * kd), about 80 us of work on one
// Zen 4 core, the call runs on the calling thread. In a 2-vCPU VM the dt
// projection of VMamba-T stage 3 (196 x 384 x 1 word) took 23 us on one
// thread and 45-60 us on two, so waking the pool costs more than smaller
// calls can gain.
constexpr int64_t kInlineWork = 1 << 18;

// Dot products are bounded by 2 * K and are converted to float32, so K stays
// below 2^22 to keep them exact in int32 and in float32.
constexpr int64_t kMaxK = int64_t{1} << 22;

bool debug_checks_enabled() {
  const char* env = std::getenv("MMTVMAMBA_DEBUG_CHECKS");
  return env != nullptr && std::strcmp(env, "") != 0 &&
         std::strcmp(env, "0") != 0;
}

void check_cpu(const at::Tensor& tensor, const char* op, const char* name) {
  TORCH_CHECK(tensor.device().is_cpu(), op, ": ", name,
              " must be a CPU tensor, but it is on ", tensor.device(),
              "; move it with .cpu()");
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

void check_packed(const at::Tensor& packed, int planes, int64_t k,
                  const char* op, const char* name) {
  check_cpu(packed, op, name);
  TORCH_CHECK_TYPE(packed.scalar_type() == at::kInt, op, ": ", name,
                   " must be an int32 packed tensor, but got ",
                   packed.scalar_type(), "; pack the codes with ",
                   planes == kQuinaryPlanes ? "pack_quinary" : "pack_ternary");
  TORCH_CHECK_VALUE(packed.dim() == 2 && packed.size(0) > 0, op, ": ", name,
                    " must be a non-empty 2-D packed tensor, but got shape ",
                    packed.sizes());
  const int64_t expected = planes * words_per_plane(k);
  const char* packer =
      planes == kQuinaryPlanes ? "pack_quinary" : "pack_ternary";
  TORCH_CHECK_VALUE(packed.size(1) == expected, op, ": ", name, " has ",
                    packed.size(1), " words per row, but k=", k, " needs ",
                    expected, " (", planes, " planes of ceil(k / 32) words); "
                    "pass the K used when packing, and pack ", name, " with ",
                    packer);
}

void check_scale(const c10::optional<at::Tensor>& tensor, const char* op,
                 const char* name, int64_t size, bool allow_one) {
  if (!tensor.has_value()) {
    return;
  }
  const at::Tensor& t = *tensor;
  check_cpu(t, op, name);
  TORCH_CHECK_TYPE(t.scalar_type() == at::kFloat, op, ": ", name,
                   " must be float32, but got ", t.scalar_type(),
                   "; convert with .float()");
  const bool size_ok = t.numel() == size || (allow_one && t.numel() == 1);
  TORCH_CHECK_VALUE(t.dim() == 1 && size_ok, op, ": ", name,
                    " must have shape (", size, ")",
                    allow_one ? " or (1)" : "", ", but got shape ", t.sizes());
}

// A run of consecutive K words that share one activation scale.
struct Segment {
  int64_t begin;
  int64_t end;
  float scale;
};

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

// Run args on the thread pool in row x column blocks. Tasks are ordered
// column block first, so consecutive tasks reuse the weight block that is
// already in the cache.
void run_blocks(const MatmulArgs& args, const float* k_scale = nullptr,
                const Epilogue& epilogue = Epilogue{}) {
  const Isa isa = active_isa();
  auto block = isa == Isa::kAvx512 ? block_avx512
               : isa == Isa::kAvx2 ? block_avx2
                                   : block_portable;
  const std::vector<Segment> segments = k_segments(k_scale, args.kd);

  // The AVX-512 kernel sums the segments in registers in one pass; the
  // other kernels run once per segment and add to the output.
  std::vector<int64_t> seg_begin;
  std::vector<float> seg_scale;
  MatmulArgs one_pass = args;
  if (isa == Isa::kAvx512 && kAvx512Segments && k_scale != nullptr) {
    for (const Segment& segment : segments) {
      seg_begin.push_back(segment.begin);
      seg_scale.push_back(segment.scale);
    }
    seg_begin.push_back(args.kd);
    one_pass.seg_begin = seg_begin.data();
    one_pass.seg_scale = seg_scale.data();
    one_pass.num_segments = static_cast<int64_t>(segments.size());
  }
  auto finish = isa == Isa::kAvx512 ? epilogue_avx512 : epilogue_portable;
  auto run = [&](int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    if (one_pass.num_segments > 0) {
      block(one_pass, m0, m1, n0, n1);
    } else {
      run_segments(args, segments, block, m0, m1, n0, n1);
    }
    if (epilogue.active()) {
      finish(epilogue, args.out_float, args.n, m0, m1, n0, n1);
    }
  };

  if (args.m * args.n * args.kd <= kInlineWork) {
    run(0, args.m, 0, args.n);
    return;
  }

  const int64_t row_bytes = kTernaryPlanes * args.kd * 4;
  int64_t col_block = kWeightBlockBytes / row_bytes;
  col_block = std::max(kColumnQuantum,
                       col_block / kColumnQuantum * kColumnQuantum);
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

Activation parse_activation(const std::string& name, const char* op) {
  if (name == "gelu") {
    return Activation::kGelu;
  }
  TORCH_CHECK_VALUE(name == "none", op, ": invalid activation '", name,
                    "'; expected 'none' or 'gelu'");
  return Activation::kNone;
}

// Return the epilogue of a float matmul with m x n outputs. The residual
// tensor must outlive the call that uses the epilogue.
Epilogue make_epilogue(const c10::optional<at::Tensor>& residual,
                       const std::string& activation, int64_t m, int64_t n,
                       const char* op) {
  Epilogue epilogue;
  epilogue.activation = parse_activation(activation, op);
  if (!residual.has_value()) {
    return epilogue;
  }
  const at::Tensor& r = *residual;
  check_cpu(r, op, "residual");
  TORCH_CHECK_TYPE(r.scalar_type() == at::kFloat, op,
                   ": residual must be float32, but got ", r.scalar_type());
  TORCH_CHECK_VALUE(r.dim() == 2 && r.size(0) == m && r.size(1) == n, op,
                    ": residual must have the output shape (", m, ", ", n,
                    "), but got shape ", r.sizes());
  epilogue.residual = r.data_ptr<float>();
  epilogue.residual_row_stride = r.stride(0);
  epilogue.residual_col_stride = r.stride(1);
  return epilogue;
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
