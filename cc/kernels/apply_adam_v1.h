// The dense Adam functors, specialised for the CPU in the op files and for the GPU in
// gpu_functors.h. All call the one update rule in core/adam_update_rule.h.
#ifndef TF_ADAM_OP_KERNELS_APPLY_ADAM_V1_H_
#define TF_ADAM_OP_KERNELS_APPLY_ADAM_V1_H_

#include <cstdint>
#include <vector>

#include "core/adam_update_rule.h"
#include "core/low_precision.h"
#include "core/update_arguments.h"
#include "tensorflow/core/framework/op_kernel.h"

// The one dtype list: kernel registrations and functor instantiations both expand it, so they
// cannot drift apart.
#define TF_ADAM_OP_FOR_EACH_TYPE(M) \
  M(Eigen::half)                    \
  M(Eigen::bfloat16)                \
  M(float)                          \
  M(double)

// Every kernel of an op file, for every dtype, on every device the library is built for. The op
// file defines TF_ADAM_OP_REGISTER(DEVICE_NAME, DeviceTag, T) (its kernels for one device and
// dtype; DeviceTag is CPUDevice or GpuDevice, named where this expands), then writes
// TF_ADAM_OP_REGISTER_ON_EVERY_DEVICE and undefines its TF_ADAM_OP_REGISTER.
#define TF_ADAM_OP_REGISTER_CPU(T) TF_ADAM_OP_REGISTER(::tensorflow::DEVICE_CPU, CPUDevice, T)
#define TF_ADAM_OP_REGISTER_GPU(T) TF_ADAM_OP_REGISTER(::tensorflow::DEVICE_GPU, GpuDevice, T)
#if TF_ADAM_OP_WITH_CUDA
#define TF_ADAM_OP_REGISTER_ON_EVERY_DEVICE                \
  TF_ADAM_OP_FOR_EACH_TYPE(TF_ADAM_OP_REGISTER_CPU)        \
  TF_ADAM_OP_FOR_EACH_TYPE(TF_ADAM_OP_REGISTER_GPU)
#else
#define TF_ADAM_OP_REGISTER_ON_EVERY_DEVICE TF_ADAM_OP_FOR_EACH_TYPE(TF_ADAM_OP_REGISTER_CPU)
#endif

namespace tf_adam_op {
namespace functor {

// Elements [0, n) of var, m, v (and vhat, for AMSGrad) updated with grad; the scalars are where
// `scalars` points (memory of the device the op runs on).
template <typename Device, typename T>
struct ApplyAdamV1 {
  absl::Status operator()(tensorflow::OpKernelContext* ctx, const TensorPointers& tensor,
                          const ScalarPointers& scalars, const Variant& variant) const;
};

// Every tensor of a multi-tensor update, with one set of scalars.
template <typename Device, typename T>
struct ApplyAdamV1Multi {
  absl::Status operator()(tensorflow::OpKernelContext* ctx,
                          const std::vector<TensorPointers>& tensors,
                          const ScalarPointers& scalars, const Variant& variant) const;
};

// beta1_power *= beta1 and beta2_power *= beta2 (in the powers' dtype), after the updates.
template <typename Device>
struct AdvanceBetaPowers {
  absl::Status operator()(tensorflow::OpKernelContext* ctx, void* beta1_power, void* beta2_power,
                          bool powers_are_double, const void* beta1, const void* beta2,
                          bool betas_are_double) const;
};

}  // namespace functor
}  // namespace tf_adam_op

#endif  // TF_ADAM_OP_KERNELS_APPLY_ADAM_V1_H_
