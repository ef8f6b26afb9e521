// Copyright (c) mmtvmamba contributors. All rights reserved.
//
// Portable selective scan kernel: a sequential loop over time per row with
// the scalar std::exp and std::log1p. It is the reference that the AVX-512
// kernel is tested against and the only path on other CPUs.
//
// NOTE: this path ran only 0.9 to 1.7 times as fast as the chunked PyTorch
// scan on the VMamba-T stage shapes (AMD EPYC Zen 4, 1 and 2 threads). So
// CPUs without AVX-512, AVX2-only ones included, gain little from the op.
#include <cmath>
#include <cstdint>
#include <vector>

#include "selective_scan.h"

namespace mmtvmamba {

namespace {

void scan_row_portable(const ScanRow& row, int64_t length, int64_t states,
                       bool delta_softplus, float* state) {
  for (int64_t n = 0; n < states; ++n) {
    state[n] = 0.0f;
  }

  for (int64_t t = 0; t < length; ++t) {
    float dt = row.delta[t] + row.delta_bias;
    if (delta_softplus) {
      dt = softplus_scalar(dt);
    }
    const float du = dt * row.u[t];

    float out = row.d * row.u[t];
    for (int64_t n = 0; n < states; ++n) {
      const int64_t i = n * length + t;
      state[n] = std::exp(dt * row.a[n]) * state[n] + du * row.b[i];
      out += row.c[i] * state[n];
    }
    row.y[t] = out;
  }
}

}  // namespace

void scan_rows_portable(const ScanArgs& args, int64_t r0, int64_t r1) {
  std::vector<float> state(args.states);
  for (int64_t r = r0; r < r1; ++r) {
    scan_row_portable(scan_row(args, r), args.length, args.states,
                      args.delta_softplus, state.data());
  }
}

}  // namespace mmtvmamba
