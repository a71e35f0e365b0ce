// The dense Adam functor, specialised for CPUDevice in apply_adam_v1_op.cc and for GPUDevice in the
// CUDA sources. Both call the one update rule in core/adam_update_rule.h.
#ifndef TF_ADAM_OP_KERNELS_APPLY_ADAM_V1_H_
#define TF_ADAM_OP_KERNELS_APPLY_ADAM_V1_H_

#include "core/adam_update_rule.h"
#include "core/low_precision.h"
#include "tensorflow/core/framework/tensor_types.h"

// The one dtype list: kernel registrations and functor instantiations both expand it, so they
// cannot drift apart.
#define TF_ADAM_OP_FOR_EACH_TYPE(M) \
  M(Eigen::half)                    \
  M(Eigen::bfloat16)                \
  M(float)                          \
  M(double)

namespace tf_adam_op {
namespace functor {

template <typename Device, typename T>
struct ApplyAdamV1 {
  using Scalar = typename tensorflow::TTypes<OpMathT<T>>::ConstScalar;
  void operator()(const Device& d, typename tensorflow::TTypes<T>::Flat var,
                  typename tensorflow::TTypes<T>::Flat m, typename tensorflow::TTypes<T>::Flat v,
                  Scalar beta1_power, Scalar beta2_power, Scalar lr, Scalar beta1, Scalar beta2,
                  Scalar epsilon, typename tensorflow::TTypes<T>::ConstFlat grad,
                  bool use_nesterov) const;
};

}  // namespace functor
}  // namespace tf_adam_op

#endif  // TF_ADAM_OP_KERNELS_APPLY_ADAM_V1_H_
