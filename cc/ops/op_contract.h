// What every form of the Adam ops checks the same way, written once: the six scalar inputs (their
// names, order, type and shape) and the shapes of a sparse update. Used by the shape functions
// (cc/ops/adam_ops.cc), the kernels (cc/kernels) and the XLA kernels (cc/xla), so that an input is
// refused with the same message whichever of them sees it first.
#ifndef TF_ADAM_OP_OPS_OP_CONTRACT_H_
#define TF_ADAM_OP_OPS_OP_CONTRACT_H_

#include <array>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "tensorflow/core/framework/types.h"

namespace tf_adam_op {

// Inputs 0-2 are var, m, v; then these six scalars, in stock ApplyAdam's order; then grad (and, for
// the sparse ops, indices).
constexpr int kFirstScalarInput = 3;
constexpr std::array<const char*, 6> kScalarNames = {"beta1_power", "beta2_power", "lr",
                                                     "beta1",       "beta2",       "epsilon"};
constexpr int kScalarCount = static_cast<int>(kScalarNames.size());
constexpr int kGradInput = kFirstScalarInput + kScalarCount;
constexpr int kIndicesInput = kGradInput + 1;
// The 8-bit-state ops (adam_8bit_ops.cc): var, then the codes and scales of m and v, then the same
// six scalars and grad.
constexpr int kFirst8bitScalarInput = 5;
constexpr int k8bitGradInput = kFirst8bitScalarInput + kScalarCount;

// The type an update of `var_type` variables is computed in, and its hyperparameters' (Tscalar).
inline tensorflow::DataType ComputeType(tensorflow::DataType var_type) {
  return var_type == tensorflow::DT_DOUBLE ? tensorflow::DT_DOUBLE : tensorflow::DT_FLOAT;
}

// Tscalar must be the compute type: beta2 = 0.999 and epsilon = 1e-8 reach a half or bfloat16
// update intact instead of rounded to 1.0 and 0.
inline absl::Status CheckScalarType(tensorflow::DataType var_type,
                                    tensorflow::DataType scalar_type) {
  const tensorflow::DataType expected = ComputeType(var_type);
  if (scalar_type == expected) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "The hyperparameters of an Adam update of ", tensorflow::DataTypeString(var_type),
      " variables must be ", tensorflow::DataTypeString(expected),
      " (the type the update is computed in), got ", tensorflow::DataTypeString(scalar_type)));
}

// `name` (a scalar input: kScalarNames[i], weight_decay, one_minus_beta[i]) has rank 0.
inline absl::Status CheckScalarShape(const std::string& name, const tensorflow::TensorShape& shape) {
  if (shape.dims() == 0) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(name, " is not a scalar: ", shape.DebugString()));
}

// A sparse update's var, grad and indices: var has rows, indices is a vector, grad has one row per
// index and var's row shape.
inline absl::Status CheckSparseShapes(const tensorflow::TensorShape& var,
                                      const tensorflow::TensorShape& grad,
                                      const tensorflow::TensorShape& indices) {
  if (var.dims() < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "var must be at least 1 dimensional for a sparse update, got shape ", var.DebugString()));
  }
  if (indices.dims() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("indices must be a vector, got shape ", indices.DebugString()));
  }
  if (grad.dims() != var.dims()) {
    return absl::InvalidArgumentError(absl::StrCat("var and grad must have the same rank: var ",
                                                   var.DebugString(), ", grad ",
                                                   grad.DebugString()));
  }
  if (grad.dim_size(0) != indices.dim_size(0)) {
    return absl::InvalidArgumentError(absl::StrCat("grad must have one row per index: grad ",
                                                   grad.DebugString(), ", ",
                                                   indices.dim_size(0), " indices"));
  }
  for (int d = 1; d < var.dims(); ++d) {
    if (var.dim_size(d) != grad.dim_size(d)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "var and grad must have the same row shape (all but the first dimension): var ",
          var.DebugString(), ", grad ", grad.DebugString()));
    }
  }
  return absl::OkStatus();
}

}  // namespace tf_adam_op

#endif  // TF_ADAM_OP_OPS_OP_CONTRACT_H_
