// ResourceApplyAdam8bit and ResourceSparseApplyAdam8bit: the OpKernels (CPU) over the 8-bit
// states. The variables are acquired, locked and checked as for the float-state ops
// (training_variables.h), the states' shapes and scales too, all before anything is written.
#define EIGEN_USE_THREADS

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/blockwise_8bit.h"
#include "kernels/adam_kernel_common.h"
#include "kernels/apply_adam_v1.h"  // the dtype list
#include "kernels/cpu_8bit_loop.h"
#include "kernels/cpu_8bit_sparse.h"
#include "kernels/cpu_updates.h"
#include "kernels/sparse_segments.h"
#include "kernels/training_variables.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "unsupported/Eigen/CXX11/Tensor"

namespace tf_adam_op {
namespace {

using CPUDevice = Eigen::ThreadPoolDevice;
using ::tensorflow::DataTypeToEnum;
using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::TensorShape;

// The state inputs after var: codes and scales of m and v, and AMSGrad's vhat pair.
std::vector<VariableInput> StateInputs(bool amsgrad, int vhat_input) {
  std::vector<VariableInput> inputs = {{0, "var"},
                                       {1, "m_codes", -1, tensorflow::DT_UINT8},
                                       {2, "m_absmax", -1, tensorflow::DT_FLOAT},
                                       {3, "v_codes", -1, tensorflow::DT_UINT8},
                                       {4, "v_absmax", -1, tensorflow::DT_FLOAT}};
  if (amsgrad) {
    inputs.push_back({vhat_input, "vhat_codes", -1, tensorflow::DT_UINT8});
    inputs.push_back({vhat_input + 1, "vhat_absmax", -1, tensorflow::DT_FLOAT});
  }
  return inputs;
}

// Codes of var's shape, ceil(size / 256) scales each, every scale >= 0 or NaN.
absl::Status CheckStates(const TrainingVariables& vars) {
  const TensorShape& var = vars.tensor(0).shape();
  const TensorShape scales({eight_bit::BlockCount(var.num_elements())});
  for (int k = 1; k < vars.size(); k += 2) {
    const Tensor& codes = vars.tensor(k);
    const Tensor& absmax = vars.tensor(k + 1);
    if (!codes.shape().IsSameSize(var)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "var and ", vars.name(k), " do not have the same shape: ", var.DebugString(), " vs ",
          codes.shape().DebugString()));
    }
    if (!absmax.shape().IsSameSize(scales)) {
      return absl::InvalidArgumentError(absl::StrCat(
          vars.name(k + 1), " must have one scale per block of ", eight_bit::kBlockSize,
          " elements: shape ", scales.DebugString(), " for var ", var.DebugString(), ", got ",
          absmax.shape().DebugString()));
    }
    const float* data = absmax.flat<float>().data();
    for (int64_t b = 0; b < absmax.NumElements(); ++b) {
      if (!eight_bit::ValidScale(data[b])) {
        return absl::InvalidArgumentError(absl::StrCat(
            vars.name(k + 1), "[", b, "] = ", data[b],
            " is not a scale an 8-bit state can have (>= 0 and finite, or NaN): the state is "
            "corrupt"));
      }
    }
  }
  return absl::OkStatus();
}

eight_bit::States8bit StatePointers(const TrainingVariables& vars, bool amsgrad) {
  auto codes = [&](int k) { return vars.mutable_tensor(k).flat<uint8_t>().data(); };
  auto scales = [&](int k) { return vars.mutable_tensor(k).flat<float>().data(); };
  eight_bit::States8bit s{&eight_bit::SignedCodebook(), &eight_bit::UnsignedCodebook(),
                          codes(1), scales(2), codes(3), scales(4)};
  if (amsgrad) {
    s.vhat_codes = codes(5);
    s.vhat_absmax = scales(6);
  }
  return s;
}

// Attrs and the optional inputs both ops read the same way.
struct Options {
  bool use_locking = false;
  Variant variant;
  int vhat_input = -1;

  absl::Status Read(OpKernelConstruction* ctx, const OpKernel& kernel) {
    TF_RETURN_IF_ERROR(ctx->GetAttr("use_locking", &use_locking));
    TF_RETURN_IF_ERROR(ReadVariantAttrs(ctx, "n_vhat", &variant, /*vhats_for_amsgrad=*/2));
    return OptionalInputIndex(kernel, "vhat", &vhat_input);
  }
};

absl::Status ScalarInputs(OpKernelContext* ctx, ScalarPointers* scalars) {
  TF_RETURN_IF_ERROR(CheckScalarInputs(ctx, kFirst8bitScalarInput));
  TF_RETURN_IF_ERROR(WeightDecayPointer(ctx, &scalars->weight_decay));
  return OneMinusBetaPointers(ctx, scalars);
}

template <typename T>
class ApplyAdam8bitOp : public OpKernel {
 public:
  explicit ApplyAdam8bitOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, options_.Read(ctx, *this));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("use_nesterov", &options_.variant.nesterov));
    OP_REQUIRES_OK(ctx, CheckScalarAttr<T>(ctx));
  }

  void Compute(OpKernelContext* ctx) override {
    TrainingVariables vars(&CopyDeviceBuffer<CPUDevice>);
    OP_REQUIRES_OK(ctx, vars.Acquire(ctx, StateInputs(options_.variant.amsgrad, options_.vhat_input),
                                     DataTypeToEnum<T>::value, options_.use_locking,
                                     UpdateKind::kDense));
    OP_REQUIRES_OK(ctx, CheckStates(vars));
    const Tensor& var = vars.tensor(0);
    const Tensor& grad = ctx->input(k8bitGradInput);
    OP_REQUIRES(ctx, var.shape().IsSameSize(grad.shape()),
                absl::InvalidArgumentError(absl::StrCat(
                    "var and grad do not have the same shape: ", var.shape().DebugString(), " vs ",
                    grad.shape().DebugString())));
    ScalarPointers scalars = ScalarInputPointers<T>(ctx, kFirst8bitScalarInput);
    OP_REQUIRES_OK(ctx, ScalarInputs(ctx, &scalars));
    OP_REQUIRES_OK(ctx, vars.PrepareForInPlaceUpdate(ctx));

    const int64_t size = var.NumElements();
    if (size == 0) return;
    const eight_bit::States8bit states = StatePointers(vars, options_.variant.amsgrad);
    T* var_data = vars.mutable_tensor(0).flat<T>().data();
    const T* grad_data = grad.flat<T>().data();
    const AdamStep<OpMathT<T>> step = LoadStep<OpMathT<T>>(scalars);
    const int64_t blocks = eight_bit::BlockCount(size);
    // Per block: var and grad of T, two codes and their tables read; var and codes written.
    const Eigen::TensorOpCost cost((2 * sizeof(T) + 2) * eight_bit::kBlockSize,
                                   (sizeof(T) + 2) * eight_bit::kBlockSize,
                                   40 * eight_bit::kBlockSize);
    const Variant variant = options_.variant;
    ShardedFor(ctx->eigen_device<CPUDevice>(), blocks, size, cost,
               [&](int64_t first, int64_t last) {
      Cpu8bitBlocks<T>(variant, var_data, grad_data, states, size, first, last, step);
    });
  }

 private:
  Options options_;
};

template <typename T, typename Tindex>
class SparseApplyAdam8bitOp : public OpKernel {
 public:
  explicit SparseApplyAdam8bitOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, options_.Read(ctx, *this));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("lazy", &lazy_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("dense_rule", &options_.variant.dense_rule));
    OP_REQUIRES_OK(ctx, CheckScalarAttr<T>(ctx));
  }

  void Compute(OpKernelContext* ctx) override {
    // Exclusive locks: a block's codes are rewritten whole, so two sparse updates of one variable
    // must not interleave (the float-state sparse op can share its lock; this one cannot).
    TrainingVariables vars(&CopyDeviceBuffer<CPUDevice>);
    OP_REQUIRES_OK(ctx, vars.Acquire(ctx, StateInputs(options_.variant.amsgrad, options_.vhat_input),
                                     DataTypeToEnum<T>::value, options_.use_locking,
                                     UpdateKind::kDense));
    OP_REQUIRES_OK(ctx, CheckStates(vars));
    const Tensor& var = vars.tensor(0);
    const Tensor& grad = ctx->input(k8bitGradInput);
    const Tensor& indices = ctx->input(k8bitGradInput + 1);
    OP_REQUIRES_OK(ctx, CheckSparseShapes(var.shape(), grad.shape(), indices.shape()));
    tensorflow::OpInputList v_terms;
    OP_REQUIRES_OK(ctx, ctx->input_list("v_term", &v_terms));
    OP_REQUIRES(ctx, v_terms.size() == (options_.variant.dense_rule ? 1 : 0),
                absl::InvalidArgumentError(
                    "v_term is given with dense_rule=true (the square of each gradient row) and "
                    "only then"));
    const T* v_term = nullptr;
    if (v_terms.size() == 1) {
      OP_REQUIRES(ctx, v_terms[0].shape() == grad.shape(),
                  absl::InvalidArgumentError(absl::StrCat(
                      "v_term must have grad's shape: v_term ", v_terms[0].shape().DebugString(),
                      ", grad ", grad.shape().DebugString())));
      v_term = v_terms[0].flat<T>().data();
    }
    ScalarPointers scalars = ScalarInputPointers<T>(ctx, kFirst8bitScalarInput);
    OP_REQUIRES_OK(ctx, ScalarInputs(ctx, &scalars));
    const int64_t rows = var.dim_size(0);
    const Tindex* index_data = indices.vec<Tindex>().data();
    OP_REQUIRES_OK(ctx, ValidateIndices(index_data, indices.NumElements(), rows));
    OP_REQUIRES_OK(ctx, vars.PrepareForInPlaceUpdate(ctx));
    if (var.NumElements() == 0) return;
    const SortedSegments segments = SortIntoSegments(index_data, indices.NumElements());
    CpuSparse8bitUpdate<T>(ctx->eigen_device<CPUDevice>(), vars.mutable_tensor(0).flat<T>().data(),
                           StatePointers(vars, options_.variant.amsgrad), rows,
                           var.NumElements() / rows, grad.flat<T>().data(), v_term, segments,
                           LoadStep<OpMathT<T>>(scalars), lazy_, options_.variant);
  }

 private:
  Options options_;
  bool lazy_ = false;
};

}  // namespace

// CPU kernels only: the variables and their states are read and written in host memory.
#define TF_ADAM_OP_REGISTER_8BIT(T)                                                          \
  REGISTER_KERNEL_BUILDER(                                                                   \
      Name("ResourceApplyAdam8bit").Device(::tensorflow::DEVICE_CPU).TypeConstraint<T>("T"), \
      ApplyAdam8bitOp<T>);                                                                   \
  REGISTER_KERNEL_BUILDER(Name("ResourceSparseApplyAdam8bit")                                \
                              .Device(::tensorflow::DEVICE_CPU)                              \
                              .TypeConstraint<T>("T")                                        \
                              .TypeConstraint<int32_t>("Tindices"),                          \
                          SparseApplyAdam8bitOp<T, int32_t>);                                \
  REGISTER_KERNEL_BUILDER(Name("ResourceSparseApplyAdam8bit")                                \
                              .Device(::tensorflow::DEVICE_CPU)                              \
                              .TypeConstraint<T>("T")                                        \
                              .TypeConstraint<int64_t>("Tindices"),                          \
                          SparseApplyAdam8bitOp<T, int64_t>);
TF_ADAM_OP_FOR_EACH_TYPE(TF_ADAM_OP_REGISTER_8BIT)
#undef TF_ADAM_OP_REGISTER_8BIT

}  // namespace tf_adam_op
