// The sparse Adam functor: rows of var named by indices, duplicates summed first. Specialised for
// CPUDevice in sparse_apply_adam_v1_op.cc; both modes call the sparse rule in core/.
#ifndef TF_ADAM_OP_KERNELS_SPARSE_APPLY_ADAM_V1_H_
#define TF_ADAM_OP_KERNELS_SPARSE_APPLY_ADAM_V1_H_

#include <cstdint>

#include "core/adam_update_rule.h"
#include "core/low_precision.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor_types.h"

namespace tf_adam_op {
namespace functor {

template <typename Device, typename T, typename Tindex>
struct SparseApplyAdamV1 {
  using Scalar = typename tensorflow::TTypes<OpMathT<T>>::ConstScalar;
  // var, m, v are [rows, row_size]; grad is [len(indices), row_size]. Fails (InvalidArgument) and
  // writes nothing when an index is outside [0, rows).
  absl::Status operator()(tensorflow::OpKernelContext* ctx, const Device& d,
                          typename tensorflow::TTypes<T>::Matrix var,
                          typename tensorflow::TTypes<T>::Matrix m,
                          typename tensorflow::TTypes<T>::Matrix v, Scalar beta1_power,
                          Scalar beta2_power, Scalar lr, Scalar beta1, Scalar beta2, Scalar epsilon,
                          typename tensorflow::TTypes<T>::ConstMatrix grad,
                          typename tensorflow::TTypes<Tindex>::ConstVec indices, bool lazy,
                          bool scale_first) const;
};

}  // namespace functor
}  // namespace tf_adam_op

#endif  // TF_ADAM_OP_KERNELS_SPARSE_APPLY_ADAM_V1_H_
