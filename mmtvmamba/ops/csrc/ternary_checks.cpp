// Copyright (c) mmtvmamba contributors. All rights reserved.
//
// Input checks of the matmul operands and epilogue, as ternary_checks.h
// describes them.
#include <string>

#include <ATen/ATen.h>
#include <c10/util/Optional.h>

#include "ternary_checks.h"

namespace mmtvmamba {

namespace {

Activation parse_activation(const std::string& name, const char* op) {
  if (name == "gelu") {
    return Activation::kGelu;
  }
  TORCH_CHECK_VALUE(name == "none", op, ": invalid activation '", name,
                    "'; expected 'none' or 'gelu'");
  return Activation::kNone;
}

}  // namespace

void check_cpu(const at::Tensor& tensor, const char* op, const char* name) {
  TORCH_CHECK(tensor.device().is_cpu(), op, ": ", name,
              " must be a CPU tensor, but it is on ", tensor.device(),
              "; move it with .cpu()");
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

}  // namespace mmtvmamba
