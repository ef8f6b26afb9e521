// Copyright (c) mmtvmamba contributors. All rights reserved.
//
// Packed bit-plane layout and kernel interface of the ternary matmul op.
//
// Packed layout (shared by every ISA path, so a tensor packed once can be
// used by any kernel):
//   * A matrix of `rows` x K codes becomes an int32 tensor of shape
//     (rows, planes * kd), with kd = ceil(K / 32) words per plane. The int32
//     elements are raw 32-bit words, because torch has limited uint32
//     support. Bit j of word k of a plane is element 32 * k + j.
//   * Ternary codes use 2 planes: nonzero (code != 0) and sign (code < 0).
//     Five-level codes a in {-2..2} are split into hi = clip(a, -1, 1) and
//     lo = a - hi, both ternary, giving 4 planes: hi nonzero, hi sign,
//     lo nonzero, lo sign.
//   * Rows are interleaved in groups of 16. Group g contains rows
//     16g..16g+L-1 with L = min(16, rows - 16g). It stores its words in the
//     order [word k][plane p][lane l], so word (k, p) of row 16g + l is at
//     group_offset(g) + (k * planes + p) * L + l. Full groups therefore
//     give one 512-bit vector of 16 rows per (k, p), which lets the kernel
//     put 16 output columns in the vector lanes and broadcast the other
//     operand. The K granularity is 32 bits, so K = 96 wastes nothing. The
//     last group is stored with only L lanes, so the tensor has no row
//     padding and the row count stays recoverable from its shape. Kernels
//     read that group with masked loads, which never touch memory past the
//     buffer.
//   * Padding bits beyond K are zero in every plane. A zero nonzero bit
//     makes the padded positions contribute nothing to a dot product.
//
// Dot product of two ternary rows over one word:
//   m = nzA & nzB, t = m & (sA ^ sB), dot = popcount(m) - 2 * popcount(t).
#pragma once

#include <cstdint>
#include <string>

// The AVX2 and AVX-512 kernels need x86 and the GCC/Clang target attribute.
// Other builds, or builds with MMTVMAMBA_NO_X86_KERNELS defined, contain
// only the portable kernels.
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__)) && \
    !defined(MMTVMAMBA_NO_X86_KERNELS)
#define MMTVMAMBA_X86_KERNELS 1
#else
#define MMTVMAMBA_X86_KERNELS 0
#endif

namespace mmtvmamba {

constexpr int64_t kGroupRows = 16;
constexpr int64_t kWordBits = 32;
constexpr int kTernaryPlanes = 2;
constexpr int kQuinaryPlanes = 4;

// Return the number of 32-bit words per plane for K elements.
inline int64_t words_per_plane(int64_t k) {
  return (k + kWordBits - 1) / kWordBits;
}

// Return the offset, in words, of group g of a packed matrix.
inline int64_t group_offset(int64_t g, int64_t planes, int64_t kd) {
  return g * kGroupRows * planes * kd;
}

// Return the number of rows (vector lanes) stored in group g.
inline int64_t group_lanes(int64_t g, int64_t rows) {
  const int64_t left = rows - g * kGroupRows;
  return left < kGroupRows ? left : kGroupRows;
}

// Operands, sizes and epilogue of one matmul call. The weight operand w
// always has 2 planes. The activation operand a has 2 (ternary) or 4
// (five-level) planes, and the products of both halves go into one sum.
struct MatmulArgs {
  const int32_t* a = nullptr;
  const int32_t* w = nullptr;
  int64_t m = 0;
  int64_t n = 0;
  int64_t kd = 0;
  int a_planes = kTernaryPlanes;

  // Exactly one of out_int and out_float is set.
  int32_t* out_int = nullptr;
  float* out_float = nullptr;

  // Float epilogue: out = acc * (row_scale[m] * col_scale[n]) + bias[n].
  // row_scale and bias may be null; col_scale has n entries, or one entry
  // when col_scale_per_column is false.
  const float* row_scale = nullptr;
  const float* col_scale = nullptr;
  bool col_scale_per_column = false;
  const float* bias = nullptr;

  // Words [k_begin, k_end) of K enter the dot products. A call split into
  // K segments runs once per segment: every segment multiplies its dot
  // products by its own k_scale, and all but the first add their result to
  // the float output (accumulate), so only the first adds the bias.
  int64_t k_begin = 0;
  int64_t k_end = 0;
  float k_scale = 1.0f;
  bool accumulate = false;

  // Kernels that keep float accumulators in registers take all segments in
  // one call instead: segment s covers words [seg_begin[s], seg_begin[s+1])
  // with scale seg_scale[s]. num_segments is 0 when the call has no
  // K scales.
  const int64_t* seg_begin = nullptr;
  const float* seg_scale = nullptr;
  int64_t num_segments = 0;
};

// Element-wise activation of a float output.
enum class Activation { kNone = 0, kGelu = 1 };

// Post-operations on a float output after all K segments have been summed:
// out = activation(out + residual). GELU is the exact (erf) form of
// torch.nn.GELU.
struct Epilogue {
  const float* residual = nullptr;  // (m, n) with the strides below, or null
  int64_t residual_row_stride = 0;
  int64_t residual_col_stride = 1;
  Activation activation = Activation::kNone;

  bool active() const {
    return residual != nullptr || activation != Activation::kNone;
  }
};

// Apply epilogue to rows [m0, m1) and columns [n0, n1) of the row-major
// float output out with n columns. The AVX-512 version exists only where it
// is compiled.
void epilogue_portable(const Epilogue& epilogue, float* out, int64_t n,
                       int64_t m0, int64_t m1, int64_t n0, int64_t n1);
void epilogue_avx512(const Epilogue& epilogue, float* out, int64_t n,
                     int64_t m0, int64_t m1, int64_t n0, int64_t n1);

// Whether block_avx512 applies the K segments of args itself.
constexpr bool kAvx512Segments = true;

// Compute output rows [m0, m1) and columns [n0, n1) of args. n0 must be a
// multiple of kGroupRows. Each kernel exists only where it is compiled.
void block_portable(const MatmulArgs& args, int64_t m0, int64_t m1,
                    int64_t n0, int64_t n1);
void block_avx2(const MatmulArgs& args, int64_t m0, int64_t m1, int64_t n0,
                int64_t n1);
void block_avx512(const MatmulArgs& args, int64_t m0, int64_t m1,
                  int64_t n0, int64_t n1);

// Pack rows [r0, r1) of contiguous int8 codes (rows x k) into out, which
// has the layout above with `planes` planes. Codes must already be valid.
void pack_rows_portable(const int8_t* codes, int64_t rows, int64_t k,
                        int planes, int64_t r0, int64_t r1, int32_t* out);
void pack_rows_avx2(const int8_t* codes, int64_t rows, int64_t k, int planes,
                    int64_t r0, int64_t r1, int32_t* out);

// Instruction-set paths of the kernels.
enum class Isa { kPortable = 0, kAvx2 = 1, kAvx512 = 2 };

// Return the path used by the next call. The first call reads the
// MMTVMAMBA_TERNARY_ISA environment variable.
Isa active_isa();

// Select a path by name ("auto", "avx512", "avx2" or "portable") and return
// the name of the path now active. Raises if the CPU lacks the path.
std::string select_isa(const std::string& name);

// Return the name of a path.
std::string isa_name(Isa isa);

// Return whether this CPU and build can run a path.
bool isa_supported(Isa isa);

}  // namespace mmtvmamba
