// Copyright (c) mmtvmamba contributors. All rights reserved.
//
// CPU implementation of the mmtvmamba::cross_selective_scan_fwd op. The
// schema is registered in ext.cpp and the computation is documented in
// cross_selective_scan.h.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Optional.h>

namespace mmtvmamba {

// Compute the four-direction selective scan of the channels-last feature
// map u (batch, H, W, D) and return the merged float32 output of the same
// shape, contiguous. deltas contains one (batch, H, W, D) tensor per
// direction, Bs and Cs are (batch, H, W, 4, N), A is (4 * D, N), and Ds and
// delta_bias are (4 * D). Floating-point inputs of other dtypes are
// converted to float32 and any strides are accepted; u and deltas whose
// channels are not contiguous are copied.
at::Tensor cross_selective_scan_fwd(const at::Tensor& u,
                                    at::TensorList deltas,
                                    const at::Tensor& A, const at::Tensor& Bs,
                                    const at::Tensor& Cs,
                                    const c10::optional<at::Tensor>& Ds,
                                    const c10::optional<at::Tensor>& delta_bias,
                                    bool delta_softplus);

}  // namespace mmtvmamba
