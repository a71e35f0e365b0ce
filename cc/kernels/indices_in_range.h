// A step's sparse gradients' indices, every one a row of its variable: the check an XLA step makes
// over all of them before its first sparse update (CheckIndicesInRange). Its TF kernel
// (check_indices_op.cc) and its custom call's handlers (xla/check_indices_xla.cc, and
// gpu_custom_calls.cc after copying to the host) share it, so every form gives the same message.
#ifndef TF_ADAM_OP_KERNELS_INDICES_IN_RANGE_H_
#define TF_ADAM_OP_KERNELS_INDICES_IN_RANGE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/sparse_segments.h"  // ValidateIndices

namespace tf_adam_op {

// One gradient's indices, on the host.
struct IndexList {
  const void* data;
  bool wide;  // int64 (else int32)
  int64_t n;
};

// OK when indices[i] are all in [0, rows[i]) for every i; else InvalidArgument naming names[i]
// (when given) and the first bad index.
inline absl::Status CheckIndexLists(const std::vector<IndexList>& lists, const int64_t* rows,
                                    const std::vector<std::string>& names) {
  for (size_t i = 0; i < lists.size(); ++i) {
    const IndexList& list = lists[i];
    const absl::Status valid =
        list.wide ? ValidateIndices(static_cast<const int64_t*>(list.data), list.n, rows[i])
                  : ValidateIndices(static_cast<const int32_t*>(list.data), list.n, rows[i]);
    if (!valid.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          i < names.size() ? names[i] : absl::StrCat("indices list ", i), ": ", valid.message()));
    }
  }
  return absl::OkStatus();
}

}  // namespace tf_adam_op

#endif  // TF_ADAM_OP_KERNELS_INDICES_IN_RANGE_H_
