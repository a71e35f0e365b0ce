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
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/adam_kernel_common.h"
#include "kernels/apply_adam_v1.h"  // the dtype list
#include "kernels/cpu_adam_loop.h"
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

// Input layout: packed vars, ms, vs; the two beta powers (handles or values); lr, beta1, beta2,
// epsilon; then the N grads.
struct MultiInputs {
  static constexpr int kVars = 0, kMs = 1, kVs = 2, kBeta1Power = 3, kBeta2Power = 4, kLr = 5,
                       kBeta1 = 6, kBeta2 = 7, kEpsilon = 8, kFirstGrad = 9;
  static constexpr const char* kPackedNames[] = {"vars", "ms", "vs"};
  static int grad(int i) { return kFirstGrad + i; }
};

// Flat pointers of the N tensors and where each starts in the global element index space.
template <typename T>
struct FlatTensors {
  std::vector<T*> var, m, v;
  std::vector<const T*> grad;
  std::vector<int64_t> offsets;  // N + 1 entries; offsets[N] is the total element count
};

// Runs the update over global elements [begin, end), which may span several tensors.
template <typename T>
void UpdateGlobalRange(const FlatTensors<T>& t, bool use_nesterov,
                       const AdamStep<OpMathT<T>>& step, int64_t begin, int64_t end) {
  // The last tensor starting at or before `begin` (empty tensors share offsets and are skipped).
  int k = static_cast<int>(std::upper_bound(t.offsets.begin(), t.offsets.end(), begin) -
                           t.offsets.begin()) - 1;
  while (begin < end) {
    const int64_t tensor_end = std::min(end, t.offsets[k + 1]);
    if (tensor_end > begin) {
      const int64_t base = t.offsets[k];
      CpuAdamUpdateRange<T>(use_nesterov, t.var[k], t.m[k], t.v[k], t.grad[k], begin - base,
                            tensor_end - base, step);
      begin = tensor_end;
    }
    ++k;
  }
}

// Multiplies a scalar accumulator variable by `beta` in the accumulator's own dtype.
template <typename C>
void AdvancePower(Tensor power, C beta) {
  if (power.dtype() == DT_DOUBLE) {
    power.scalar<double>()() *= static_cast<double>(beta);
  } else {
    power.scalar<float>()() *= static_cast<float>(beta);
  }
}

template <typename C>
C PowerValue(const Tensor& power) {
  return power.dtype() == DT_DOUBLE ? static_cast<C>(power.scalar<double>()())
                                    : static_cast<C>(power.scalar<float>()());
}

}  // namespace

template <typename Device, typename T, bool kAdvancesBetaPowers>
class ApplyAdamV1MultiOp : public OpKernel {
 public:
  using C = OpMathT<T>;

  explicit ApplyAdamV1MultiOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("N", &n_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("use_locking", &use_locking_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("use_nesterov", &use_nesterov_));
    OP_REQUIRES_OK(ctx, CheckScalarAttr<T>(ctx));
    if (kAdvancesBetaPowers) OP_REQUIRES_OK(ctx, ctx->GetAttr("Tpower", &power_dtype_));
  }

  void Compute(OpKernelContext* ctx) override {
    using In = MultiInputs;
    for (int packed : {In::kVars, In::kMs, In::kVs}) {
      const Tensor& handles = ctx->input(packed);
      OP_REQUIRES(ctx, handles.shape() == tensorflow::TensorShape({n_}),
                  absl::InvalidArgumentError(absl::StrCat(
                      In::kPackedNames[packed], " must hold the ", n_,
                      " variables' handles (a vector), got shape ",
                      handles.shape().DebugString())));
    }
    std::vector<VariableInput> inputs;
    inputs.reserve(3 * n_ + 2);
    for (int packed : {In::kVars, In::kMs, In::kVs}) {
      for (int i = 0; i < n_; ++i) inputs.push_back({packed, In::kPackedNames[packed], i});
    }
    if (kAdvancesBetaPowers) {
      inputs.push_back({In::kBeta1Power, "beta1_power", -1, power_dtype_});
      inputs.push_back({In::kBeta2Power, "beta2_power", -1, power_dtype_});
    }
    TrainingVariables vars(&CopyDeviceBuffer<Device>);
    OP_REQUIRES_OK(ctx, vars.Acquire(ctx, std::move(inputs), DataTypeToEnum<T>::value,
                                     use_locking_, UpdateKind::kDense));
    OP_REQUIRES_OK(ctx, Validate(ctx, vars));
    OP_REQUIRES_OK(ctx, vars.PrepareForInPlaceUpdate(ctx));

    // Nothing can fail from here on.
    const C beta1_power = kAdvancesBetaPowers ? PowerValue<C>(vars.tensor(3 * n_))
                                              : ctx->input(In::kBeta1Power).scalar<C>()();
    const C beta2_power = kAdvancesBetaPowers ? PowerValue<C>(vars.tensor(3 * n_ + 1))
                                              : ctx->input(In::kBeta2Power).scalar<C>()();
    const C beta1 = ctx->input(In::kBeta1).scalar<C>()();
    const C beta2 = ctx->input(In::kBeta2).scalar<C>()();
    const AdamStep<C> step =
        MakeAdamStep(beta1_power, beta2_power, ctx->input(In::kLr).scalar<C>()(), beta1, beta2,
                     ctx->input(In::kEpsilon).scalar<C>()());

    FlatTensors<T> flat;
    flat.offsets.reserve(n_ + 1);
    flat.offsets.push_back(0);
    for (int i = 0; i < n_; ++i) {
      flat.var.push_back(vars.mutable_tensor(i).flat<T>().data());
      flat.m.push_back(vars.mutable_tensor(n_ + i).flat<T>().data());
      flat.v.push_back(vars.mutable_tensor(2 * n_ + i).flat<T>().data());
      flat.grad.push_back(ctx->input(In::grad(i)).flat<T>().data());
      flat.offsets.push_back(flat.offsets.back() + vars.tensor(i).NumElements());
    }
    const int64_t total = flat.offsets.back();
    auto update = [&flat, &step, this](int64_t begin, int64_t end) {
      UpdateGlobalRange<T>(flat, use_nesterov_, step, begin, end);
    };
    // Per element: var, m, v, grad read; var, m, v written; a division and a square root.
    const Eigen::TensorOpCost cost(4 * sizeof(T), 3 * sizeof(T), /*compute_cycles=*/20);
    if (total > 0) ShardedFor(ctx->eigen_device<Device>(), total, total, cost, update);

    if (kAdvancesBetaPowers) {
      AdvancePower(vars.mutable_tensor(3 * n_), beta1);
      AdvancePower(vars.mutable_tensor(3 * n_ + 1), beta2);
    }
  }

 private:
  // Everything Acquire does not check: shapes of m, v and grads, the scalars, the powers.
  absl::Status Validate(OpKernelContext* ctx, const TrainingVariables& vars) const {
    using In = MultiInputs;
    for (int i = 0; i < n_; ++i) {
      const tensorflow::TensorShape& var = vars.tensor(i).shape();
      const tensorflow::TensorShape* others[] = {&vars.tensor(n_ + i).shape(),
                                                 &vars.tensor(2 * n_ + i).shape(),
                                                 &ctx->input(In::grad(i)).shape()};
      const char* other_names[] = {"ms", "vs", "grads"};
      for (int k = 0; k < 3; ++k) {
        if (!var.IsSameSize(*others[k])) {
          return absl::InvalidArgumentError(absl::StrCat(
              "vars[", i, "] and ", other_names[k], "[", i, "] do not have the same shape: ",
              var.DebugString(), " vs ", others[k]->DebugString()));
        }
      }
    }
    const int first_scalar = kAdvancesBetaPowers ? In::kLr : In::kBeta1Power;
    for (int index = first_scalar; index <= In::kEpsilon; ++index) {
      const Tensor& scalar = ctx->input(index);
      if (!TensorShapeUtils::IsScalar(scalar.shape())) {
        return absl::InvalidArgumentError(absl::StrCat(
            kScalarNames[index - In::kBeta1Power], " is not a scalar: ",
            scalar.shape().DebugString()));
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

  int n_;
  bool use_locking_;
  bool use_nesterov_;
  DataType power_dtype_ = DT_FLOAT;
};

#define TF_ADAM_OP_REGISTER_CPU(T)                                                           \
  REGISTER_KERNEL_BUILDER(Name("ResourceApplyAdamV1Multi")                                   \
                              .Device(tensorflow::DEVICE_CPU)                                \
                              .TypeConstraint<T>("T"),                                       \
                          ApplyAdamV1MultiOp<CPUDevice, T, /*kAdvancesBetaPowers=*/true>);   \
  REGISTER_KERNEL_BUILDER(Name("ResourceApplyAdamV1MultiNoAdvance")                          \
                              .Device(tensorflow::DEVICE_CPU)                                \
                              .TypeConstraint<T>("T"),                                       \
                          ApplyAdamV1MultiOp<CPUDevice, T, /*kAdvancesBetaPowers=*/false>);
TF_ADAM_OP_FOR_EACH_TYPE(TF_ADAM_OP_REGISTER_CPU)
#undef TF_ADAM_OP_REGISTER_CPU

}  // namespace tf_adam_op
