// The sparse Adam functor: rows of var named by indices, duplicates summed first. Specialised for
// the CPU in sparse_apply_adam_v1_op.cc and for the GPU in gpu_functors.h; both call the sparse
// rule in core/.
#ifndef TF_ADAM_OP_KERNELS_SPARSE_APPLY_ADAM_V1_H_
#define TF_ADAM_OP_KERNELS_SPARSE_APPLY_ADAM_V1_H_

#include <cstdint>

#include "core/adam_update_rule.h"
#include "core/low_precision.h"
#include "core/update_arguments.h"
#include "kernels/sparse_segments.h"
#include "tensorflow/core/framework/op_kernel.h"

namespace tf_adam_op {
namespace functor {

template <typename Device, typename T>
struct SparseApplyAdamV1 {
  // var, m, v (and vhat, for AMSGrad; else null) are [rows, row_size] (device memory); grad is
  // [n, row_size] (device memory) whose rows the host-side `segments` group (indices already
  // validated). v_term, laid out as grad, is v's gradient term handed in (summed over duplicates
  // like grad), or null.
  absl::Status operator()(tensorflow::OpKernelContext* ctx, T* var, T* m, T* v, T* vhat,
                          int64_t rows, int64_t row_size, const T* grad, const T* v_term,
                          const SortedSegments& segments, const ScalarPointers& scalars, bool lazy,
                          const Variant& variant) const;
};

}  // namespace functor
}  // namespace tf_adam_op

#endif  // TF_ADAM_OP_KERNELS_SPARSE_APPLY_ADAM_V1_H_
