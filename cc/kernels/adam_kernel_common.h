// What every Adam kernel shares: the six scalar inputs (names, checks, attr type) and the variant attrs.
#ifndef TF_ADAM_OP_KERNELS_ADAM_KERNEL_COMMON_H_
#define TF_ADAM_OP_KERNELS_ADAM_KERNEL_COMMON_H_

#include <array>
#include <cstdint>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "core/adam_update_rule.h"
#include "core/low_precision.h"
#include "core/update_arguments.h"
#include "kernels/cpu_updates.h"  // ShardedFor
#include "kernels/training_variables.h"
#include "ops/op_contract.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "tensorflow/core/framework/tensor_types.h"
#include "tensorflow/core/framework/types.h"

namespace tf_adam_op {

// The Tscalar attr must be the type T is computed in (ops/op_contract.h).
template <typename T>
absl::Status CheckScalarAttr(tensorflow::OpKernelConstruction* ctx) {
  tensorflow::DataType scalar_type;
  TF_RETURN_IF_ERROR(ctx->GetAttr("Tscalar", &scalar_type));
  return CheckScalarType(tensorflow::DataTypeToEnum<T>::value, scalar_type);
}

// `first` is where the six scalars start (3; 3N for the unpacked multi-tensor op).
inline absl::Status CheckScalarInputs(tensorflow::OpKernelContext* ctx,
                                      int first = kFirstScalarInput) {
  for (int i = 0; i < kScalarCount; ++i) {
    TF_RETURN_IF_ERROR(CheckScalarShape(kScalarNames[i], ctx->input(first + i).shape()));
  }
  return absl::OkStatus();
}

// var and every other acquired variable (m, v) have one shape: compared as shapes, not counts.
inline absl::Status CheckSameShapeAsVar(const TrainingVariables& vars) {
  const tensorflow::TensorShape& var = vars.tensor(0).shape();
  for (int k = 1; k < vars.size(); ++k) {
    if (!var.IsSameSize(vars.tensor(k).shape())) {
      return absl::InvalidArgumentError(absl::StrCat("var and ", vars.name(k),
                                                     " do not have the same shape: ",
                                                     var.DebugString(), " vs ",
                                                     vars.tensor(k).shape().DebugString()));
    }
  }
  return absl::OkStatus();
}

// Where the six scalar inputs are (the memory of the op's device), all of T's compute type.
template <typename T>
ScalarPointers ScalarInputPointers(tensorflow::OpKernelContext* ctx, int first = kFirstScalarInput) {
  auto at = [ctx, first](int i) -> const void* { return ctx->input(first + i).data(); };
  return ScalarPointers{at(0), at(1), std::is_same<OpMathT<T>, double>::value,
                        at(2), at(3), at(4), at(5)};
}

// AMSGrad and decoupled weight decay, the options every Adam op takes the same way: an optional
// variable input (`vhat`, or `vhats` for the multi-tensor ops: a list of none or one) turns AMSGrad
// on; an optional scalar input `weight_decay` (none or one, of the compute type) turns the decay on,
// var * weight_decay, or var * weight_decay * lr with the attr weight_decay_times_lr. Lists of
// length 0 by default, so a graph written before the options existed loads and runs as it did.
// `vhats_for_amsgrad` is how many vhat inputs AMSGrad takes: one (a variable, or a vector of N
// handles), or N for the unpacked multi-tensor op.
inline absl::Status ReadVariantAttrs(tensorflow::OpKernelConstruction* ctx, const char* vhat_attr,
                                     Variant* variant, int vhats_for_amsgrad = 1) {
  int n_vhat = 0, n_weight_decay = 0;
  bool times_lr = false;
  TF_RETURN_IF_ERROR(ctx->GetAttr(vhat_attr, &n_vhat));
  TF_RETURN_IF_ERROR(ctx->GetAttr("n_weight_decay", &n_weight_decay));
  TF_RETURN_IF_ERROR(ctx->GetAttr("weight_decay_times_lr", &times_lr));
  if ((n_vhat != 0 && n_vhat != vhats_for_amsgrad) || n_weight_decay > 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "vhat takes none or ", vhats_for_amsgrad, " inputs and weight_decay at most one, got ",
        n_vhat, " and ", n_weight_decay));
  }
  variant->amsgrad = n_vhat == vhats_for_amsgrad;
  variant->weight_decay = n_weight_decay == 0 ? WeightDecay::kNone
                          : times_lr          ? WeightDecay::kTimesVarLr
                                              : WeightDecay::kTimesVar;
  return absl::OkStatus();
}

// The flat input index of the optional variable input `name` (meaningful when it is present).
inline absl::Status OptionalInputIndex(const tensorflow::OpKernel& kernel, const char* name,
                                       int* index) {
  int stop = 0;
  return kernel.InputRange(name, index, &stop);
}

// Where the weight decay scalar is (device memory), or null without one; checked to be a scalar.
inline absl::Status WeightDecayPointer(tensorflow::OpKernelContext* ctx, const void** pointer) {
  tensorflow::OpInputList decay;
  TF_RETURN_IF_ERROR(ctx->input_list("weight_decay", &decay));
  *pointer = nullptr;
  if (decay.size() == 0) return absl::OkStatus();
  TF_RETURN_IF_ERROR(CheckScalarShape("weight_decay", decay[0].shape()));
  *pointer = decay[0].data();
  return absl::OkStatus();
}

// Where 1 - beta1 and 1 - beta2 are when the caller hands them in (the optional input
// `one_minus_beta`: none, or two scalars of the compute type; Keras 3 rounds 1 - beta from a
// double), else left null so the rule computes them.
inline absl::Status OneMinusBetaPointers(tensorflow::OpKernelContext* ctx, ScalarPointers* scalars) {
  tensorflow::OpInputList one_minus_beta;
  TF_RETURN_IF_ERROR(ctx->input_list("one_minus_beta", &one_minus_beta));
  if (one_minus_beta.size() == 0) return absl::OkStatus();
  if (one_minus_beta.size() != 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "one_minus_beta takes none or two scalars (1 - beta1, 1 - beta2), got ",
        one_minus_beta.size()));
  }
  for (int i = 0; i < 2; ++i) {
    TF_RETURN_IF_ERROR(CheckScalarShape(absl::StrCat("one_minus_beta[", i, "]"),
                                        one_minus_beta[i].shape()));
  }
  scalars->one_minus_beta1 = one_minus_beta[0].data();
  scalars->one_minus_beta2 = one_minus_beta[1].data();
  return absl::OkStatus();
}

}  // namespace tf_adam_op

#endif  // TF_ADAM_OP_KERNELS_ADAM_KERNEL_COMMON_H_
