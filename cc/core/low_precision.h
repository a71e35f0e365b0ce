// Half and bfloat16 storage types (Eigen's, the ones TensorFlow uses) are computed in float.
// Header-only: the pybind11 module uses it without linking TensorFlow.
#ifndef TF_ADAM_OP_CORE_LOW_PRECISION_H_
#define TF_ADAM_OP_CORE_LOW_PRECISION_H_

#include "Eigen/Core"
#include "core/adam_update_rule.h"

namespace tf_adam_op {

template <>
struct OpMath<Eigen::half> {
  using type = float;
};
template <>
struct OpMath<Eigen::bfloat16> {
  using type = float;
};

}  // namespace tf_adam_op

#endif  // TF_ADAM_OP_CORE_LOW_PRECISION_H_
