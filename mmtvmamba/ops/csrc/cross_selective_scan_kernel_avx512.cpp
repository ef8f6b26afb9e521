// Copyright (c) mmtvmamba contributors. All rights reserved.
//
// AVX-512F cross selective scan kernel. Only functions marked with
// MMTVMAMBA_AVX512F use these instructions, so the library still loads on
// CPUs without them. The dispatcher calls cross_scan_tasks_avx512 only
// after a CPUID check.
//
// Each lane is one channel. Every direction of a task walks its positions
// one at a time and updates up to kMaxVectors vectors of 16 channels per
// step. The only dependency between steps is h = decay * h + drive, one
// FMA per vector and state. The time steps, softplus and decays of later
// positions do not depend on h, so the out-of-order core computes them
// while the FMA chains of earlier positions finish, and the interleaved
// vectors give it several independent chains.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "cross_selective_scan.h"

#if MMTVMAMBA_SCAN_AVX512

#include "scan_math_avx512.h"

namespace mmtvmamba {

namespace {

// Vectors of 16 channels that one pass over a direction updates per step.
constexpr int kMaxVectors = 4;

// Per-direction constants of up to kMaxVectors vectors of channels.
struct ChunkConstants {
  __mmask16 mask[kMaxVectors];
  __m512 d[kMaxVectors];
  __m512 delta_bias[kMaxVectors];
  // a[n * kMaxVectors * kLanes + lane]: A of state n, channel lane.
  const float* a;
};

// Pointers and walks of one direction, offset to the chunk's first channel.
struct ChunkWalk {
  const float* u;
  const float* delta;
  const float* b;
  const float* c;
  float* y;
  CrossWalk u_walk, delta_walk, b_walk, c_walk, y_walk;
  int64_t outer_count;
  int64_t inner_count;
  int64_t b_state;
  int64_t c_state;
};

ChunkWalk chunk_walk(const CrossScanArgs& args, int k, int64_t batch,
                     int64_t c0) {
  const int64_t h = args.height;
  const int64_t w = args.width;
  const int64_t* us = args.u_strides;
  const int64_t* ds = args.delta_strides[k];
  const int64_t* bs = args.b_strides;
  const int64_t* cs = args.c_strides;
  const bool columns = k % 2 == 1;
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
          columns ? w : h,
          columns ? h : w,
          bs[4],
          cs[4]};
}

// Fill the constants of direction k for channels [c0, c0 + count), with
// count <= kMaxVectors * kLanes. Lanes past count get zeros, so their decay
// is 1 and their drive 0, and they stay finite.
MMTVMAMBA_AVX512F ChunkConstants chunk_constants(const CrossScanArgs& args,
                                                 int k, int64_t c0,
                                                 int64_t count,
                                                 float* a_buffer) {
  ChunkConstants constants;
  const int64_t row = k * args.channels + c0;
  for (int v = 0; v < kMaxVectors; ++v) {
    const int64_t left = std::max<int64_t>(0, count - v * kLanes);
    const __mmask16 mask = tail_mask(left);
    constants.mask[v] = mask;
    constants.d[v] =
        args.d != nullptr
            ? _mm512_maskz_loadu_ps(mask, args.d + row + v * kLanes)
            : _mm512_setzero_ps();
    constants.delta_bias[v] =
        args.delta_bias != nullptr
            ? _mm512_maskz_loadu_ps(mask, args.delta_bias + row + v * kLanes)
            : _mm512_setzero_ps();
  }

  // A is (channels, states), so the channels of one state are strided.
  constexpr int64_t kWidth = kMaxVectors * kLanes;
  for (int64_t n = 0; n < args.states; ++n) {
    for (int64_t i = 0; i < kWidth; ++i) {
      a_buffer[n * kWidth + i] =
          i < count ? args.a[(row + i) * args.states + n] : 0.0f;
    }
  }
  constants.a = a_buffer;
  return constants;
}

// Run one direction over kVectors vectors of channels. With kOneState the
// states stay in registers, else they live in state (states x 64 floats).
template <int kVectors, bool kSoftplus, bool kOneState>
MMTVMAMBA_AVX512F void scan_chunk(const ChunkWalk& walk,
                                  const ChunkConstants& constants,
                                  int64_t states, bool first, float* state) {
  constexpr int64_t kWidth = kMaxVectors * kLanes;
  __m512 h[kVectors];
  for (int v = 0; v < kVectors; ++v) {
    h[v] = _mm512_setzero_ps();
  }
  for (int64_t i = 0; i < states * kWidth; ++i) {
    state[i] = 0.0f;
  }

  for (int64_t o = 0; o < walk.outer_count; ++o) {
    for (int64_t i = 0; i < walk.inner_count; ++i) {
      const auto at = [o, i](const CrossWalk& w) {
        return w.start + o * w.outer + i * w.inner;
      };
      const float* u = walk.u + at(walk.u_walk);
      const float* delta = walk.delta + at(walk.delta_walk);
      const float* b = walk.b + at(walk.b_walk);
      const float* c = walk.c + at(walk.c_walk);
      float* y = walk.y + at(walk.y_walk);

      __m512 dt[kVectors];
      __m512 du[kVectors];
      __m512 out[kVectors];
      for (int v = 0; v < kVectors; ++v) {
        const __mmask16 mask = constants.mask[v];
        dt[v] = _mm512_add_ps(_mm512_maskz_loadu_ps(mask, delta + v * kLanes),
                              constants.delta_bias[v]);
        if (kSoftplus) {
          dt[v] = softplus_ps(dt[v]);
        }
        const __m512 x = _mm512_maskz_loadu_ps(mask, u + v * kLanes);
        du[v] = _mm512_mul_ps(dt[v], x);
        out[v] = _mm512_mul_ps(constants.d[v], x);
      }

      for (int64_t n = 0; n < states; ++n) {
        const __m512 bn = _mm512_set1_ps(b[n * walk.b_state]);
        const __m512 cn = _mm512_set1_ps(c[n * walk.c_state]);
        const float* a = constants.a + n * kWidth;
        float* hn = state + n * kWidth;
        for (int v = 0; v < kVectors; ++v) {
          const __m512 decay = exp_ps(
              _mm512_mul_ps(dt[v], _mm512_loadu_ps(a + v * kLanes)));
          const __m512 drive = _mm512_mul_ps(du[v], bn);
          __m512 hv = kOneState ? h[v] : _mm512_loadu_ps(hn + v * kLanes);
          hv = _mm512_fmadd_ps(decay, hv, drive);
          if (kOneState) {
            h[v] = hv;
          } else {
            _mm512_storeu_ps(hn + v * kLanes, hv);
          }
          out[v] = _mm512_fmadd_ps(cn, hv, out[v]);
        }
      }

      for (int v = 0; v < kVectors; ++v) {
        const __mmask16 mask = constants.mask[v];
        const __m512 sum =
            first ? out[v]
                  : _mm512_add_ps(_mm512_maskz_loadu_ps(mask, y + v * kLanes),
                                  out[v]);
        _mm512_mask_storeu_ps(y + v * kLanes, mask, sum);
      }
    }
  }
}

template <int kVectors, bool kSoftplus>
MMTVMAMBA_AVX512F void scan_chunk_states(const ChunkWalk& walk,
                                         const ChunkConstants& constants,
                                         int64_t states, bool first,
                                         float* state) {
  if (states == 1) {
    scan_chunk<kVectors, kSoftplus, true>(walk, constants, states, first,
                                          state);
  } else {
    scan_chunk<kVectors, kSoftplus, false>(walk, constants, states, first,
                                           state);
  }
}

template <bool kSoftplus>
MMTVMAMBA_AVX512F void scan_chunk_vectors(int vectors, const ChunkWalk& walk,
                                          const ChunkConstants& constants,
                                          int64_t states, bool first,
                                          float* state) {
  switch (vectors) {
    case 1:
      scan_chunk_states<1, kSoftplus>(walk, constants, states, first, state);
      break;
    case 2:
      scan_chunk_states<2, kSoftplus>(walk, constants, states, first, state);
      break;
    case 3:
      scan_chunk_states<3, kSoftplus>(walk, constants, states, first, state);
      break;
    default:
      scan_chunk_states<4, kSoftplus>(walk, constants, states, first, state);
      break;
  }
}

// Run all four directions over channels [c0, c0 + count) of one batch
// item, count <= kMaxVectors * kLanes.
MMTVMAMBA_AVX512F void scan_channels(const CrossScanArgs& args, int64_t batch,
                                     int64_t c0, int64_t count,
                                     float* a_buffer, float* state) {
  const int vectors = static_cast<int>((count + kLanes - 1) / kLanes);
  for (int k = 0; k < kCrossDirections; ++k) {
    const ChunkConstants constants =
        chunk_constants(args, k, c0, count, a_buffer);
    const ChunkWalk walk = chunk_walk(args, k, batch, c0);
    if (args.delta_softplus) {
      scan_chunk_vectors<true>(vectors, walk, constants, args.states, k == 0,
                               state);
    } else {
      scan_chunk_vectors<false>(vectors, walk, constants, args.states, k == 0,
                                state);
    }
  }
}

}  // namespace

MMTVMAMBA_AVX512F void cross_scan_tasks_avx512(const CrossScanArgs& args,
                                               int64_t t0, int64_t t1) {
  constexpr int64_t kWidth = kMaxVectors * kLanes;
  const int64_t blocks = cross_scan_blocks(args);
  std::vector<float> a_buffer(args.states * kWidth);
  std::vector<float> state(args.states * kWidth);
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t batch = t / blocks;
    const int64_t block_start = (t % blocks) * args.task_channels;
    const int64_t block_end =
        std::min(block_start + args.task_channels, args.channels);
    for (int64_t c0 = block_start; c0 < block_end; c0 += kWidth) {
      scan_channels(args, batch, c0, std::min(kWidth, block_end - c0),
                    a_buffer.data(), state.data());
    }
  }
}

}  // namespace mmtvmamba

#else  // no x86 kernels in this build

#include <c10/util/Exception.h>

namespace mmtvmamba {

void cross_scan_tasks_avx512(const CrossScanArgs&, int64_t, int64_t) {
  TORCH_CHECK(false, "the AVX-512 cross selective scan kernel is not "
                     "compiled in this build; select the portable path");
}

}  // namespace mmtvmamba

#endif
