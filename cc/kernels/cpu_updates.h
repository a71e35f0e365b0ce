// The CPU updates over a thread pool: what the TF kernels (on their intra-op pool) and the XLA
// custom calls (on XLA's, see xla/cpu_custom_calls.cc) both run, so both give the same bits.
// TensorFlow-free: Eigen's ThreadPoolDevice, the core rule and the sparse segments only.
#ifndef TF_ADAM_OP_KERNELS_CPU_UPDATES_H_
#define TF_ADAM_OP_KERNELS_CPU_UPDATES_H_

#define EIGEN_USE_THREADS

#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/adam_update_rule.h"
#include "core/low_precision.h"
#include "core/update_arguments.h"
#include "kernels/cpu_adam_loop.h"
#include "kernels/sparse_segments.h"
#include "unsupported/Eigen/CXX11/Tensor"

namespace tf_adam_op {

// Below this many elements one thread does the whole update: handing work to the pool costs
// microseconds, about what one core needs for this many elements.
constexpr int64_t kMinElementsToParallelize = 1 << 15;

// Runs fn(begin, end) over [0, units), sharded over the pool when the `elements` the units cover
// in total are worth it. `cost_per_unit` lets Eigen pick the shard size.
template <typename Fn>
void ShardedFor(const Eigen::ThreadPoolDevice& d, int64_t units, int64_t elements,
                const Eigen::TensorOpCost& cost_per_unit, Fn fn) {
  if (elements < kMinElementsToParallelize) {
    fn(0, units);
    return;
  }
  d.parallelFor(units, cost_per_unit, fn);
}

// Runs the update over global elements [begin, end) of the concatenated tensors, which may span
// several tensors; offsets[k] is where tensor k starts (offsets has N + 1 entries).
template <typename T>
void UpdateGlobalRange(const std::vector<TensorPointers>& tensors,
                       const std::vector<int64_t>& offsets, const Variant& variant,
                       const AdamStep<OpMathT<T>>& step, int64_t begin, int64_t end) {
  // The last tensor starting at or before `begin` (empty tensors share offsets and are skipped).
  int k = static_cast<int>(std::upper_bound(offsets.begin(), offsets.end(), begin) -
                           offsets.begin()) - 1;
  while (begin < end) {
    const int64_t tensor_end = std::min(end, offsets[k + 1]);
    if (tensor_end > begin) {
      const TensorPointers& t = tensors[k];
      CpuAdamUpdateRange<T>(variant, static_cast<T*>(t.var), static_cast<T*>(t.m),
                            static_cast<T*>(t.v), static_cast<T*>(t.vhat),
                            static_cast<const T*>(t.grad), begin - offsets[k],
                            tensor_end - offsets[k], step);
      begin = tensor_end;
    }
    ++k;
  }
}

// The dense step of every tensor, with one set of scalars. The work is split by the total element
// count (a global index space over the concatenated tensors), not tensor by tensor, so 200 small
// tensors and one large one keep every thread equally busy. One tensor is the single-variable op.
template <typename T>
void CpuDenseUpdate(const Eigen::ThreadPoolDevice& d, const std::vector<TensorPointers>& tensors,
                    const AdamStep<OpMathT<T>>& step, const Variant& variant) {
  std::vector<int64_t> offsets(tensors.size() + 1, 0);
  for (size_t k = 0; k < tensors.size(); ++k) offsets[k + 1] = offsets[k] + tensors[k].size;
  const int64_t total = offsets.back();
  if (total == 0) return;
  auto update = [&](int64_t begin, int64_t end) {
    UpdateGlobalRange<T>(tensors, offsets, variant, step, begin, end);
  };
  // Per element: var, m, v, grad (and vhat) read; var, m, v (and vhat) written; a division and a
  // square root.
  const int extra = variant.amsgrad ? 1 : 0;
  const Eigen::TensorOpCost cost((4 + extra) * sizeof(T), (3 + extra) * sizeof(T),
                                 /*compute_cycles=*/20);
  ShardedFor(d, total, total, cost, update);
}

// The gradient with duplicate indices summed: segment k's sum is summed[k * row_size ...]. Sums run
// in input order from zero, as stock's unsorted_segment_sum does, so they round alike.
template <typename T, typename C = OpMathT<T>>
std::vector<C> SumSegments(const T* grad, const SortedSegments& s, int64_t row_size) {
  std::vector<C> summed(s.unique() * row_size, C(0));
  for (int64_t k = 0; k < s.unique(); ++k) {
    C* sum = summed.data() + k * row_size;
    for (int64_t i = s.segment_starts[k]; i < s.segment_starts[k + 1]; ++i) {
      const T* g = grad + s.order[i] * row_size;
      for (int64_t j = 0; j < row_size; ++j) sum[j] = SumNaNFirst(sum[j], static_cast<C>(g[j]));
    }
  }
  return summed;
}

// The sparse step: var, m, v (and vhat, for AMSGrad; else null) are [rows, row_size]; grad (and
// v_term, when given, else null) is [n, row_size] whose rows `segments` group (indices already
// validated). lazy: the named rows only; otherwise every row, those without a gradient decaying.
template <typename T>
void CpuSparseUpdate(const Eigen::ThreadPoolDevice& d, T* var, T* m, T* v, T* vhat, int64_t rows,
                     int64_t row_size, const T* grad, const T* v_term,
                     const SortedSegments& segments, const AdamStep<OpMathT<T>>& step, bool lazy,
                     const Variant& variant) {
  using C = OpMathT<T>;
  const std::vector<C> summed_rows = SumSegments<T>(grad, segments, row_size);
  const std::vector<C> summed_v_terms =
      v_term != nullptr ? SumSegments<T>(v_term, segments, row_size) : std::vector<C>();
  const int64_t* unique_rows = segments.unique_rows.data();
  const int64_t unique = segments.unique();
  const C* summed = summed_rows.data();
  const C* summed_v_term = v_term != nullptr ? summed_v_terms.data() : nullptr;
  const int64_t arrays = variant.amsgrad ? 4 : 3;
  const Eigen::TensorOpCost row_cost(arrays * sizeof(T) * row_size, arrays * sizeof(T) * row_size,
                                     20 * row_size);
  WithSparseRule(variant, [&](auto rule) {
    using R = decltype(rule);
    // Row r, with its gradient's (and v term's) segment k, or k < 0 for a row without one.
    auto row = [=](int64_t r, int64_t k) {
      const C* grad_row = k >= 0 ? summed + k * row_size : nullptr;
      const C* v_term_row = k >= 0 && summed_v_term ? summed_v_term + k * row_size : nullptr;
      AdamSparseRow<R, T, C>(var + r * row_size, m + r * row_size, v + r * row_size,
                             R::amsgrad ? vhat + r * row_size : nullptr, grad_row, v_term_row,
                             row_size, step);
    };
    if (lazy) {  // only the named rows
      ShardedFor(d, unique, unique * row_size, row_cost, [&](int64_t begin, int64_t end) {
        for (int64_t k = begin; k < end; ++k) row(unique_rows[k], k);
      });
      return;
    }
    // Every row decays; the named ones also get their gradient. Each shard finds its first named
    // row by binary search, then walks rows and named rows together.
    ShardedFor(d, rows, rows * row_size, row_cost, [&](int64_t begin, int64_t end) {
      int64_t k = std::lower_bound(unique_rows, unique_rows + unique, begin) - unique_rows;
      for (int64_t r = begin; r < end; ++r) {
        const bool named = k < unique && unique_rows[k] == r;
        row(r, named ? k : -1);
        if (named) ++k;
      }
    });
  });
}

}  // namespace tf_adam_op

#endif  // TF_ADAM_OP_KERNELS_CPU_UPDATES_H_
