// ApplyAdamV1 / ResourceApplyAdamV1: the OpKernel, the CPU functor and the kernel registrations.
#define EIGEN_USE_THREADS

#include "kernels/apply_adam_v1.h"

#include "kernels/adam_kernel_common.h"
#include "kernels/cpu_adam_loop.h"
#if TF_ADAM_OP_WITH_CUDA
#include "kernels/gpu_functors.h"
#endif
#include "kernels/training_variables.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/register_types.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "absl/strings/str_cat.h"
#include "unsupported/Eigen/CXX11/Tensor"

namespace tf_adam_op {

using CPUDevice = Eigen::ThreadPoolDevice;
using ::tensorflow::DataTypeToEnum;
using ::tensorflow::DT_RESOURCE;
using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;

namespace functor {

template <typename T>
struct ApplyAdamV1<CPUDevice, T> {
  absl::Status operator()(OpKernelContext* ctx, T* var, T* m, T* v, const T* grad, int64_t n,
                          const ScalarPointers& scalars, bool use_nesterov) const {
    const AdamStep<OpMathT<T>> step = LoadStep<OpMathT<T>>(scalars);
    auto update = [=](Eigen::Index begin, Eigen::Index end) {
      CpuAdamUpdateRange<T>(use_nesterov, var, m, v, grad, begin, end, step);
    };
    // Per element: var, m, v, grad read; var, m, v written; a division and a square root.
    const Eigen::TensorOpCost cost(4 * sizeof(T), 3 * sizeof(T), /*compute_cycles=*/20);
    ShardedFor(ctx->eigen_device<CPUDevice>(), n, n, cost, update);
    return absl::OkStatus();
  }
};

}  // namespace functor

// One kernel serves ApplyAdamV1 (ref inputs) and ResourceApplyAdamV1 (handles), as in stock.
template <typename Device, typename T>
class ApplyAdamV1Op : public OpKernel {
 public:
  explicit ApplyAdamV1Op(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("use_locking", &use_locking_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("use_nesterov", &use_nesterov_));
    OP_REQUIRES_OK(ctx, CheckScalarAttr<T>(ctx));
  }

  void Compute(OpKernelContext* ctx) override {
    TrainingVariables vars(&CopyDeviceBuffer<Device>);
    OP_REQUIRES_OK(ctx, vars.Acquire(ctx, {{0, "var"}, {1, "m"}, {2, "v"}},
                                     DataTypeToEnum<T>::value, use_locking_, UpdateKind::kDense));

    OP_REQUIRES_OK(ctx, CheckScalarInputs(ctx));
    OP_REQUIRES_OK(ctx, CheckSameShapeAsVar(vars));
    const Tensor& var = vars.tensor(0);
    const Tensor& grad = ctx->input(kGradInput);
    OP_REQUIRES(ctx, var.shape().IsSameSize(grad.shape()),
                absl::InvalidArgumentError(absl::StrCat("var and grad do not have the same shape: ",
                                var.shape().DebugString(), " vs ", grad.shape().DebugString())));

    OP_REQUIRES_OK(ctx, vars.PrepareForInPlaceUpdate(ctx));
    if (var.NumElements() > 0) {
      OP_REQUIRES_OK(ctx, functor::ApplyAdamV1<Device, T>()(
                              ctx, vars.mutable_tensor(0).flat<T>().data(),
                              vars.mutable_tensor(1).flat<T>().data(),
                              vars.mutable_tensor(2).flat<T>().data(), grad.flat<T>().data(),
                              var.NumElements(), ScalarInputPointers<T>(ctx), use_nesterov_));
    }
    if (ctx->input_dtype(0) != DT_RESOURCE) ctx->forward_ref_input_to_ref_output(0, 0);
  }

 private:
  bool use_locking_;
  bool use_nesterov_;
};

// Reports which copy of the CPU loop runs (tf-adam-op info; the SIMD tests).
class CpuSimdOp : public OpKernel {
 public:
  using OpKernel::OpKernel;
  void Compute(OpKernelContext* ctx) override {
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, tensorflow::TensorShape({}), &out));
    out->scalar<tensorflow::tstring>()() = CpuSimd();
  }
};
REGISTER_KERNEL_BUILDER(Name("TfAdamOpCpuSimd").Device(tensorflow::DEVICE_CPU), CpuSimdOp);

// The import marker (see its registration) is pruned before anything runs; should it be run anyway
// (a TF1 session fetching it), it does nothing, on any device.
class ImportMarkerOp : public OpKernel {
 public:
  using OpKernel::OpKernel;
  void Compute(OpKernelContext*) override {}
};
REGISTER_KERNEL_BUILDER(Name("Import_tf_adam_op_before_loading_this_graph").Device(tensorflow::DEVICE_DEFAULT),
                        ImportMarkerOp);

// One registration per device. Resource handles are read in host memory (on the CPU that is all
// memory); the scalars stay in the device's memory, where the kernel reads them.
#define TF_ADAM_OP_REGISTER(DEVICE_NAME, DeviceTag, T)                                     \
  REGISTER_KERNEL_BUILDER(Name("ApplyAdamV1").Device(DEVICE_NAME).TypeConstraint<T>("T"),  \
                          ApplyAdamV1Op<DeviceTag, T>);                                    \
  REGISTER_KERNEL_BUILDER(Name("ResourceApplyAdamV1")                                      \
                              .Device(DEVICE_NAME)                                         \
                              .HostMemory("var")                                           \
                              .HostMemory("m")                                             \
                              .HostMemory("v")                                             \
                              .TypeConstraint<T>("T"),                                     \
                          ApplyAdamV1Op<DeviceTag, T>);
TF_ADAM_OP_REGISTER_ON_EVERY_DEVICE
#undef TF_ADAM_OP_REGISTER

}  // namespace tf_adam_op
