// Copyright (c) mmtvmamba contributors. All rights reserved.
//
// Input validation, task sizing and threading of the fused cross selective
// scan op. The computation is documented in cross_selective_scan.h, and the
// kernel path is the one of the selective scan (active_scan_isa()).
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/Optional.h>

#include "cross_selective_scan.h"
#include "cross_selective_scan_op.h"
#include "parallel_tasks.h"
#include "selective_scan.h"

namespace mmtvmamba {

namespace {

constexpr const char* kOp = "cross_selective_scan_fwd";

constexpr int64_t kLanes = 16;

// Maximum number of 16-channel vectors in one task. The AVX-512 kernel
// interleaves up to 4 vectors per step.
constexpr int64_t kMaxTaskVectors = 4;

// Tasks are grouped into chunks of at least this many (position, channel,
// state) updates, because waking the thread pool for less work likely
// costs more than it saves (an estimate, not tuned per CPU).
constexpr int64_t kChunkUpdates = 1 << 15;

void check_float_cpu(const at::Tensor& tensor, const std::string& name) {
  TORCH_CHECK(tensor.device().is_cpu(), kOp, ": ", name,
              " must be a CPU tensor, but it is on ", tensor.device(),
              "; move it with .cpu()");
  TORCH_CHECK_TYPE(at::isFloatingType(tensor.scalar_type()), kOp, ": ", name,
                   " must be a floating-point tensor, but got ",
                   tensor.scalar_type(), "; convert it with .float()");
}

void check_direction_vector(const c10::optional<at::Tensor>& tensor,
                            const char* name, int64_t rows) {
  if (!tensor.has_value()) {
    return;
  }
  check_float_cpu(*tensor, name);
  TORCH_CHECK_VALUE(tensor->dim() == 1 && tensor->size(0) == rows, kOp, ": ",
                    name, " must have shape (", rows,
                    ") = (4 * D,), but got shape ", tensor->sizes());
}

void check_inputs(const at::Tensor& u, at::TensorList deltas,
                  const at::Tensor& A, const at::Tensor& Bs,
                  const at::Tensor& Cs, const c10::optional<at::Tensor>& Ds,
                  const c10::optional<at::Tensor>& delta_bias) {
  check_float_cpu(u, "u");
  TORCH_CHECK_VALUE(static_cast<int64_t>(deltas.size()) == kCrossDirections,
                    kOp, ": deltas must contain ", kCrossDirections,
                    " tensors, one per scan direction, but got ",
                    deltas.size());
  for (size_t k = 0; k < deltas.size(); ++k) {
    check_float_cpu(deltas[k], "deltas[" + std::to_string(k) + "]");
  }
  check_float_cpu(A, "A");
  check_float_cpu(Bs, "Bs");
  check_float_cpu(Cs, "Cs");

  TORCH_CHECK_VALUE(u.dim() == 4, kOp,
                    ": u must be 4-D (batch, H, W, D) in channels-last "
                    "order, but got shape ",
                    u.sizes());
  for (size_t k = 0; k < deltas.size(); ++k) {
    TORCH_CHECK_VALUE(deltas[k].sizes() == u.sizes(), kOp, ": deltas[", k,
                      "] must have the shape of u ", u.sizes(),
                      ", but got shape ", deltas[k].sizes());
  }
  const int64_t rows = kCrossDirections * u.size(3);

  TORCH_CHECK_VALUE(A.dim() == 2 && A.size(0) == rows && A.size(1) > 0, kOp,
                    ": A must have shape (4 * D, N) = (", rows,
                    ", N) with N >= 1, but got shape ", A.sizes());
  const int64_t states = A.size(1);

  TORCH_CHECK_VALUE(Bs.dim() == 5 && Bs.size(0) == u.size(0) &&
                        Bs.size(1) == u.size(1) && Bs.size(2) == u.size(2) &&
                        Bs.size(3) == kCrossDirections &&
                        Bs.size(4) == states,
                    kOp, ": Bs must have shape (batch, H, W, 4, N) = (",
                    u.size(0), ", ", u.size(1), ", ", u.size(2), ", 4, ",
                    states, "), but got shape ", Bs.sizes());
  TORCH_CHECK_VALUE(Cs.sizes() == Bs.sizes(), kOp,
                    ": Cs must have the shape of Bs ", Bs.sizes(),
                    ", but got shape ", Cs.sizes());

  check_direction_vector(Ds, "Ds", rows);
  check_direction_vector(delta_bias, "delta_bias", rows);
}

// Return tensor as float32 with unit stride in its last dimension, copying
// only if needed.
at::Tensor as_float_channels(const at::Tensor& tensor) {
  at::Tensor out = tensor.to(at::kFloat);
  if (out.size(-1) > 1 && out.stride(-1) != 1) {
    out = out.contiguous();
  }
  return out;
}

c10::optional<at::Tensor> as_float(const c10::optional<at::Tensor>& tensor) {
  if (!tensor.has_value()) {
    return c10::nullopt;
  }
  return tensor->to(at::kFloat).contiguous();
}

// Return the channels per task: whole vectors of 16, at most
// kMaxTaskVectors, chosen so that the busiest of `threads` threads gets the
// fewest vectors when tasks are split evenly. Ties go to wider tasks,
// which interleave more vectors.
int64_t task_channels(int64_t batch, int64_t channels, int64_t threads) {
  const int64_t vectors = (channels + kLanes - 1) / kLanes;
  int64_t best = kMaxTaskVectors;
  int64_t best_load = -1;
  for (int64_t width = kMaxTaskVectors; width >= 1; --width) {
    const int64_t tasks = batch * ((vectors + width - 1) / width);
    const int64_t load = (tasks + threads - 1) / threads * width;
    if (best_load < 0 || load < best_load) {
      best = width;
      best_load = load;
    }
  }
  return best * kLanes;
}

void copy_strides(const at::Tensor& tensor, int64_t* strides, int count) {
  for (int i = 0; i < count; ++i) {
    strides[i] = tensor.stride(i);
  }
}

}  // namespace

at::Tensor cross_selective_scan_fwd(const at::Tensor& u,
                                    at::TensorList deltas,
                                    const at::Tensor& A, const at::Tensor& Bs,
                                    const at::Tensor& Cs,
                                    const c10::optional<at::Tensor>& Ds,
                                    const c10::optional<at::Tensor>& delta_bias,
                                    bool delta_softplus) {
  check_inputs(u, deltas, A, Bs, Cs, Ds, delta_bias);
  at::Tensor y = at::empty(u.sizes(), u.options().dtype(at::kFloat));
  if (y.numel() == 0) {
    return y;
  }

  const at::Tensor u_f = as_float_channels(u);
  std::vector<at::Tensor> deltas_f;
  for (const at::Tensor& delta : deltas) {
    deltas_f.push_back(as_float_channels(delta));
  }
  const at::Tensor a_f = A.to(at::kFloat).contiguous();
  const at::Tensor b_f = Bs.to(at::kFloat);
  const at::Tensor c_f = Cs.to(at::kFloat);
  const c10::optional<at::Tensor> d_f = as_float(Ds);
  const c10::optional<at::Tensor> bias_f = as_float(delta_bias);

  CrossScanArgs args;
  args.u = u_f.data_ptr<float>();
  copy_strides(u_f, args.u_strides, 3);
  for (int k = 0; k < kCrossDirections; ++k) {
    args.delta[k] = deltas_f[k].data_ptr<float>();
    copy_strides(deltas_f[k], args.delta_strides[k], 3);
  }
  args.a = a_f.data_ptr<float>();
  args.b = b_f.data_ptr<float>();
  copy_strides(b_f, args.b_strides, 5);
  args.c = c_f.data_ptr<float>();
  copy_strides(c_f, args.c_strides, 5);
  args.d = d_f.has_value() ? d_f->data_ptr<float>() : nullptr;
  args.delta_bias = bias_f.has_value() ? bias_f->data_ptr<float>() : nullptr;
  args.y = y.data_ptr<float>();
  args.height = u.size(1);
  args.width = u.size(2);
  args.channels = u.size(3);
  args.states = A.size(1);
  args.delta_softplus = delta_softplus;

  const int64_t batch = u.size(0);
  args.task_channels =
      task_channels(batch, args.channels, at::get_num_threads());
  const int64_t tasks = batch * cross_scan_blocks(args);
  const int64_t task_updates = kCrossDirections * args.height * args.width *
                               args.task_channels * args.states;
  const int64_t grain = std::max<int64_t>(1, kChunkUpdates / task_updates);

  const bool simd = active_scan_isa() == ScanIsa::kAvx512;
  // Below grain tasks the call runs inline; above, in chunks small enough
  // that each thread gets several.
  const int64_t chunk_tasks =
      tasks <= grain
          ? tasks
          : std::max<int64_t>(1, tasks / (4 * at::get_num_threads()));
  run_tasks(at::divup(tasks, chunk_tasks), [&](int64_t chunk) {
    const int64_t t0 = chunk * chunk_tasks;
    const int64_t t1 = std::min(tasks, t0 + chunk_tasks);
    if (simd) {
      cross_scan_tasks_avx512(args, t0, t1);
    } else {
      cross_scan_tasks_portable(args, t0, t1);
    }
  });
  return y;
}

}  // namespace mmtvmamba
