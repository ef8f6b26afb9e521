// Copyright (c) mmtvmamba contributors. All rights reserved.
//
// Portable cross selective scan kernel: for each direction, a sequential
// walk over the positions that updates every channel of the task with the
// scalar std::exp and std::log1p. It is the reference that the AVX-512
// kernel is tested against and the only path on other CPUs.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "cross_selective_scan.h"
#include "selective_scan.h"

namespace mmtvmamba {

namespace {

// Operands of one direction of one task, resolved from CrossScanArgs.
struct DirectionOperands {
  const float* u;
  const float* delta;
  const float* b;
  const float* c;
  float* y;
  CrossWalk u_walk, delta_walk, b_walk, c_walk, y_walk;
  const float* a;           // row k * D + c0 of A
  const float* d;           // entry k * D + c0 of D, or null
  const float* delta_bias;  // entry k * D + c0 of delta_bias, or null
};

DirectionOperands direction_operands(const CrossScanArgs& args, int k,
                                     int64_t batch, int64_t c0) {
  const int64_t h = args.height;
  const int64_t w = args.width;
  const int64_t* us = args.u_strides;
  const int64_t* ds = args.delta_strides[k];
  const int64_t* bs = args.b_strides;
  const int64_t* cs = args.c_strides;
  const int64_t row = k * args.channels + c0;
  return {args.u + batch * us[0] + c0,
          args.delta[k] + batch * ds[0] + c0,
          args.b + batch * bs[0] + k * bs[3],
          args.c + batch * cs[0] + k * cs[3],
          args.y + batch * h * w * args.channels + c0,
          cross_walk(k, h, w, us[1], us[2]),
          cross_walk(k, h, w, ds[1], ds[2]),
          cross_walk(k, h, w, bs[1], bs[2]),
          cross_walk(k, h, w, cs[1], cs[2]),
          cross_walk(k, h, w, w * args.channels, args.channels),
          args.a + row * args.states,
          args.d != nullptr ? args.d + row : nullptr,
          args.delta_bias != nullptr ? args.delta_bias + row : nullptr};
}

// Update channels [0, count) of the operands at one position: u, delta and
// y point at channel c0 there, b and c at state 0.
void scan_position(const CrossScanArgs& args, const DirectionOperands& op,
                   int64_t count, const float* u, const float* delta,
                   const float* b, const float* c, float* y, bool first,
                   float* state) {
  const int64_t states = args.states;
  const int64_t b_state = args.b_strides[4];
  const int64_t c_state = args.c_strides[4];
  for (int64_t i = 0; i < count; ++i) {
    float dt = delta[i] + (op.delta_bias != nullptr ? op.delta_bias[i] : 0.0f);
    if (args.delta_softplus) {
      dt = softplus_scalar(dt);
    }
    const float du = dt * u[i];

    float out = (op.d != nullptr ? op.d[i] : 0.0f) * u[i];
    float* h = state + i * states;
    for (int64_t n = 0; n < states; ++n) {
      h[n] = std::exp(dt * op.a[i * states + n]) * h[n] + du * b[n * b_state];
      out += c[n * c_state] * h[n];
    }
    y[i] = first ? out : y[i] + out;
  }
}

// Run direction k over channels [c0, c0 + count) of one batch item.
void scan_direction(const CrossScanArgs& args, int k, int64_t batch,
                    int64_t c0, int64_t count, float* state) {
  const DirectionOperands op = direction_operands(args, k, batch, c0);
  const bool columns = k % 2 == 1;
  const int64_t outer_count = columns ? args.width : args.height;
  const int64_t inner_count = columns ? args.height : args.width;
  for (int64_t i = 0; i < count * args.states; ++i) {
    state[i] = 0.0f;
  }

  for (int64_t o = 0; o < outer_count; ++o) {
    for (int64_t i = 0; i < inner_count; ++i) {
      const auto at = [o, i](const CrossWalk& walk) {
        return walk.start + o * walk.outer + i * walk.inner;
      };
      scan_position(args, op, count, op.u + at(op.u_walk),
                    op.delta + at(op.delta_walk), op.b + at(op.b_walk),
                    op.c + at(op.c_walk), op.y + at(op.y_walk), k == 0,
                    state);
    }
  }
}

}  // namespace

void cross_scan_tasks_portable(const CrossScanArgs& args, int64_t t0,
                               int64_t t1) {
  const int64_t blocks = cross_scan_blocks(args);
  std::vector<float> state(args.task_channels * args.states);
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t batch = t / blocks;
    const int64_t c0 = (t % blocks) * args.task_channels;
    const int64_t count = std::min(args.task_channels, args.channels - c0);
    for (int k = 0; k < kCrossDirections; ++k) {
      scan_direction(args, k, batch, c0, count, state.data());
    }
  }
}

}  // namespace mmtvmamba
