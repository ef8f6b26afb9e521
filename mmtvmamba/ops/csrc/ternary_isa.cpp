// Copyright (c) mmtvmamba contributors. All rights reserved.
//
// Run-time choice of the instruction-set path of the ternary kernels.
#include <atomic>
#include <cstdlib>
#include <string>

#include <c10/util/Exception.h>

#include "ternary.h"

namespace mmtvmamba {

namespace {

// -1 means "not chosen yet"; otherwise the value of an Isa.
std::atomic<int> g_isa{-1};

Isa best_isa() {
  if (isa_supported(Isa::kAvx512)) {
    return Isa::kAvx512;
  }
  if (isa_supported(Isa::kAvx2)) {
    return Isa::kAvx2;
  }
  return Isa::kPortable;
}

std::string supported_names() {
  std::string names = "portable";
  if (isa_supported(Isa::kAvx2)) {
    names = "avx2, " + names;
  }
  if (isa_supported(Isa::kAvx512)) {
    names = "avx512, " + names;
  }
  return names;
}

Isa parse_isa(const std::string& name) {
  if (name.empty() || name == "auto") {
    return best_isa();
  }
  Isa isa = Isa::kPortable;
  if (name == "avx512") {
    isa = Isa::kAvx512;
  } else if (name == "avx2") {
    isa = Isa::kAvx2;
  } else {
    TORCH_CHECK_VALUE(name == "portable", "invalid ternary kernel path '",
                      name,
                      "'; expected one of: auto, avx512, avx2, portable "
                      "(set MMTVMAMBA_TERNARY_ISA or call set_isa)");
  }
  TORCH_CHECK(isa_supported(isa), "the ternary kernel path '", name,
              "' was requested, but this CPU or build does not support it; "
              "use one of: ",
              supported_names(), ", or 'auto'");
  return isa;
}

}  // namespace

bool isa_supported(Isa isa) {
  if (isa == Isa::kPortable) {
    return true;
  }
#if MMTVMAMBA_X86_KERNELS
  __builtin_cpu_init();
  if (isa == Isa::kAvx2) {
    return __builtin_cpu_supports("avx2");
  }
  // libgcc reports AVX-512 features only when the OS saves zmm state.
  return __builtin_cpu_supports("avx512f") &&
         __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vpopcntdq");
#else
  return false;
#endif
}

std::string isa_name(Isa isa) {
  switch (isa) {
    case Isa::kAvx512:
      return "avx512";
    case Isa::kAvx2:
      return "avx2";
    default:
      return "portable";
  }
}

Isa active_isa() {
  int value = g_isa.load(std::memory_order_relaxed);
  if (value < 0) {
    const char* env = std::getenv("MMTVMAMBA_TERNARY_ISA");
    value = static_cast<int>(parse_isa(env == nullptr ? "" : env));
    g_isa.store(value, std::memory_order_relaxed);
  }
  return static_cast<Isa>(value);
}

std::string select_isa(const std::string& name) {
  const Isa isa = parse_isa(name);
  g_isa.store(static_cast<int>(isa), std::memory_order_relaxed);
  return isa_name(isa);
}

}  // namespace mmtvmamba
