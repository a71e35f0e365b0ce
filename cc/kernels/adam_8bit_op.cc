// ResourceApplyAdam8bit, ResourceSparseApplyAdam8bit, ResourceApplyAdam8bitMulti and its
// unpacked sibling: the OpKernels over the 8-bit states, on the CPU and (where the CUDA kernels
// are built) the GPU. The variables are acquired, locked and checked as for the float-state ops
// (training_variables.h), the states' shapes and scales too, all before anything is written; the
// updates are the device's functors (adam_8bit_functors.h, gpu_8bit_functors.h).
#define EIGEN_USE_THREADS

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/blockwise_8bit.h"
#include "kernels/adam_8bit_functors.h"
#include "kernels/adam_kernel_common.h"
#include "kernels/corrupt_scales.h"
#include "kernels/apply_adam_v1.h"  // the dtype list, the registration on every device
#include "kernels/sparse_segments.h"
#include "kernels/training_variables.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor_shape.h"
#if TF_ADAM_OP_WITH_CUDA
#include "kernels/gpu_8bit_functors.h"
#endif

namespace tf_adam_op {
namespace {

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

// Codes of var's shape, ceil(size / 256) scales each, every scale >= 0 or NaN: the states at
// `pairs` (the acquired variables' positions of each codes, absmax pair) of the variable at `var_k`.
template <typename Device>
absl::Status CheckStatesOf(tensorflow::OpKernelContext* ctx, const TrainingVariables& vars,
                           int var_k, const std::vector<std::pair<int, int>>& pairs) {
  const TensorShape& var = vars.tensor(var_k).shape();
  const TensorShape scales({eight_bit::BlockCount(var.num_elements())});
  for (const auto& [k, scales_k] : pairs) {
    const Tensor& codes = vars.tensor(k);
    const Tensor& absmax = vars.tensor(scales_k);
    if (!codes.shape().IsSameSize(var)) {
      return absl::InvalidArgumentError(absl::StrCat(
          vars.name(var_k), " and ", vars.name(k), " do not have the same shape: ", var.DebugString(), " vs ",
          codes.shape().DebugString()));
    }
    if (!absmax.shape().IsSameSize(scales)) {
      return absl::InvalidArgumentError(absl::StrCat(
          vars.name(scales_k), " must have one scale per block of ", eight_bit::kBlockSize,
          " elements: shape ", scales.DebugString(), " for ", vars.name(var_k), " ", var.DebugString(), ", got ",
          absmax.shape().DebugString()));
    }
    std::vector<float> copy;
    const float* data = nullptr;
    TF_RETURN_IF_ERROR(functor::HostScales<Device>()(ctx, absmax, &copy, &data));
    const int64_t bad = eight_bit::FirstInvalidScale(data, absmax.NumElements());
    if (bad >= 0) {
      return absl::InvalidArgumentError(
          eight_bit::CorruptScaleMessage(vars.name(scales_k), bad, data[bad]));
    }
  }
  return absl::OkStatus();
}

// The states of one variable: the acquired variables' positions of its m, v (and vhat) pairs.
template <typename Device>
absl::Status CheckStates(tensorflow::OpKernelContext* ctx, const TrainingVariables& vars) {
  std::vector<std::pair<int, int>> pairs;
  for (int k = 1; k < vars.size(); k += 2) pairs.push_back({k, k + 1});
  return CheckStatesOf<Device>(ctx, vars, 0, pairs);
}

eight_bit::States8bit StatePointersOf(const TrainingVariables& vars,
                                      const std::vector<std::pair<int, int>>& pairs) {
  auto codes = [&](int k) { return vars.mutable_tensor(k).flat<uint8_t>().data(); };
  auto scales = [&](int k) { return vars.mutable_tensor(k).flat<float>().data(); };
  eight_bit::States8bit s{&eight_bit::SignedCodebook(), &eight_bit::UnsignedCodebook(),
                          codes(pairs[0].first), scales(pairs[0].second),
                          codes(pairs[1].first), scales(pairs[1].second)};
  if (pairs.size() == 3) {
    s.vhat_codes = codes(pairs[2].first);
    s.vhat_absmax = scales(pairs[2].second);
  }
  return s;
}

eight_bit::States8bit StatePointers(const TrainingVariables& vars, bool amsgrad) {
  std::vector<std::pair<int, int>> pairs = {{1, 2}, {3, 4}};
  if (amsgrad) pairs.push_back({5, 6});
  return StatePointersOf(vars, pairs);
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

  // The variable and its states, locked and checked. Exclusive locks for sparse updates too: a
  // block's codes are rewritten whole, so two updates of one variable must never interleave (the
  // float-state sparse op can share its lock; these cannot).
  template <typename Device, typename T>
  absl::Status Acquire(OpKernelContext* ctx, TrainingVariables* vars) const {
    TF_RETURN_IF_ERROR(vars->Acquire(ctx, StateInputs(variant.amsgrad, vhat_input),
                                     DataTypeToEnum<T>::value, use_locking, UpdateKind::kDense));
    return CheckStates<Device>(ctx, *vars);
  }
};

absl::Status ScalarInputs(OpKernelContext* ctx, ScalarPointers* scalars) {
  TF_RETURN_IF_ERROR(CheckScalarInputs(ctx, kFirst8bitScalarInput));
  TF_RETURN_IF_ERROR(WeightDecayPointer(ctx, &scalars->weight_decay));
  return OneMinusBetaPointers(ctx, scalars);
}

template <typename Device, typename T>
class ApplyAdam8bitOp : public OpKernel {
 public:
  explicit ApplyAdam8bitOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, options_.Read(ctx, *this));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("use_nesterov", &options_.variant.nesterov));
    OP_REQUIRES_OK(ctx, CheckScalarAttr<T>(ctx));
  }

  void Compute(OpKernelContext* ctx) override {
    TrainingVariables vars(&CopyDeviceBuffer<Device>);
    OP_REQUIRES_OK(ctx, (options_.Acquire<Device, T>(ctx, &vars)));
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
    const std::vector<Tensor8bit<T>> tensors = {
        {vars.mutable_tensor(0).flat<T>().data(), grad.flat<T>().data(), size,
         StatePointers(vars, options_.variant.amsgrad)}};
    OP_REQUIRES_OK(ctx, (functor::Adam8bitDense<Device, T>()(ctx, options_.variant, tensors,
                                                             scalars)));
  }

 private:
  Options options_;
};

template <typename Device, typename T, typename Tindex>
class SparseApplyAdam8bitOp : public OpKernel {
 public:
  explicit SparseApplyAdam8bitOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, options_.Read(ctx, *this));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("lazy", &lazy_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("dense_rule", &options_.variant.dense_rule));
    OP_REQUIRES_OK(ctx, CheckScalarAttr<T>(ctx));
  }

  void Compute(OpKernelContext* ctx) override {
    TrainingVariables vars(&CopyDeviceBuffer<Device>);
    OP_REQUIRES_OK(ctx, (options_.Acquire<Device, T>(ctx, &vars)));
    const Tensor& var = vars.tensor(0);
    const Tensor& grad = ctx->input(k8bitGradInput);
    const Tensor& indices = ctx->input(k8bitGradInput + 1);  // host memory on every device
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
    OP_REQUIRES_OK(ctx, (functor::Adam8bitSparse<Device, T>()(
                            ctx, options_.variant, lazy_, vars.mutable_tensor(0).flat<T>().data(),
                            StatePointers(vars, options_.variant.amsgrad), rows,
                            var.NumElements() / rows, grad.flat<T>().data(), v_term, segments,
                            scalars)));
  }

 private:
  Options options_;
  bool lazy_ = false;
};

// N variables in one op. kPacked: vectors of N handles (ResourceApplyAdam8bitMulti); otherwise
// lists of N handles (ResourceApplyAdam8bitMultiUnpacked, the form XLA compiles).
template <typename Device, typename T, bool kPacked = true>
class ApplyAdam8bitMultiOp : public OpKernel {
 public:
  explicit ApplyAdam8bitMultiOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("N", &n_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("use_locking", &use_locking_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("use_nesterov", &variant_.nesterov));
    OP_REQUIRES_OK(ctx, ReadVariantAttrs(ctx, "n_vhat", &variant_,
                                         /*vhats_for_amsgrad=*/kPacked ? 2 : 2 * n_));
    OP_REQUIRES_OK(ctx, OptionalInputIndex(*this, "vhat", &vhat_input_));
    OP_REQUIRES_OK(ctx, CheckScalarAttr<T>(ctx));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("variable_names", &variable_names_));
    OP_REQUIRES(ctx, variable_names_.empty() || static_cast<int>(variable_names_.size()) == n_,
                absl::InvalidArgumentError(absl::StrCat(
                    "variable_names must be empty or name the ", n_, " variables, got ",
                    variable_names_.size(), " names")));
  }

  void Compute(OpKernelContext* ctx) override {
    static const char* const kLists[] = {"vars",     "m_codes",    "m_absmax",   "v_codes",
                                         "v_absmax", "vhat_codes", "vhat_absmax"};
    static const tensorflow::DataType kTypes[] = {
        tensorflow::DT_INVALID, tensorflow::DT_UINT8, tensorflow::DT_FLOAT, tensorflow::DT_UINT8,
        tensorflow::DT_FLOAT,   tensorflow::DT_UINT8, tensorflow::DT_FLOAT};
    // Where each list starts: the five lists' inputs (packed: 0-4; unpacked: N inputs each), then
    // vhat's two after the grads.
    const int step = kPacked ? 1 : n_;
    std::vector<int> lists = {0, step, 2 * step, 3 * step, 4 * step};
    if (variant_.amsgrad) lists.insert(lists.end(), {vhat_input_, vhat_input_ + step});
    std::vector<VariableInput> inputs;
    for (size_t list = 0; list < lists.size(); ++list) {
      if (kPacked) {
        const Tensor& handles = ctx->input(lists[list]);
        OP_REQUIRES(ctx, handles.shape() == TensorShape({n_}),
                    absl::InvalidArgumentError(absl::StrCat(
                        kLists[list], " must hold the ", n_,
                        " variables' handles (a vector), got shape ",
                        handles.shape().DebugString())));
      }
      for (int k = 0; k < n_; ++k) {
        if (kPacked) {
          inputs.push_back({lists[list], kLists[list], k, kTypes[list]});
        } else {
          inputs.push_back({lists[list] + k, kLists[list], -1, kTypes[list], k});
        }
      }
    }
    TrainingVariables vars(&CopyDeviceBuffer<Device>);
    OP_REQUIRES_OK(ctx, vars.Acquire(ctx, std::move(inputs), DataTypeToEnum<T>::value,
                                     use_locking_, UpdateKind::kDense));
    const int first_scalar = 5 * step;
    const int first_grad = first_scalar + kScalarCount;
    std::vector<std::vector<std::pair<int, int>>> pairs(n_);
    for (int k = 0; k < n_; ++k) {
      pairs[k] = {{n_ + k, 2 * n_ + k}, {3 * n_ + k, 4 * n_ + k}};
      if (variant_.amsgrad) pairs[k].push_back({5 * n_ + k, 6 * n_ + k});
      OP_REQUIRES_OK(ctx, NamedStatus(k, CheckStatesOf<Device>(ctx, vars, k, pairs[k])));
      const TensorShape& var = vars.tensor(k).shape();
      const TensorShape& grad = ctx->input(first_grad + k).shape();
      OP_REQUIRES(ctx, var.IsSameSize(grad),
                  absl::InvalidArgumentError(absl::StrCat(
                      "vars[", k, "] and grads[", k, "] do not have the same shape: ",
                      var.DebugString(), " vs ", grad.DebugString())));
    }
    OP_REQUIRES_OK(ctx, CheckScalarInputs(ctx, first_scalar));
    ScalarPointers scalars = ScalarInputPointers<T>(ctx, first_scalar);
    OP_REQUIRES_OK(ctx, WeightDecayPointer(ctx, &scalars.weight_decay));
    OP_REQUIRES_OK(ctx, OneMinusBetaPointers(ctx, &scalars));
    OP_REQUIRES_OK(ctx, vars.PrepareForInPlaceUpdate(ctx));

    std::vector<Tensor8bit<T>> tensors;
    for (int k = 0; k < n_; ++k) {
      const int64_t size = vars.tensor(k).NumElements();
      if (size == 0) continue;
      tensors.push_back({vars.mutable_tensor(k).flat<T>().data(),
                         ctx->input(first_grad + k).flat<T>().data(), size,
                         StatePointersOf(vars, pairs[k])});
    }
    if (tensors.empty()) return;
    OP_REQUIRES_OK(ctx, (functor::Adam8bitDense<Device, T>()(ctx, variant_, tensors, scalars)));
  }

 private:
  // An error about variable k's states (which name its inputs: m_absmax[k]), with its name.
  absl::Status NamedStatus(int k, absl::Status status) const {
    if (status.ok() || variable_names_.empty()) return status;
    return absl::Status(status.code(), absl::StrCat("the 8-bit states of ", variable_names_[k],
                                                    ": ", status.message()));
  }

  int n_ = 1;
  bool use_locking_ = false;
  Variant variant_;
  int vhat_input_ = -1;
  std::vector<std::string> variable_names_;
};

}  // namespace

// On every device the library is built for: the handles, and the sparse op's indices (sorted
// into segments on the host), in host memory. The state handles, as every 8-bit op names them:
#define TF_ADAM_OP_8BIT_STATE_HANDLES                                           \
  .HostMemory("m_codes").HostMemory("m_absmax").HostMemory("v_codes").HostMemory( \
      "v_absmax").HostMemory("vhat")
#define TF_ADAM_OP_REGISTER_SPARSE(DEVICE_NAME, DeviceTag, T, Tindex)                          \
  REGISTER_KERNEL_BUILDER(Name("ResourceSparseApplyAdam8bit")                                  \
                              .Device(DEVICE_NAME)                                             \
                              .HostMemory("var")                                               \
                              TF_ADAM_OP_8BIT_STATE_HANDLES                                    \
                              .HostMemory("indices")                                           \
                              .TypeConstraint<T>("T")                                          \
                              .TypeConstraint<Tindex>("Tindices"),                             \
                          SparseApplyAdam8bitOp<DeviceTag, T, Tindex>);
#define TF_ADAM_OP_REGISTER(DEVICE_NAME, DeviceTag, T)                                         \
  REGISTER_KERNEL_BUILDER(Name("ResourceApplyAdam8bit")                                        \
                              .Device(DEVICE_NAME)                                             \
                              .HostMemory("var")                                               \
                              TF_ADAM_OP_8BIT_STATE_HANDLES                                    \
                              .TypeConstraint<T>("T"),                                         \
                          ApplyAdam8bitOp<DeviceTag, T>);                                      \
  TF_ADAM_OP_REGISTER_SPARSE(DEVICE_NAME, DeviceTag, T, int32_t)                               \
  TF_ADAM_OP_REGISTER_SPARSE(DEVICE_NAME, DeviceTag, T, int64_t)                               \
  REGISTER_KERNEL_BUILDER(Name("ResourceApplyAdam8bitMulti")                                   \
                              .Device(DEVICE_NAME)                                             \
                              .HostMemory("vars")                                              \
                              TF_ADAM_OP_8BIT_STATE_HANDLES                                    \
                              .TypeConstraint<T>("T"),                                         \
                          ApplyAdam8bitMultiOp<DeviceTag, T>);                                 \
  REGISTER_KERNEL_BUILDER(Name("ResourceApplyAdam8bitMultiUnpacked")                           \
                              .Device(DEVICE_NAME)                                             \
                              .HostMemory("vars")                                              \
                              TF_ADAM_OP_8BIT_STATE_HANDLES                                    \
                              .TypeConstraint<T>("T"),                                         \
                          ApplyAdam8bitMultiOp<DeviceTag, T, /*kPacked=*/false>);
TF_ADAM_OP_REGISTER_ON_EVERY_DEVICE
#undef TF_ADAM_OP_REGISTER
#undef TF_ADAM_OP_REGISTER_SPARSE
#undef TF_ADAM_OP_8BIT_STATE_HANDLES

// Reports the CPU 8-bit codec in use (tf-adam-op info; the tests that make sure the vectorised
// codec runs where the CPU has it).
class Cpu8bitCodecOp : public OpKernel {
 public:
  using OpKernel::OpKernel;
  void Compute(OpKernelContext* ctx) override {
    ::tensorflow::Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({}), &out));
    out->scalar<::tensorflow::tstring>()() = Cpu8bitCodec();
  }
};
REGISTER_KERNEL_BUILDER(Name("TfAdamOpCpu8bitCodec").Device(::tensorflow::DEVICE_CPU),
                        Cpu8bitCodecOp);

}  // namespace tf_adam_op
