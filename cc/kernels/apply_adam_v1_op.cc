// ApplyAdamV1 / ResourceApplyAdamV1: the OpKernel, the CPU functor and the kernel registrations.
#define EIGEN_USE_THREADS

#include "kernels/apply_adam_v1.h"

#include "kernels/adam_kernel_common.h"
#include "kernels/cpu_adam_loop.h"
#include "kernels/cpu_updates.h"
#if TF_ADAM_OP_WITH_CUDA
#include "kernels/gpu_functors.h"
#endif
#include "kernels/training_variables.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/register_types.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "absl/strings/str_cat.h"
#include <utility>
#include <vector>
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
  absl::Status operator()(OpKernelContext* ctx, const TensorPointers& t,
                          const ScalarPointers& scalars, const Variant& variant) const {
    CpuDenseUpdate<T>(ctx->eigen_device<CPUDevice>(), {t}, LoadStep<OpMathT<T>>(scalars), variant);
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
    OP_REQUIRES_OK(ctx, ctx->GetAttr("use_nesterov", &variant_.nesterov));
    OP_REQUIRES_OK(ctx, ReadVariantAttrs(ctx, "n_vhat", &variant_));
    OP_REQUIRES_OK(ctx, OptionalInputIndex(*this, "vhat", &vhat_input_));
    OP_REQUIRES_OK(ctx, CheckScalarAttr<T>(ctx));
  }

  void Compute(OpKernelContext* ctx) override {
    TrainingVariables vars(&CopyDeviceBuffer<Device>);
    std::vector<VariableInput> inputs = {{0, "var"}, {1, "m"}, {2, "v"}};
    if (variant_.amsgrad) inputs.push_back({vhat_input_, "vhat"});
    OP_REQUIRES_OK(ctx, vars.Acquire(ctx, std::move(inputs), DataTypeToEnum<T>::value,
                                     use_locking_, UpdateKind::kDense));

    OP_REQUIRES_OK(ctx, CheckScalarInputs(ctx));
    OP_REQUIRES_OK(ctx, CheckSameShapeAsVar(vars));
    const Tensor& var = vars.tensor(0);
    const Tensor& grad = ctx->input(kGradInput);
    OP_REQUIRES(ctx, var.shape().IsSameSize(grad.shape()),
                absl::InvalidArgumentError(absl::StrCat("var and grad do not have the same shape: ",
                                var.shape().DebugString(), " vs ", grad.shape().DebugString())));

    ScalarPointers scalars = ScalarInputPointers<T>(ctx);
    OP_REQUIRES_OK(ctx, WeightDecayPointer(ctx, &scalars.weight_decay));
    OP_REQUIRES_OK(ctx, OneMinusBetaPointers(ctx, &scalars));

    OP_REQUIRES_OK(ctx, vars.PrepareForInPlaceUpdate(ctx));
    if (var.NumElements() > 0) {
      TensorPointers tensor{vars.mutable_tensor(0).data(), vars.mutable_tensor(1).data(),
                            vars.mutable_tensor(2).data(), grad.data(), var.NumElements()};
      if (variant_.amsgrad) tensor.vhat = vars.mutable_tensor(3).data();
      OP_REQUIRES_OK(ctx, functor::ApplyAdamV1<Device, T>()(ctx, tensor, scalars, variant_));
    }
    if (ctx->input_dtype(0) != DT_RESOURCE) ctx->forward_ref_input_to_ref_output(0, 0);
  }

 private:
  bool use_locking_;
  Variant variant_;
  int vhat_input_ = -1;
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
                              .HostMemory("vhat")                                          \
                              .TypeConstraint<T>("T"),                                     \
                          ApplyAdamV1Op<DeviceTag, T>);
TF_ADAM_OP_REGISTER_ON_EVERY_DEVICE
#undef TF_ADAM_OP_REGISTER

}  // namespace tf_adam_op
