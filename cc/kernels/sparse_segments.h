// A sparse gradient's indices, checked and grouped on the host for the CPU and GPU kernels alike.
#ifndef TF_ADAM_OP_KERNELS_SPARSE_SEGMENTS_H_
#define TF_ADAM_OP_KERNELS_SPARSE_SEGMENTS_H_

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace tf_adam_op {

// Every index before any write: a bad one anywhere leaves var, m and v untouched.
template <typename Tindex>
absl::Status ValidateIndices(const Tindex* indices, int64_t n, int64_t rows) {
  for (int64_t i = 0; i < n; ++i) {
    if (indices[i] < 0 || static_cast<int64_t>(indices[i]) >= rows) {
      return absl::InvalidArgumentError(
          absl::StrCat("indices[", i, "] = ", indices[i], " is not in [0, ", rows, ")"));
    }
  }
  return absl::OkStatus();
}

// The gradient's rows grouped by the row they name: segment k is order[segment_starts[k] ..
// segment_starts[k + 1]) and names unique_rows[k] (ascending). Within a segment the positions stay
// in input order, which is the order duplicates are summed in (stock's unsorted_segment_sum order).
struct SortedSegments {
  std::vector<int64_t> order;
  std::vector<int64_t> segment_starts;
  std::vector<int64_t> unique_rows;
  int64_t unique() const { return static_cast<int64_t>(unique_rows.size()); }
};

template <typename Tindex>
SortedSegments SortIntoSegments(const Tindex* indices, int64_t n) {
  SortedSegments s;
  s.order.resize(n);
  std::iota(s.order.begin(), s.order.end(), int64_t{0});
  std::stable_sort(s.order.begin(), s.order.end(),
                   [indices](int64_t a, int64_t b) { return indices[a] < indices[b]; });
  for (int64_t i = 0; i < n; ++i) {
    const int64_t row = static_cast<int64_t>(indices[s.order[i]]);
    if (s.unique_rows.empty() || s.unique_rows.back() != row) {
      s.unique_rows.push_back(row);
      s.segment_starts.push_back(i);
    }
  }
  s.segment_starts.push_back(n);
  return s;
}

}  // namespace tf_adam_op

#endif  // TF_ADAM_OP_KERNELS_SPARSE_SEGMENTS_H_
