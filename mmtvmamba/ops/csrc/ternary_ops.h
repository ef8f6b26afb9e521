// Copyright (c) mmtvmamba contributors. All rights reserved.
//
// CPU implementations of the mmtvmamba ternary ops. The schemas and the
// layout contract are documented where the ops are registered and in
// ternary.h.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Optional.h>

#include <string>
#include <tuple>

namespace mmtvmamba {

at::Tensor pack_ternary(const at::Tensor& codes, bool check);
at::Tensor pack_quinary(const at::Tensor& codes, bool check);
at::Tensor unpack_ternary(const at::Tensor& packed, int64_t k);
at::Tensor unpack_quinary(const at::Tensor& packed, int64_t k);

at::Tensor ternary_mm_int(const at::Tensor& a_packed,
                          const at::Tensor& w_packed, int64_t k);
at::Tensor quinary_mm_int(const at::Tensor& a_packed,
                          const at::Tensor& w_packed, int64_t k);

at::Tensor ternary_mm(const at::Tensor& a_packed, const at::Tensor& w_packed,
                      int64_t k, const c10::optional<at::Tensor>& row_scale,
                      const at::Tensor& col_scale,
                      const c10::optional<at::Tensor>& bias,
                      const c10::optional<at::Tensor>& k_scale,
                      const c10::optional<at::Tensor>& residual,
                      const std::string& activation);
at::Tensor quinary_mm(const at::Tensor& a_packed, const at::Tensor& w_packed,
                      int64_t k, const c10::optional<at::Tensor>& row_scale,
                      const at::Tensor& col_scale,
                      const c10::optional<at::Tensor>& bias,
                      const c10::optional<at::Tensor>& k_scale,
                      const c10::optional<at::Tensor>& residual,
                      const std::string& activation);

// Quantize x (batch, channels, length) with Q2T at the positions `index`
// and pack the codes. An index equal to `channels` marks padding. With
// norm_weight, every token first passes through a LayerNorm over the
// channels. Returns the packed codes of the batch * length tokens and their
// RMS.
std::tuple<at::Tensor, at::Tensor> q2t_pack(
    const at::Tensor& x, const at::Tensor& index, const at::Tensor& alpha,
    int64_t radius, double eps, const c10::optional<at::Tensor>& norm_weight,
    const c10::optional<at::Tensor>& norm_bias, double norm_eps);

// Quantize and pack x as q2t_pack does, then multiply the codes with
// w_packed as ternary_mm (radius 1) or quinary_mm (radius 2) does, with the
// token RMS as row_scale, in one parallel region. Returns the float32
// (batch * length, N) output, bitwise equal to that of the two ops.
at::Tensor q2t_linear(const at::Tensor& x, const at::Tensor& index,
                      const at::Tensor& alpha, int64_t radius, double eps,
                      const at::Tensor& w_packed, const at::Tensor& col_scale,
                      const c10::optional<at::Tensor>& bias,
                      const c10::optional<at::Tensor>& k_scale,
                      const c10::optional<at::Tensor>& residual,
                      const std::string& activation,
                      const c10::optional<at::Tensor>& norm_weight,
                      const c10::optional<at::Tensor>& norm_bias,
                      double norm_eps);

}  // namespace mmtvmamba
