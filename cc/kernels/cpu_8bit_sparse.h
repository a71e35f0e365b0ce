// The sparse 8-bit-state update on the CPU (TensorFlow-free, like cpu_updates.h): which blocks an
// IndexedSlices update touches, and each touched block's elements with their summed gradient rows.
#ifndef TF_ADAM_OP_KERNELS_CPU_8BIT_SPARSE_H_
#define TF_ADAM_OP_KERNELS_CPU_8BIT_SPARSE_H_

#define EIGEN_USE_THREADS

#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/adam_update_rule.h"
#include "core/blockwise_8bit.h"
#include "core/low_precision.h"
#include "kernels/cpu_updates.h"  // ShardedFor, SumSegments
#include "kernels/sparse_segments.h"
#include "unsupported/Eigen/CXX11/Tensor"

namespace tf_adam_op {

// The blocks holding an element of the rows `unique_rows` (ascending) of `row_size` elements each,
// ascending and without repeats.
inline std::vector<int64_t> BlocksOfRows(const std::vector<int64_t>& unique_rows,
                                         int64_t row_size) {
  std::vector<int64_t> blocks;
  if (row_size == 0) return blocks;
  for (const int64_t row : unique_rows) {
    const int64_t first = row * row_size / eight_bit::kBlockSize;
    const int64_t last = ((row + 1) * row_size - 1) / eight_bit::kBlockSize;
    for (int64_t b = std::max(first, blocks.empty() ? first : blocks.back() + 1); b <= last; ++b) {
      blocks.push_back(b);
    }
  }
  return blocks;
}

// The blocks a sparse update of a [rows, row_size] variable rewrites, ascending: lazy, those
// holding an element of a named row (`unique_rows`, ascending); otherwise every block.
inline std::vector<int64_t> BlocksToUpdate(bool lazy, const std::vector<int64_t>& unique_rows,
                                           int64_t rows, int64_t row_size) {
  if (lazy) return BlocksOfRows(unique_rows, row_size);
  std::vector<int64_t> blocks(eight_bit::BlockCount(rows * row_size));
  for (int64_t b = 0; b < static_cast<int64_t>(blocks.size()); ++b) blocks[b] = b;
  return blocks;
}

// var is [rows, row_size] with its 8-bit states `s`; grad (and v_term, or null) are [n, row_size]
// grouped by `segments` (indices validated). lazy: the named rows only (and the blocks they share
// with other rows re-encoded); otherwise every row, as CpuSparseUpdate does with float states.
template <typename T>
void CpuSparse8bitUpdate(const Eigen::ThreadPoolDevice& d, T* var, const eight_bit::States8bit& s,
                         int64_t rows, int64_t row_size, const T* grad, const T* v_term,
                         const SortedSegments& segments, const AdamStep<OpMathT<T>>& step,
                         bool lazy, const Variant& variant) {
  using C = OpMathT<T>;
  const int64_t size = rows * row_size;
  if (size == 0) return;
  const std::vector<C> summed = SumSegments<T>(grad, segments, row_size);
  const std::vector<C> summed_v_term =
      v_term != nullptr ? SumSegments<T>(v_term, segments, row_size) : std::vector<C>();
  const std::vector<int64_t>& named = segments.unique_rows;
  const std::vector<int64_t> blocks = BlocksToUpdate(lazy, named, rows, row_size);
  const Eigen::TensorOpCost cost(6 * sizeof(T) * eight_bit::kBlockSize,
                                 4 * sizeof(T) * eight_bit::kBlockSize,
                                 60 * eight_bit::kBlockSize);
  WithSparseRule(variant, [&](auto rule) {
    using R = decltype(rule);
    ShardedFor(d, static_cast<int64_t>(blocks.size()),
               static_cast<int64_t>(blocks.size()) * eight_bit::kBlockSize, cost,
               [&](int64_t begin, int64_t end) {
      eight_bit::BlockStates<C> scratch;
      for (int64_t k = begin; k < end; ++k) {
        const int64_t block = blocks[k];
        // The segment of each row the block holds (-1: a row without a gradient).
        const int64_t offset = block * eight_bit::kBlockSize;
        const int64_t first_row = offset / row_size;
        const int64_t last_element = std::min(size, offset + eight_bit::kBlockSize) - 1;
        const int64_t last_row = last_element / row_size;
        int64_t segment_of[eight_bit::kBlockSize + 1];
        int64_t at = std::lower_bound(named.begin(), named.end(), first_row) - named.begin();
        for (int64_t r = first_row; r <= last_row; ++r) {
          const bool has = at < static_cast<int64_t>(named.size()) && named[at] == r;
          segment_of[r - first_row] = has ? at++ : -1;
        }
        auto segment = [&](int64_t e) { return segment_of[e / row_size - first_row]; };
        auto in_row = [&](int64_t e, int64_t k_row) { return k_row * row_size + e % row_size; };
        auto grad_of = [&](int64_t e) -> const C* {
          const int64_t k_row = segment(e);
          return k_row < 0 ? nullptr : summed.data() + in_row(e, k_row);
        };
        auto v_term_of = [&](int64_t e) -> const C* {
          const int64_t k_row = segment(e);
          return k_row < 0 || summed_v_term.empty() ? nullptr
                                                    : summed_v_term.data() + in_row(e, k_row);
        };
        auto updates = [&](int64_t e) { return !lazy || segment(e) >= 0; };
        eight_bit::Adam8bitSparseBlock<R, T, C>(var, s, size, block, step, grad_of, v_term_of,
                                                updates, &scratch);
      }
    });
  });
}

}  // namespace tf_adam_op

#endif  // TF_ADAM_OP_KERNELS_CPU_8BIT_SPARSE_H_
