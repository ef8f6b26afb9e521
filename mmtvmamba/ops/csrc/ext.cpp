// Copyright (c) mmtvmamba contributors. All rights reserved.
//
// Registration of the torch.ops.mmtvmamba ops. The registrations run when
// the shared library is loaded, so `import mmtvmamba._ext` makes the ops
// available; the Python module itself is empty. Fake (meta) kernels are
// registered from Python in mmtvmamba/ops/ternary_fake.py,
// mmtvmamba/ops/selective_scan_op.py and
// mmtvmamba/ops/cross_selective_scan_op.py.
#include <string>
#include <vector>

#include <torch/csrc/autograd/autograd_not_implemented_fallback.h>
#include <torch/extension.h>
#include <torch/library.h>

#include "cross_selective_scan_op.h"
#include "selective_scan.h"
#include "selective_scan_op.h"
#include "ternary.h"
#include "ternary_ops.h"

namespace mmtvmamba {

namespace {

std::string ternary_isa() {
  return isa_name(active_isa());
}

std::string set_ternary_isa(const std::string& name) {
  return select_isa(name);
}

std::vector<std::string> ternary_isas() {
  std::vector<std::string> names;
  for (Isa isa : {Isa::kAvx512, Isa::kAvx2, Isa::kPortable}) {
    if (isa_supported(isa)) {
      names.push_back(isa_name(isa));
    }
  }
  return names;
}

std::string selective_scan_isa() {
  return scan_isa_name(active_scan_isa());
}

std::string set_selective_scan_isa(const std::string& name) {
  return select_scan_isa(name);
}

std::vector<std::string> selective_scan_isas() {
  return supported_scan_isas();
}

}  // namespace

}  // namespace mmtvmamba

TORCH_LIBRARY(mmtvmamba, m) {
  m.def("pack_ternary(Tensor codes, bool check=False) -> Tensor");
  m.def("pack_quinary(Tensor codes, bool check=False) -> Tensor");
  m.def("unpack_ternary(Tensor packed, int k) -> Tensor");
  m.def("unpack_quinary(Tensor packed, int k) -> Tensor");
  m.def("ternary_mm_int(Tensor a_packed, Tensor w_packed, int k) -> Tensor");
  m.def("quinary_mm_int(Tensor a_packed, Tensor w_packed, int k) -> Tensor");
  m.def(
      "ternary_mm(Tensor a_packed, Tensor w_packed, int k, "
      "Tensor? row_scale, Tensor col_scale, Tensor? bias=None, "
      "Tensor? k_scale=None, Tensor? residual=None, "
      "str activation='none') -> Tensor");
  m.def(
      "quinary_mm(Tensor a_packed, Tensor w_packed, int k, "
      "Tensor? row_scale, Tensor col_scale, Tensor? bias=None, "
      "Tensor? k_scale=None, Tensor? residual=None, "
      "str activation='none') -> Tensor");
  m.def(
      "q2t_pack(Tensor x, Tensor index, Tensor alpha, int radius, "
      "float eps, Tensor? norm_weight=None, Tensor? norm_bias=None, "
      "float norm_eps=1e-5) -> (Tensor, Tensor)");
  m.def(
      "q2t_linear(Tensor x, Tensor index, Tensor alpha, int radius, "
      "float eps, Tensor w_packed, Tensor col_scale, Tensor? bias=None, "
      "Tensor? k_scale=None, Tensor? residual=None, "
      "str activation='none', Tensor? norm_weight=None, "
      "Tensor? norm_bias=None, float norm_eps=1e-5) -> Tensor");

  // Kernel-path selection; these take no tensors, so they are registered
  // as catch-all kernels.
  m.def("ternary_isa() -> str", &mmtvmamba::ternary_isa);
  m.def("set_ternary_isa(str name) -> str", &mmtvmamba::set_ternary_isa);
  m.def("ternary_isas() -> str[]", &mmtvmamba::ternary_isas);

  m.def(
      "selective_scan_fwd(Tensor u, Tensor delta, Tensor A, Tensor B, "
      "Tensor C, Tensor? D=None, Tensor? delta_bias=None, "
      "bool delta_softplus=False) -> Tensor");
  m.def(
      "cross_selective_scan_fwd(Tensor u, Tensor[] deltas, Tensor A, "
      "Tensor Bs, Tensor Cs, Tensor? Ds=None, Tensor? delta_bias=None, "
      "bool delta_softplus=False) -> Tensor");
  m.def("selective_scan_isa() -> str", &mmtvmamba::selective_scan_isa);
  m.def("set_selective_scan_isa(str name) -> str",
        &mmtvmamba::set_selective_scan_isa);
  m.def("selective_scan_isas() -> str[]", &mmtvmamba::selective_scan_isas);
}

TORCH_LIBRARY_IMPL(mmtvmamba, CPU, m) {
  m.impl("pack_ternary", &mmtvmamba::pack_ternary);
  m.impl("pack_quinary", &mmtvmamba::pack_quinary);
  m.impl("unpack_ternary", &mmtvmamba::unpack_ternary);
  m.impl("unpack_quinary", &mmtvmamba::unpack_quinary);
  m.impl("ternary_mm_int", &mmtvmamba::ternary_mm_int);
  m.impl("quinary_mm_int", &mmtvmamba::quinary_mm_int);
  m.impl("ternary_mm", &mmtvmamba::ternary_mm);
  m.impl("quinary_mm", &mmtvmamba::quinary_mm);
  m.impl("q2t_pack", &mmtvmamba::q2t_pack);
  m.impl("q2t_linear", &mmtvmamba::q2t_linear);
  m.impl("selective_scan_fwd", &mmtvmamba::selective_scan_fwd);
  m.impl("cross_selective_scan_fwd", &mmtvmamba::cross_selective_scan_fwd);
}

// The selective scan ops have no backward. This kernel lets the forward
// run and makes a later backward through its output raise a "not
// implemented" error, instead of silently treating the output as a
// constant.
TORCH_LIBRARY_IMPL(mmtvmamba, Autograd, m) {
  m.impl("selective_scan_fwd",
         torch::autograd::autogradNotImplementedFallback());
  m.impl("cross_selective_scan_fwd",
         torch::autograd::autogradNotImplementedFallback());
}

// The module has no Python functions; importing it loads the library and
// runs the registrations above.
PYBIND11_MODULE(TORCH_EXTENSION_NAME, /* module */) {}
