// Copyright (c) mmtvmamba contributors. All rights reserved.
//
// Fused CPU forward of the selective scan (the S6 recurrence). For every
// row r = (batch b, channel d) with group g = d / (channels / groups):
//
//   dt_t  = delta[b, d, t] + delta_bias[d]
//   dt_t  = softplus(dt_t)                  (if delta_softplus)
//   h_t,n = exp(dt_t * A[d, n]) * h_{t-1},n + dt_t * u[b, d, t] * B[b, g, n, t]
//   y_t   = sum_n C[b, g, n, t] * h_t,n + D[d] * u[b, d, t],  with h_{-1} = 0
//
// softplus(x) is x for x > 20 and log1p(exp(x)) otherwise, as in PyTorch.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

// The AVX-512 kernel needs x86 and the GCC/Clang target attribute. Other
// builds, or builds with MMTVMAMBA_NO_X86_KERNELS defined, contain only the
// portable kernel.
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__)) && \
    !defined(MMTVMAMBA_NO_X86_KERNELS)
#define MMTVMAMBA_SCAN_AVX512 1
#else
#define MMTVMAMBA_SCAN_AVX512 0
#endif

namespace mmtvmamba {

// Contiguous float32 operands of one call, in the layouts listed above.
struct ScanArgs {
  const float* u = nullptr;           // (batch, channels, length)
  const float* delta = nullptr;       // (batch, channels, length)
  const float* a = nullptr;           // (channels, states)
  const float* b = nullptr;           // (batch, groups, states, length)
  const float* c = nullptr;           // (batch, groups, states, length)
  const float* d = nullptr;           // (channels), or null for no skip term
  const float* delta_bias = nullptr;  // (channels), or null for no bias
  float* y = nullptr;                 // (batch, channels, length)
  int64_t channels = 0;
  int64_t length = 0;
  int64_t states = 0;
  int64_t groups = 0;
  bool delta_softplus = false;
};

// Operands of one row, resolved from ScanArgs by scan_row().
struct ScanRow {
  const float* u;
  const float* delta;
  const float* a;  // states entries
  const float* b;  // states rows of length floats
  const float* c;  // states rows of length floats
  float* y;
  float d;
  float delta_bias;
};

// Return the operands of row r = b * channels + d of args.
inline ScanRow scan_row(const ScanArgs& args, int64_t r) {
  const int64_t channel = r % args.channels;
  const int64_t batch = r / args.channels;
  const int64_t group = channel / (args.channels / args.groups);
  const int64_t bc_offset =
      (batch * args.groups + group) * args.states * args.length;
  return {args.u + r * args.length,
          args.delta + r * args.length,
          args.a + channel * args.states,
          args.b + bc_offset,
          args.c + bc_offset,
          args.y + r * args.length,
          args.d != nullptr ? args.d[channel] : 0.0f,
          args.delta_bias != nullptr ? args.delta_bias[channel] : 0.0f};
}

// PyTorch's softplus with beta 1 and threshold 20, for the portable
// kernels.
inline float softplus_scalar(float x) {
  return x > 20.0f ? x : std::log1p(std::exp(x));
}

// Compute rows [r0, r1) of args. The AVX-512 kernel exists only where it is
// compiled, and callers use it only while active_scan_isa() is kAvx512.
void scan_rows_portable(const ScanArgs& args, int64_t r0, int64_t r1);
void scan_rows_avx512(const ScanArgs& args, int64_t r0, int64_t r1);

// Instruction-set paths of the selective scan kernels.
enum class ScanIsa { kPortable = 0, kAvx512 = 1 };

// Return the path used by the next call. The first call reads the
// MMTVMAMBA_SCAN_ISA environment variable.
ScanIsa active_scan_isa();

// Select a path by name ("auto", "avx512" or "portable") and return the name
// of the path now active. Raises if the CPU or build lacks the path.
std::string select_scan_isa(const std::string& name);

// Return the name of a path.
std::string scan_isa_name(ScanIsa isa);

// Return the names of the paths this CPU and build can run, fastest first.
std::vector<std::string> supported_scan_isas();

}  // namespace mmtvmamba
