// ResourceApplyAdamV1Multi and ResourceApplyAdamV1MultiNoAdvance: one Adam step for N resource
// variables in one op (CPU kernel and registrations).
//
// The handles of vars, ms and vs come packed, N per 1-D tensor: an op (or a tf.function) with 3N
// separate resource inputs costs a fixed dispatch or capture per input, which for hundreds of small
// variables is more than the update itself. The N gradients stay a list (they are new every step).
//
// All or nothing: every variable is resolved, locked and validated (initialized, dtype, m/v/grad
// shapes) before the first element is written, so one bad tensor among the N is an error that
// leaves all of them unchanged. The work is split over the intra-op pool by the total element count
// (a global index space over the concatenated tensors), not tensor by tensor, so 200 small tensors
// and one large one keep every thread equally busy; below kMinElementsToParallelize in total one
// thread does it all. Per call the op allocates O(N) bookkeeping, nothing proportional to the
// number of parameters.
//
// ResourceApplyAdamV1Multi reads the beta power accumulators from their variables and advances them
// (beta1_power *= beta1, beta2_power *= beta2, in the accumulators' own dtype, as stock's _finish
// does) after all N updates, under the same locks. The NoAdvance variant takes their values as
// inputs and leaves advancing to the caller: the optimizer uses it when one step has several
// groups (devices, dtypes) or other updates, which must all read the same, unadvanced powers.
#define EIGEN_USE_THREADS

#include <algorithm>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/adam_kernel_common.h"
#include "kernels/apply_adam_v1.h"  // the dtype list
#include "kernels/cpu_updates.h"
#if TF_ADAM_OP_WITH_CUDA
#include "kernels/gpu_functors.h"
#endif
#include "kernels/training_variables.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "unsupported/Eigen/CXX11/Tensor"

namespace tf_adam_op {

using CPUDevice = Eigen::ThreadPoolDevice;
using ::tensorflow::DataType;
using ::tensorflow::DataTypeToEnum;
using ::tensorflow::DT_DOUBLE;
using ::tensorflow::DT_FLOAT;
using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::TensorShapeUtils;

namespace {

// Input layout: the single-variable ops' (adam_kernel_common.h) with vectors of N handles in place
// of var, m and v, the beta powers as variables (ResourceApplyAdamV1Multi) or values (NoAdvance),
// and the N grads from kGradInput on.
constexpr int kPackedInputs[] = {0, 1, 2};
constexpr const char* kPackedNames[] = {"vars", "ms", "vs"};
constexpr int kBeta1PowerInput = kFirstScalarInput;
constexpr int kBeta2PowerInput = kFirstScalarInput + 1;

}  // namespace

namespace functor {

template <typename T>
struct ApplyAdamV1Multi<CPUDevice, T> {
  absl::Status operator()(OpKernelContext* ctx, const std::vector<TensorPointers>& tensors,
                          const ScalarPointers& scalars, const Variant& variant) const {
    CpuDenseUpdate<T>(ctx->eigen_device<CPUDevice>(), tensors, LoadStep<OpMathT<T>>(scalars),
                      variant);
    return absl::OkStatus();
  }
};

template <>
struct AdvanceBetaPowers<CPUDevice> {
  absl::Status operator()(OpKernelContext* ctx, void* beta1_power, void* beta2_power,
                          bool powers_are_double, const void* beta1, const void* beta2,
                          bool betas_are_double) const {
    auto advance = [&](void* power, const void* beta) {
      const double b = betas_are_double ? *static_cast<const double*>(beta)
                                        : *static_cast<const float*>(beta);
      if (powers_are_double) {
        *static_cast<double*>(power) *= b;
      } else {  // b came from a float (or a float cast to double): converting back is exact
        *static_cast<float*>(power) *= static_cast<float>(b);
      }
    };
    advance(beta1_power, beta1);
    advance(beta2_power, beta2);
    return absl::OkStatus();
  }
};

}  // namespace functor

// kPacked: vars, ms, vs (and vhats) are vectors of N handles each (ResourceApplyAdamV1Multi and
// NoAdvance); otherwise lists of N scalar handles (ResourceApplyAdamV1MultiUnpacked, the form
// XLA can compile: tf2xla reads resource variables one input at a time, never from a vector).
template <typename Device, typename T, bool kAdvancesBetaPowers, bool kPacked = true>
class ApplyAdamV1MultiOp : public OpKernel {
 public:
  using C = OpMathT<T>;

  explicit ApplyAdamV1MultiOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("N", &n_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("use_locking", &use_locking_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("use_nesterov", &variant_.nesterov));
    OP_REQUIRES_OK(ctx, ReadVariantAttrs(ctx, "n_vhats", &variant_, kPacked ? 1 : n_));
    OP_REQUIRES_OK(ctx, OptionalInputIndex(*this, "vhats", &vhats_input_));
    OP_REQUIRES_OK(ctx, CheckScalarAttr<T>(ctx));
    if (kAdvancesBetaPowers) OP_REQUIRES_OK(ctx, ctx->GetAttr("Tpower", &power_dtype_));
    // Unpacked, input k of list `vars` is input k, of `ms` N + k, ...: the scalars start at 3N.
    first_scalar_ = kPacked ? kFirstScalarInput : 3 * n_;
  }

  void Compute(OpKernelContext* ctx) override {
    if (kPacked) {
      // (input, name) of each packed vector of handles: vars, ms, vs, and vhats with AMSGrad.
      std::vector<std::pair<int, const char*>> packed_inputs;
      for (int packed : kPackedInputs) packed_inputs.push_back({packed, kPackedNames[packed]});
      if (variant_.amsgrad) packed_inputs.push_back({vhats_input_, "vhats"});
      for (const auto& [input, name] : packed_inputs) {
        const Tensor& handles = ctx->input(input);
        OP_REQUIRES(ctx, handles.shape() == tensorflow::TensorShape({n_}),
                    absl::InvalidArgumentError(absl::StrCat(
                        name, " must hold the ", n_, " variables' handles (a vector), got shape ",
                        handles.shape().DebugString())));
      }
    }
    // Handle i of a packed input is element i of it; of a list, its own input.
    auto handle = [this](int packed_input, int i) -> std::pair<int, int> {
      return kPacked ? std::make_pair(packed_input, i) : std::make_pair(packed_input * n_ + i, -1);
    };
    // Acquired in this order: vars, ms, vs, the two powers (when read here), vhats.
    std::vector<VariableInput> inputs;
    inputs.reserve(4 * n_ + 2);
    for (int packed : kPackedInputs) {
      for (int i = 0; i < n_; ++i) {
        const auto [input, element] = handle(packed, i);
        inputs.push_back({input, kPackedNames[packed], element});
      }
    }
    if (kAdvancesBetaPowers) {
      inputs.push_back({kBeta1PowerInput, "beta1_power", -1, power_dtype_});
      inputs.push_back({kBeta2PowerInput, "beta2_power", -1, power_dtype_});
    }
    const int first_vhat = static_cast<int>(inputs.size());
    if (variant_.amsgrad) {
      for (int i = 0; i < n_; ++i) {
        inputs.push_back(kPacked ? VariableInput{vhats_input_, "vhats", i}
                                 : VariableInput{vhats_input_ + i, "vhats"});
      }
    }
    TrainingVariables vars(&CopyDeviceBuffer<Device>);
    OP_REQUIRES_OK(ctx, vars.Acquire(ctx, std::move(inputs), DataTypeToEnum<T>::value,
                                     use_locking_, UpdateKind::kDense));
    OP_REQUIRES_OK(ctx, CheckScalarInputs(ctx, first_scalar_));
    OP_REQUIRES_OK(ctx, Validate(ctx, vars, first_vhat));
    ScalarPointers scalars = ScalarInputPointers<T>(ctx, first_scalar_);
    OP_REQUIRES_OK(ctx, WeightDecayPointer(ctx, &scalars.weight_decay));
    OP_REQUIRES_OK(ctx, OneMinusBetaPointers(ctx, &scalars));
    OP_REQUIRES_OK(ctx, vars.PrepareForInPlaceUpdate(ctx));

    if (kAdvancesBetaPowers) {  // read from the variables, in their own dtype
      scalars.beta1_power = vars.mutable_tensor(3 * n_).data();
      scalars.beta2_power = vars.mutable_tensor(3 * n_ + 1).data();
      scalars.powers_are_double = power_dtype_ == DT_DOUBLE;
    }
    std::vector<TensorPointers> tensors(n_);
    for (int i = 0; i < n_; ++i) {
      tensors[i] = {vars.mutable_tensor(i).data(), vars.mutable_tensor(n_ + i).data(),
                    vars.mutable_tensor(2 * n_ + i).data(), ctx->input(first_grad() + i).data(),
                    vars.tensor(i).NumElements()};
      if (variant_.amsgrad) tensors[i].vhat = vars.mutable_tensor(first_vhat + i).data();
    }
    OP_REQUIRES_OK(ctx, functor::ApplyAdamV1Multi<Device, T>()(ctx, tensors, scalars, variant_));
    if (kAdvancesBetaPowers) {  // after the updates: on the GPU, later on the same stream
      OP_REQUIRES_OK(ctx, functor::AdvanceBetaPowers<Device>()(
                              ctx, vars.mutable_tensor(3 * n_).data(),
                              vars.mutable_tensor(3 * n_ + 1).data(), scalars.powers_are_double,
                              scalars.beta1, scalars.beta2, std::is_same<C, double>::value));
    }
  }

 private:
  // What Acquire and CheckScalarInputs do not check: the shapes of m, v, vhat and grads, the powers.
  absl::Status Validate(OpKernelContext* ctx, const TrainingVariables& vars, int first_vhat) const {
    for (int i = 0; i < n_; ++i) {
      const tensorflow::TensorShape& var = vars.tensor(i).shape();
      const tensorflow::TensorShape* others[] = {
          &vars.tensor(n_ + i).shape(), &vars.tensor(2 * n_ + i).shape(),
          &ctx->input(first_grad() + i).shape(),
          variant_.amsgrad ? &vars.tensor(first_vhat + i).shape() : &var};
      const char* other_names[] = {"ms", "vs", "grads", "vhats"};
      for (int k = 0; k < 4; ++k) {
        if (!var.IsSameSize(*others[k])) {
          return absl::InvalidArgumentError(absl::StrCat(
              "vars[", i, "] and ", other_names[k], "[", i, "] do not have the same shape: ",
              var.DebugString(), " vs ", others[k]->DebugString()));
        }
      }
    }
    if (kAdvancesBetaPowers) {
      for (int k : {3 * n_, 3 * n_ + 1}) {
        if (!TensorShapeUtils::IsScalar(vars.tensor(k).shape())) {
          return absl::InvalidArgumentError(absl::StrCat(
              vars.name(k), " must be a scalar variable, got shape ",
              vars.tensor(k).shape().DebugString()));
        }
      }
    }
    return absl::OkStatus();
  }

  int first_grad() const { return first_scalar_ + static_cast<int>(kScalarNames.size()); }

  int n_;
  bool use_locking_;
  Variant variant_;
  int vhats_input_ = -1;
  int first_scalar_ = kFirstScalarInput;
  DataType power_dtype_ = DT_FLOAT;
};

// One registration per device. The packed handles and the beta power variables are read in host
// memory (on the CPU that is all memory); scalars and gradients stay in the device's memory.
#define TF_ADAM_OP_REGISTER(DEVICE_NAME, DeviceTag, T)                                     \
  REGISTER_KERNEL_BUILDER(Name("ResourceApplyAdamV1Multi")                                 \
                              .Device(DEVICE_NAME)                                         \
                              .HostMemory("vars")                                          \
                              .HostMemory("ms")                                            \
                              .HostMemory("vs")                                            \
                              .HostMemory("vhats")                                         \
                              .HostMemory("beta1_power")                                   \
                              .HostMemory("beta2_power")                                   \
                              .TypeConstraint<T>("T"),                                     \
                          ApplyAdamV1MultiOp<DeviceTag, T, /*kAdvancesBetaPowers=*/true>); \
  REGISTER_KERNEL_BUILDER(Name("ResourceApplyAdamV1MultiNoAdvance")                        \
                              .Device(DEVICE_NAME)                                         \
                              .HostMemory("vars")                                          \
                              .HostMemory("ms")                                            \
                              .HostMemory("vs")                                            \
                              .HostMemory("vhats")                                         \
                              .TypeConstraint<T>("T"),                                     \
                          ApplyAdamV1MultiOp<DeviceTag, T, /*kAdvancesBetaPowers=*/false>); \
  REGISTER_KERNEL_BUILDER(Name("ResourceApplyAdamV1MultiUnpacked")                         \
                              .Device(DEVICE_NAME)                                         \
                              .HostMemory("vars")                                          \
                              .HostMemory("ms")                                            \
                              .HostMemory("vs")                                            \
                              .HostMemory("vhats")                                         \
                              .TypeConstraint<T>("T"),                                     \
                          ApplyAdamV1MultiOp<DeviceTag, T, /*kAdvancesBetaPowers=*/false,  \
                                             /*kPacked=*/false>);
TF_ADAM_OP_REGISTER_ON_EVERY_DEVICE
#undef TF_ADAM_OP_REGISTER

}  // namespace tf_adam_op
