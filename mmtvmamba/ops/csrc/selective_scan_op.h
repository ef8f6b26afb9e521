// Copyright (c) mmtvmamba contributors. All rights reserved.
//
// CPU implementation of the mmtvmamba::selective_scan_fwd op. The schema is
// registered in ext.cpp and the recurrence is documented in
// selective_scan.h.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Optional.h>

namespace mmtvmamba {

// Compute the selective scan forward in float32 and return y of shape
// (batch, D, L). Floating-point inputs of other dtypes are converted to
// float32 and any strides are accepted.
at::Tensor selective_scan_fwd(const at::Tensor& u, const at::Tensor& delta,
                              const at::Tensor& A, const at::Tensor& B,
                              const at::Tensor& C,
                              const c10::optional<at::Tensor>& D,
                              const c10::optional<at::Tensor>& delta_bias,
                              bool delta_softplus);

}  // namespace mmtvmamba
