// Copyright (c) mmtvmamba contributors. All rights reserved.
//
// Dynamic scheduling of independent tasks on the torch thread pool.
#pragma once

#include <atomic>
#include <cstdint>

#include <ATen/Parallel.h>

namespace mmtvmamba {

// Run fn(t) for every task t in [0, count) on the torch thread pool.
// Threads take tasks from a shared counter instead of fixed ranges. A thread
// that wakes late, or that the OS preempts for other processes, then delays
// only the task it is running, because the other threads take the rest.
// Every task runs on the calling thread when count is 1 or less, or when
// the pool has one thread.
template <typename Fn>
void run_tasks(int64_t count, const Fn& fn) {
  if (count <= 1 || at::get_num_threads() == 1) {
    for (int64_t t = 0; t < count; ++t) {
      fn(t);
    }
    return;
  }
  std::atomic<int64_t> next{0};
  at::parallel_for(0, at::get_num_threads(), 1, [&](int64_t, int64_t) {
    for (int64_t t = next++; t < count; t = next++) {
      fn(t);
    }
  });
}

}  // namespace mmtvmamba
