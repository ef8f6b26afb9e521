// Copyright (c) mmtvmamba contributors. All rights reserved.
//
// Input validation, threading and kernel-path selection of the fused
// selective scan op. The recurrence is documented in selective_scan.h.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/Optional.h>

#include "selective_scan.h"
#include "selective_scan_op.h"

namespace mmtvmamba {

namespace {

constexpr const char* kOp = "selective_scan_fwd";

// Rows are split into tasks of at least this many (time step, state)
// updates, because waking the thread pool for less work likely costs more
// than it saves (an estimate, not tuned per CPU).
constexpr int64_t kTaskUpdates = 1 << 15;

// The value of the active ScanIsa, or -1 before the first choice.
std::atomic<int> g_scan_isa{-1};

bool avx512_supported() {
#if MMTVMAMBA_SCAN_AVX512
  __builtin_cpu_init();
  // libgcc reports AVX-512 features only when the OS saves zmm state.
  return __builtin_cpu_supports("avx512f");
#else
  return false;
#endif
}

ScanIsa parse_scan_isa(const std::string& name) {
  if (name.empty() || name == "auto") {
    return avx512_supported() ? ScanIsa::kAvx512 : ScanIsa::kPortable;
  }
  if (name == "portable") {
    return ScanIsa::kPortable;
  }
  TORCH_CHECK_VALUE(name == "avx512", "invalid selective scan kernel path '",
                    name,
                    "'; expected one of: auto, avx512, portable (set "
                    "MMTVMAMBA_SCAN_ISA or call set_scan_isa)");
  TORCH_CHECK(avx512_supported(),
              "the selective scan kernel path 'avx512' was requested, but "
              "this CPU or build does not support AVX-512F; use 'portable' "
              "or 'auto'");
  return ScanIsa::kAvx512;
}

void check_float_cpu(const at::Tensor& tensor, const char* name) {
  TORCH_CHECK(tensor.device().is_cpu(), kOp, ": ", name,
              " must be a CPU tensor, but it is on ", tensor.device(),
              "; move it with .cpu()");
  TORCH_CHECK_TYPE(at::isFloatingType(tensor.scalar_type()), kOp, ": ", name,
                   " must be a floating-point tensor, but got ",
                   tensor.scalar_type(), "; convert it with .float()");
}

void check_channel_vector(const c10::optional<at::Tensor>& tensor,
                          const char* name, int64_t channels) {
  if (!tensor.has_value()) {
    return;
  }
  check_float_cpu(*tensor, name);
  TORCH_CHECK_VALUE(tensor->dim() == 1 && tensor->size(0) == channels, kOp,
                    ": ", name, " must have shape (", channels,
                    ") = (D,), but got shape ", tensor->sizes());
}

// Check every operand and return the number of groups G of B and C.
int64_t check_inputs(const at::Tensor& u, const at::Tensor& delta,
                     const at::Tensor& A, const at::Tensor& B,
                     const at::Tensor& C,
                     const c10::optional<at::Tensor>& D,
                     const c10::optional<at::Tensor>& delta_bias) {
  check_float_cpu(u, "u");
  check_float_cpu(delta, "delta");
  check_float_cpu(A, "A");
  check_float_cpu(B, "B");
  check_float_cpu(C, "C");

  TORCH_CHECK_VALUE(u.dim() == 3, kOp,
                    ": u must be 3-D (batch, D, L), but got shape ",
                    u.sizes());
  TORCH_CHECK_VALUE(delta.sizes() == u.sizes(), kOp,
                    ": delta must have the shape of u ", u.sizes(),
                    ", but got shape ", delta.sizes());
  const int64_t batch = u.size(0);
  const int64_t channels = u.size(1);
  const int64_t length = u.size(2);

  TORCH_CHECK_VALUE(A.dim() == 2 && A.size(0) == channels && A.size(1) > 0,
                    kOp, ": A must have shape (D, N) = (", channels,
                    ", N) with N >= 1, but got shape ", A.sizes());
  const int64_t states = A.size(1);

  TORCH_CHECK_VALUE(
      B.dim() == 4 && B.size(0) == batch && B.size(1) > 0 &&
          B.size(2) == states && B.size(3) == length,
      kOp, ": B must have shape (batch, G, N, L) = (", batch, ", G, ", states,
      ", ", length, ") with G >= 1, but got shape ", B.sizes());
  TORCH_CHECK_VALUE(C.sizes() == B.sizes(), kOp,
                    ": C must have the shape of B ", B.sizes(),
                    ", but got shape ", C.sizes());
  const int64_t groups = B.size(1);
  TORCH_CHECK_VALUE(channels % groups == 0, kOp, ": ", channels,
                    " channels (D) cannot be split into ", groups,
                    " groups (G) of B and C; G must divide D");

  check_channel_vector(D, "D", channels);
  check_channel_vector(delta_bias, "delta_bias", channels);
  return groups;
}

// Return tensor as a contiguous float32 tensor, copying only if needed.
at::Tensor as_float(const at::Tensor& tensor) {
  return tensor.to(at::kFloat).contiguous();
}

c10::optional<at::Tensor> as_float(const c10::optional<at::Tensor>& tensor) {
  if (!tensor.has_value()) {
    return c10::nullopt;
  }
  return as_float(*tensor);
}

}  // namespace

ScanIsa active_scan_isa() {
  int value = g_scan_isa.load(std::memory_order_relaxed);
  if (value < 0) {
    const char* env = std::getenv("MMTVMAMBA_SCAN_ISA");
    value = static_cast<int>(parse_scan_isa(env == nullptr ? "" : env));
    g_scan_isa.store(value, std::memory_order_relaxed);
  }
  return static_cast<ScanIsa>(value);
}

std::string select_scan_isa(const std::string& name) {
  const ScanIsa isa = parse_scan_isa(name);
  g_scan_isa.store(static_cast<int>(isa), std::memory_order_relaxed);
  return scan_isa_name(isa);
}

std::string scan_isa_name(ScanIsa isa) {
  return isa == ScanIsa::kAvx512 ? "avx512" : "portable";
}

std::vector<std::string> supported_scan_isas() {
  std::vector<std::string> names;
  if (avx512_supported()) {
    names.push_back(scan_isa_name(ScanIsa::kAvx512));
  }
  names.push_back(scan_isa_name(ScanIsa::kPortable));
  return names;
}

at::Tensor selective_scan_fwd(const at::Tensor& u, const at::Tensor& delta,
                              const at::Tensor& A, const at::Tensor& B,
                              const at::Tensor& C,
                              const c10::optional<at::Tensor>& D,
                              const c10::optional<at::Tensor>& delta_bias,
                              bool delta_softplus) {
  const int64_t groups = check_inputs(u, delta, A, B, C, D, delta_bias);
  const at::Tensor u_f = as_float(u);
  const at::Tensor delta_f = as_float(delta);
  const at::Tensor a_f = as_float(A);
  const at::Tensor b_f = as_float(B);
  const at::Tensor c_f = as_float(C);
  const c10::optional<at::Tensor> d_f = as_float(D);
  const c10::optional<at::Tensor> bias_f = as_float(delta_bias);

  at::Tensor y = at::empty(u.sizes(), u_f.options());
  if (y.numel() == 0) {
    return y;
  }

  ScanArgs args;
  args.u = u_f.data_ptr<float>();
  args.delta = delta_f.data_ptr<float>();
  args.a = a_f.data_ptr<float>();
  args.b = b_f.data_ptr<float>();
  args.c = c_f.data_ptr<float>();
  args.d = d_f.has_value() ? d_f->data_ptr<float>() : nullptr;
  args.delta_bias = bias_f.has_value() ? bias_f->data_ptr<float>() : nullptr;
  args.y = y.data_ptr<float>();
  args.channels = u.size(1);
  args.length = u.size(2);
  args.states = A.size(1);
  args.groups = groups;
  args.delta_softplus = delta_softplus;

  const bool simd = active_scan_isa() == ScanIsa::kAvx512;
  const int64_t rows = u.size(0) * u.size(1);
  const int64_t grain =
      std::max<int64_t>(1, kTaskUpdates / (args.length * args.states));
  at::parallel_for(0, rows, grain, [&](int64_t r0, int64_t r1) {
    if (simd) {
      scan_rows_avx512(args, r0, r1);
    } else {
      scan_rows_portable(args, r0, r1);
    }
  });
  return y;
}

}  // namespace mmtvmamba
