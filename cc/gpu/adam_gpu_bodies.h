// What one GPU thread of each Adam kernel does, given its place in the grid, and the host-side
// arrangement of the kernels' arguments. Plain templates for host and device, no CUDA types: the
// kernels in adam_gpu.cu are one call each, and the host can run the very same bodies.
// `_core.emulate_gpu_*` runs whole grids on the CPU, one thread after another (the threads of these
// kernels never talk to each other, so their order does not matter), and the tests compare that
// with the CPU kernels: the index arithmetic of every kernel (grid-stride loops, multi-tensor
// offsets and chunks, segment sums, row search) is checked on any machine. The launches themselves
// still need a GPU (tests/test_gpu.py).
#ifndef TF_ADAM_OP_GPU_ADAM_GPU_BODIES_H_
#define TF_ADAM_OP_GPU_ADAM_GPU_BODIES_H_

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "core/adam_update_rule.h"
#include "core/update_arguments.h"
#include "gpu/adam_gpu.h"

namespace tf_adam_op {
namespace gpu {

// This thread's index in the whole grid, and how many threads the grid has.
struct GridPosition {
  int64_t thread;
  int64_t threads;
};

// R is the rule (core/adam_update_rule.h): vhat is read only with R::amsgrad, and may be null.
template <typename T, typename R, typename C = OpMathT<T>>
TF_ADAM_OP_HOST_DEVICE inline void DenseBody(GridPosition g, T* var, T* m, T* v, T* vhat,
                                             const T* grad, int64_t n, const AdamStep<C>& step) {
  for (int64_t i = g.thread; i < n; i += g.threads) {
    AdamUpdateElement<R, T, C>(var + i, m + i, v + i, R::amsgrad ? vhat + i : nullptr, grad[i],
                               step);
  }
}

// Up to kMaxTensorsPerLaunch tensors of a multi-tensor update, passed by value as kernel arguments.
template <typename T>
struct MultiArgs {
  T* var[kMaxTensorsPerLaunch];
  T* m[kMaxTensorsPerLaunch];
  T* v[kMaxTensorsPerLaunch];
  const T* grad[kMaxTensorsPerLaunch];
  T* vhat[kMaxTensorsPerLaunch];  // null without AMSGrad
  int64_t offsets[kMaxTensorsPerLaunch + 1];  // where each tensor starts in the launch's elements
  int count;
};

// Calls launch(args) for each kMaxTensorsPerLaunch tensors in turn, skipping a launch with no
// elements, and returns the first error a launch returns ("" when none).
template <typename T, typename Launch>
std::string ForEachMultiLaunch(const std::vector<TensorPointers>& tensors, Launch launch) {
  for (size_t first = 0; first < tensors.size(); first += kMaxTensorsPerLaunch) {
    MultiArgs<T> args;
    args.count = static_cast<int>(std::min<size_t>(kMaxTensorsPerLaunch, tensors.size() - first));
    args.offsets[0] = 0;
    for (int k = 0; k < args.count; ++k) {
      const TensorPointers& t = tensors[first + k];
      args.var[k] = static_cast<T*>(t.var);
      args.m[k] = static_cast<T*>(t.m);
      args.v[k] = static_cast<T*>(t.v);
      args.grad[k] = static_cast<const T*>(t.grad);
      args.vhat[k] = static_cast<T*>(t.vhat);
      args.offsets[k + 1] = args.offsets[k] + t.size;
    }
    if (args.offsets[args.count] == 0) continue;
    const std::string error = launch(args);
    if (!error.empty()) return error;
  }
  return {};
}

template <typename T, typename R, typename C = OpMathT<T>>
TF_ADAM_OP_HOST_DEVICE inline void MultiBody(GridPosition g, const MultiArgs<T>& args,
                                             const AdamStep<C>& step) {
  const int64_t total = args.offsets[args.count];
  for (int64_t i = g.thread; i < total; i += g.threads) {
    int lo = 0, hi = args.count - 1;  // the last tensor starting at or before i
    while (lo < hi) {
      const int mid = (lo + hi + 1) / 2;
      if (args.offsets[mid] <= i) lo = mid; else hi = mid - 1;
    }
    const int64_t j = i - args.offsets[lo];
    AdamUpdateElement<R, T, C>(args.var[lo] + j, args.m[lo] + j, args.v[lo] + j,
                               R::amsgrad ? args.vhat[lo] + j : nullptr, args.grad[lo][j], step);
  }
}

// The host's sorted segments (see SparseSegments) as the one int64 array that travels to the device:
// order, then segment starts, then unique rows.
inline std::vector<int64_t> PackSegments(const std::vector<int64_t>& order,
                                         const std::vector<int64_t>& segment_starts,
                                         const std::vector<int64_t>& unique_rows) {
  std::vector<int64_t> packed;
  packed.reserve(order.size() + segment_starts.size() + unique_rows.size());
  packed.insert(packed.end(), order.begin(), order.end());
  packed.insert(packed.end(), segment_starts.begin(), segment_starts.end());
  packed.insert(packed.end(), unique_rows.begin(), unique_rows.end());
  return packed;
}

// The SparseSegments view of a PackSegments array at `base` (where it lies on the device).
inline SparseSegments PackedSegmentsAt(const int64_t* base, int64_t n, int64_t unique) {
  return SparseSegments{base, base + n, base + n + unique + 1, unique};
}

// summed[k * row_size + j] = sum over segment k of grad[order[i] * row_size + j], in input order.
template <typename T, typename C = OpMathT<T>>
TF_ADAM_OP_HOST_DEVICE inline void SumSegmentsBody(GridPosition g, const T* grad,
                                                   const SparseSegments& s, int64_t row_size,
                                                   C* summed) {
  const int64_t total = s.unique * row_size;
  for (int64_t idx = g.thread; idx < total; idx += g.threads) {
    const int64_t k = idx / row_size, j = idx % row_size;
    C sum = C(0);
    for (int64_t i = s.segment_starts[k]; i < s.segment_starts[k + 1]; ++i) {
      sum = SumNaNFirst(sum, static_cast<C>(grad[s.order[i] * row_size + j]));
    }
    summed[idx] = sum;
  }
}

// Lazy: only the named rows. `summed_v_term` (laid out as `summed`) is null unless v's term is
// handed in; vhat is read only with R::amsgrad.
template <typename T, typename R, typename C = OpMathT<T>>
TF_ADAM_OP_HOST_DEVICE inline void SparseLazyBody(GridPosition g, T* var, T* m, T* v, T* vhat,
                                                  int64_t row_size, const SparseSegments& s,
                                                  const C* summed, const C* summed_v_term,
                                                  const AdamStep<C>& step) {
  const int64_t total = s.unique * row_size;
  for (int64_t idx = g.thread; idx < total; idx += g.threads) {
    const int64_t k = idx / row_size, j = idx % row_size;
    const int64_t e = s.unique_rows[k] * row_size + j;
    AdamSparseElement<R, T, C>(var + e, m + e, v + e, R::amsgrad ? vhat + e : nullptr,
                               summed + idx, summed_v_term ? summed_v_term + idx : nullptr, step);
  }
}

// Stock's sparse Adam: every row (m and v decay everywhere), the named ones with their gradient.
template <typename T, typename R, typename C = OpMathT<T>>
TF_ADAM_OP_HOST_DEVICE inline void SparseAllRowsBody(GridPosition g, T* var, T* m, T* v, T* vhat,
                                                     int64_t rows, int64_t row_size,
                                                     const SparseSegments& s, const C* summed,
                                                     const C* summed_v_term,
                                                     const AdamStep<C>& step) {
  const int64_t total = rows * row_size;
  for (int64_t e = g.thread; e < total; e += g.threads) {
    const int64_t row = e / row_size, j = e % row_size;
    int64_t lo = 0, hi = s.unique;  // first named row >= row
    while (lo < hi) {
      const int64_t mid = (lo + hi) / 2;
      if (s.unique_rows[mid] < row) lo = mid + 1; else hi = mid;
    }
    const bool named = lo < s.unique && s.unique_rows[lo] == row;
    const int64_t at = lo * row_size + j;
    AdamSparseElement<R, T, C>(var + e, m + e, v + e, R::amsgrad ? vhat + e : nullptr,
                               named ? summed + at : nullptr,
                               named && summed_v_term ? summed_v_term + at : nullptr, step);
  }
}

}  // namespace gpu
}  // namespace tf_adam_op

#endif  // TF_ADAM_OP_GPU_ADAM_GPU_BODIES_H_
