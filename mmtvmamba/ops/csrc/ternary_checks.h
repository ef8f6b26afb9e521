// Copyright (c) mmtvmamba contributors. All rights reserved.
//
// Input checks of the matmul operands and epilogue, shared by the ternary
// matmul ops and q2t_linear. Every check raises with the op name, the
// invalid value and the fix.
#pragma once

#include <cstdint>
#include <string>

#include <ATen/ATen.h>
#include <c10/util/Optional.h>

#include "ternary.h"

namespace mmtvmamba {

// Dot products are bounded by 2 * K and are converted to float32, so K stays
// below 2^22 to keep them exact in int32 and in float32.
constexpr int64_t kMaxK = int64_t{1} << 22;

void check_cpu(const at::Tensor& tensor, const char* op, const char* name);

// Check that packed is a non-empty int32 tensor of `planes` planes of
// ceil(k / 32) words per row.
void check_packed(const at::Tensor& packed, int planes, int64_t k,
                  const char* op, const char* name);

// Check that an optional scale is a float32 CPU tensor of shape (size), or
// (1) when allow_one is true.
void check_scale(const c10::optional<at::Tensor>& tensor, const char* op,
                 const char* name, int64_t size, bool allow_one);

// Return the epilogue of a float matmul with m x n outputs. The residual
// tensor must outlive the call that uses the epilogue.
Epilogue make_epilogue(const c10::optional<at::Tensor>& residual,
                       const std::string& activation, int64_t m, int64_t n,
                       const char* op);

}  // namespace mmtvmamba
