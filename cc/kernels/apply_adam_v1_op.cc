// ApplyAdamV1 / ResourceApplyAdamV1: the OpKernel, the CPU functor and the kernel registrations.
#define EIGEN_USE_THREADS

#include "kernels/apply_adam_v1.h"

#include <array>

#include "kernels/training_variables.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/register_types.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "absl/strings/str_cat.h"
#include "unsupported/Eigen/CXX11/Tensor"

namespace tf_adam_op {

using CPUDevice = Eigen::ThreadPoolDevice;
using ::tensorflow::DataTypeString;
using ::tensorflow::DataTypeToEnum;
using ::tensorflow::DT_RESOURCE;
using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::TensorShapeUtils;

namespace functor {

// Below this many elements one thread does the whole update: handing work to the pool costs
// microseconds, about what one core needs for this many elements.
constexpr int64_t kMinElementsToParallelize = 1 << 15;

template <typename T>
struct ApplyAdamV1<CPUDevice, T> {
  using Scalar = typename tensorflow::TTypes<OpMathT<T>>::ConstScalar;
  void operator()(const CPUDevice& d, typename tensorflow::TTypes<T>::Flat var,
                  typename tensorflow::TTypes<T>::Flat m, typename tensorflow::TTypes<T>::Flat v,
                  Scalar beta1_power, Scalar beta2_power, Scalar lr, Scalar beta1, Scalar beta2,
                  Scalar epsilon, typename tensorflow::TTypes<T>::ConstFlat grad,
                  bool use_nesterov) const {
    const AdamStep<OpMathT<T>> step =
        MakeAdamStep(beta1_power(), beta2_power(), lr(), beta1(), beta2(), epsilon());
    T* var_data = var.data();
    T* m_data = m.data();
    T* v_data = v.data();
    const T* grad_data = grad.data();
    auto update = [=](Eigen::Index begin, Eigen::Index end) {
      AdamUpdateRange<T>(use_nesterov, var_data, m_data, v_data, grad_data, begin, end, step);
    };
    const Eigen::Index size = var.size();
    if (size < kMinElementsToParallelize) {
      update(0, size);
      return;
    }
    // Per element: var, m, v, grad read; var, m, v written; a division and a square root.
    const Eigen::TensorOpCost cost(4 * sizeof(T), 3 * sizeof(T), /*compute_cycles=*/20);
    d.parallelFor(size, cost, update);
  }
};

}  // namespace functor

namespace {

constexpr int kNumVariableInputs = 3;
constexpr int kFirstScalarInput = 3;
constexpr std::array<const char*, 6> kScalarNames = {"beta1_power", "beta2_power", "lr",
                                                     "beta1",       "beta2",       "epsilon"};
constexpr int kGradInput = kFirstScalarInput + static_cast<int>(kScalarNames.size());

}  // namespace

// One kernel serves ApplyAdamV1 (ref inputs) and ResourceApplyAdamV1 (handles), as in stock.
template <typename Device, typename T>
class ApplyAdamV1Op : public OpKernel {
 public:
  explicit ApplyAdamV1Op(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("use_locking", &use_locking_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("use_nesterov", &use_nesterov_));
    DataType scalar_type;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("Tscalar", &scalar_type));
    const DataType compute_type = DataTypeToEnum<OpMathT<T>>::value;
    OP_REQUIRES(ctx, scalar_type == compute_type,
                absl::InvalidArgumentError(absl::StrCat("The hyperparameters of an Adam update of ",
                                DataTypeString(DataTypeToEnum<T>::value), " variables must be ",
                                DataTypeString(compute_type), ", got ",
                                DataTypeString(scalar_type))));
  }

  void Compute(OpKernelContext* ctx) override {
    TrainingVariables vars(&CopyDeviceBuffer<Device>);
    OP_REQUIRES_OK(ctx, vars.Acquire(ctx, {{0, "var"}, {1, "m"}, {2, "v"}},
                                     DataTypeToEnum<T>::value, use_locking_, UpdateKind::kDense));

    for (int i = 0; i < static_cast<int>(kScalarNames.size()); ++i) {
      const Tensor& scalar = ctx->input(kFirstScalarInput + i);
      OP_REQUIRES(ctx, TensorShapeUtils::IsScalar(scalar.shape()),
                  absl::InvalidArgumentError(absl::StrCat(kScalarNames[i], " is not a scalar: ",
                                  scalar.shape().DebugString())));
    }
    const Tensor& var = vars.tensor(0);
    for (int k = 1; k < kNumVariableInputs; ++k) {
      OP_REQUIRES(ctx, var.shape().IsSameSize(vars.tensor(k).shape()),
                  absl::InvalidArgumentError(absl::StrCat("var and ", vars.name(k), " do not have the same shape: ",
                                  var.shape().DebugString(), " vs ",
                                  vars.tensor(k).shape().DebugString())));
    }
    const Tensor& grad = ctx->input(kGradInput);
    OP_REQUIRES(ctx, var.shape().IsSameSize(grad.shape()),
                absl::InvalidArgumentError(absl::StrCat("var and grad do not have the same shape: ",
                                var.shape().DebugString(), " vs ", grad.shape().DebugString())));

    OP_REQUIRES_OK(ctx, vars.PrepareForInPlaceUpdate(ctx));
    if (var.NumElements() > 0) {
      using C = OpMathT<T>;
      auto scalar = [ctx](int i) { return ctx->input(kFirstScalarInput + i).scalar<C>(); };
      functor::ApplyAdamV1<Device, T>()(
          ctx->eigen_device<Device>(), vars.mutable_tensor(0).flat<T>(),
          vars.mutable_tensor(1).flat<T>(), vars.mutable_tensor(2).flat<T>(), scalar(0),
          scalar(1), scalar(2), scalar(3), scalar(4), scalar(5), grad.flat<T>(), use_nesterov_);
    }
    if (ctx->input_dtype(0) != DT_RESOURCE) ctx->forward_ref_input_to_ref_output(0, 0);
  }

 private:
  bool use_locking_;
  bool use_nesterov_;
};

#define TF_ADAM_OP_REGISTER_CPU(T)                                                      \
  REGISTER_KERNEL_BUILDER(                                                              \
      Name("ApplyAdamV1").Device(tensorflow::DEVICE_CPU).TypeConstraint<T>("T"),        \
      ApplyAdamV1Op<CPUDevice, T>);                                                     \
  REGISTER_KERNEL_BUILDER(                                                              \
      Name("ResourceApplyAdamV1").Device(tensorflow::DEVICE_CPU).TypeConstraint<T>("T"), \
      ApplyAdamV1Op<CPUDevice, T>);
TF_ADAM_OP_FOR_EACH_TYPE(TF_ADAM_OP_REGISTER_CPU)
#undef TF_ADAM_OP_REGISTER_CPU

}  // namespace tf_adam_op
