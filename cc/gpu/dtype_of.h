// gpu::Dtype of a C++ element type (Eigen's half and bfloat16 on the host side), for the op
// kernels (kernels/gpu_functors.h) and the XLA custom calls (xla/gpu_custom_calls.cc).
#ifndef TF_ADAM_OP_GPU_DTYPE_OF_H_
#define TF_ADAM_OP_GPU_DTYPE_OF_H_

#include <type_traits>

#include "Eigen/Core"
#include "gpu/adam_gpu.h"

namespace tf_adam_op {
namespace gpu {

template <typename T>
constexpr Dtype DtypeOf() {
  static_assert(std::is_same<T, Eigen::half>::value || std::is_same<T, Eigen::bfloat16>::value ||
                    std::is_same<T, float>::value || std::is_same<T, double>::value,
                "the Adam kernels update half, bfloat16, float and double");
  if (std::is_same<T, Eigen::half>::value) return Dtype::kHalf;
  if (std::is_same<T, Eigen::bfloat16>::value) return Dtype::kBfloat16;
  if (std::is_same<T, float>::value) return Dtype::kFloat;
  return Dtype::kDouble;
}

}  // namespace gpu
}  // namespace tf_adam_op

#endif  // TF_ADAM_OP_GPU_DTYPE_OF_H_
