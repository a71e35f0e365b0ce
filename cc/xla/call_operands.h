// The operands of the custom calls (custom_calls.h) decoded into the plain arguments of the update
// loops (core/update_arguments.h): what the CPU and the GPU handlers share. Buffers are wherever
// the call runs (host memory on the CPU, device memory on a GPU); nothing here reads them.
#ifndef TF_ADAM_OP_XLA_CALL_OPERANDS_H_
#define TF_ADAM_OP_XLA_CALL_OPERANDS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "Eigen/Core"
#include "core/adam_update_rule.h"
#include "core/update_arguments.h"
#include "xla/custom_calls.h"
#include "xla/ffi/api/c_api.h"
#include "xla/ffi/api/ffi.h"

namespace tf_adam_op {
namespace xla_calls {

namespace ffi = ::xla::ffi;

inline ffi::Error Internal(const std::string& what) {
  return ffi::Error::Internal(absl::StrCat("tf_adam_op custom call: ", what));
}

// Calls fn(T{}) with the C++ element type of an XLA element type the Adam calls update (Eigen's
// half and bfloat16); false for any other.
template <typename Fn>
bool WithElementType(ffi::DataType type, Fn fn) {
  switch (type) {
    case ffi::DataType::F16: fn(Eigen::half{}); return true;
    case ffi::DataType::BF16: fn(Eigen::bfloat16{}); return true;
    case ffi::DataType::F32: fn(float{}); return true;
    case ffi::DataType::F64: fn(double{}); return true;
    default: return false;
  }
}

inline Variant MakeVariant(int64_t amsgrad, int64_t nesterov, int64_t weight_decay) {
  Variant variant;
  variant.amsgrad = amsgrad != 0;
  variant.nesterov = nesterov != 0;
  variant.weight_decay = static_cast<WeightDecay>(weight_decay);
  return variant;
}

// The compute type of `type` variables: float64 for float64, float32 for the others.
inline ffi::DataType ComputeType(ffi::DataType type) {
  return type == ffi::DataType::F64 ? ffi::DataType::F64 : ffi::DataType::F32;
}

// The leading scalar operands as ScalarPointers; *next is the first operand after them.
inline ffi::Error ReadScalars(const ffi::RemainingArgs& args, ffi::DataType variable_type,
                              bool weight_decay, bool one_minus_beta, ScalarPointers* out,
                              size_t* next) {
  const ffi::DataType compute = ComputeType(variable_type);
  std::vector<const void*> p;
  const size_t count = kScalars + (weight_decay ? 1 : 0) + (one_minus_beta ? 2 : 0);
  for (size_t i = 0; i < count; ++i) {
    auto buffer = args.get<ffi::AnyBuffer>(i);
    if (!buffer.has_value()) return Internal("missing scalar operand");
    if (buffer->element_type() != compute || buffer->element_count() != 1) {
      return Internal("a scalar operand has the wrong type or size");
    }
    p.push_back(buffer->untyped_data());
  }
  *out = ScalarPointers{p[0], p[1], compute == ffi::DataType::F64, p[2], p[3], p[4], p[5]};
  size_t k = kScalars;
  if (weight_decay) out->weight_decay = p[k++];
  if (one_minus_beta) {
    out->one_minus_beta1 = p[k++];
    out->one_minus_beta2 = p[k++];
  }
  *next = k;
  return ffi::Error::Success();
}

// A dense call: every variable's var, m, v (vhat) from the results (they alias the operands) and
// its grad from the operands.
struct DenseCall {
  ffi::DataType type;
  Variant variant;
  ScalarPointers scalars;
  std::vector<TensorPointers> tensors;
};

inline ffi::Error DecodeDense(const ffi::RemainingArgs& args, const ffi::RemainingRets& rets,
                              int64_t n, int64_t amsgrad, int64_t nesterov, int64_t weight_decay,
                              int64_t one_minus_beta, DenseCall* call) {
  call->variant = MakeVariant(amsgrad, nesterov, weight_decay);
  const int per_var_args = call->variant.amsgrad ? 5 : 4;  // var, m, v, (vhat), grad
  const int per_var_rets = call->variant.amsgrad ? 4 : 3;
  auto first = rets.get<ffi::AnyBuffer>(0);
  if (!first.has_value()) return Internal("missing variable result");
  call->type = (*first)->element_type();
  size_t next = 0;
  ffi::Error read = ReadScalars(args, call->type, weight_decay != 0, one_minus_beta != 0,
                                &call->scalars, &next);
  if (read.failure()) return read;
  call->tensors.resize(n);
  for (int64_t k = 0; k < n; ++k) {
    void* out[4] = {nullptr, nullptr, nullptr, nullptr};
    for (int j = 0; j < per_var_rets; ++j) {
      auto buffer = rets.get<ffi::AnyBuffer>(k * per_var_rets + j);
      if (!buffer.has_value() || (*buffer)->element_type() != call->type) {
        return Internal("a variable result is missing or of another type");
      }
      out[j] = (*buffer)->untyped_data();
      if (j == 0) call->tensors[k].size = static_cast<int64_t>((*buffer)->element_count());
    }
    auto grad = args.get<ffi::AnyBuffer>(next + k * per_var_args + per_var_args - 1);
    if (!grad.has_value()) return Internal("missing grad operand");
    call->tensors[k].var = out[0];
    call->tensors[k].m = out[1];
    call->tensors[k].v = out[2];
    call->tensors[k].vhat = out[3];
    call->tensors[k].grad = grad->untyped_data();
  }
  return ffi::Error::Success();
}

// A sparse call: var, m, v (vhat) from the results; grad, indices (and v_term) from the operands.
struct SparseCall {
  ffi::DataType type;
  Variant variant;
  bool lazy;
  ScalarPointers scalars;
  void* var;
  void* m;
  void* v;
  void* vhat = nullptr;
  int64_t rows;
  int64_t row_size;
  const void* grad;
  const void* v_term = nullptr;
  const void* indices;
  ffi::DataType index_type;
  int64_t n_indices;
};

inline ffi::Error DecodeSparse(const ffi::RemainingArgs& args, const ffi::RemainingRets& rets,
                               int64_t amsgrad, int64_t weight_decay, int64_t one_minus_beta,
                               int64_t lazy, int64_t scale_first, int64_t dense_rule,
                               int64_t has_v_term, SparseCall* call) {
  call->variant = MakeVariant(amsgrad, /*nesterov=*/0, weight_decay);
  call->variant.scale_first = scale_first != 0;
  call->variant.dense_rule = dense_rule != 0;
  call->lazy = lazy != 0;
  void* out[4] = {nullptr, nullptr, nullptr, nullptr};
  const int variables = call->variant.amsgrad ? 4 : 3;
  for (int j = 0; j < variables; ++j) {
    auto buffer = rets.get<ffi::AnyBuffer>(j);
    if (!buffer.has_value()) return Internal("missing variable result");
    out[j] = (*buffer)->untyped_data();
    if (j == 0) {
      call->type = (*buffer)->element_type();
      const auto dims = (*buffer)->dimensions();
      const int64_t elements = static_cast<int64_t>((*buffer)->element_count());
      call->rows = dims.size() > 0 ? dims[0] : 1;
      call->row_size = call->rows > 0 ? elements / call->rows : 0;
    }
  }
  call->var = out[0];
  call->m = out[1];
  call->v = out[2];
  call->vhat = out[3];
  size_t next = 0;
  ffi::Error read = ReadScalars(args, call->type, weight_decay != 0, one_minus_beta != 0,
                                &call->scalars, &next);
  if (read.failure()) return read;
  next += variables;  // the variables' operands: their results alias them
  auto grad = args.get<ffi::AnyBuffer>(next), indices = args.get<ffi::AnyBuffer>(next + 1);
  if (!grad.has_value() || !indices.has_value()) return Internal("missing grad or indices");
  call->grad = grad->untyped_data();
  call->indices = indices->untyped_data();
  call->index_type = indices->element_type();
  call->n_indices = static_cast<int64_t>(indices->element_count());
  if (call->index_type != ffi::DataType::S32 && call->index_type != ffi::DataType::S64) {
    return Internal("indices must be int32 or int64");
  }
  if (has_v_term != 0) {
    auto term = args.get<ffi::AnyBuffer>(next + 2);
    if (!term.has_value()) return Internal("missing v_term");
    call->v_term = term->untyped_data();
  }
  return ffi::Error::Success();
}

}  // namespace xla_calls
}  // namespace tf_adam_op

// Binds DENSE_FN and SPARSE_FN (their context arguments first, DENSE_CONTEXT and SPARSE_CONTEXT:
// the thread pool on the CPU, the stream (and scratch memory) on a GPU; then the operands, the
// results and the attributes of custom_calls.h) as
// the two targets' handlers for XLA platform PLATFORM, registered with the XLA inside
// libtensorflow_framework (XLA_FFI_GetApi is its FFI table).
#define TF_ADAM_OP_DEFINE_XLA_HANDLERS(DENSE_CONTEXT, SPARSE_CONTEXT, DENSE_FN, SPARSE_FN,    \
                                       DENSE_NAME, SPARSE_NAME, PLATFORM)                     \
  XLA_FFI_DEFINE_HANDLER(DENSE_NAME, DENSE_FN,                                                \
                         ::xla::ffi::Ffi::Bind()                                              \
                             .DENSE_CONTEXT                                                   \
                             .RemainingArgs()                                                 \
                             .RemainingRets()                                                 \
                             .Attr<int64_t>(::tf_adam_op::xla_calls::kAttrN)                  \
                             .Attr<int64_t>(::tf_adam_op::xla_calls::kAttrAmsgrad)            \
                             .Attr<int64_t>(::tf_adam_op::xla_calls::kAttrNesterov)           \
                             .Attr<int64_t>(::tf_adam_op::xla_calls::kAttrWeightDecay)        \
                             .Attr<int64_t>(::tf_adam_op::xla_calls::kAttrOneMinusBeta));     \
  XLA_FFI_DEFINE_HANDLER(SPARSE_NAME, SPARSE_FN,                                              \
                         ::xla::ffi::Ffi::Bind()                                              \
                             .SPARSE_CONTEXT                                                  \
                             .RemainingArgs()                                                 \
                             .RemainingRets()                                                 \
                             .Attr<int64_t>(::tf_adam_op::xla_calls::kAttrAmsgrad)            \
                             .Attr<int64_t>(::tf_adam_op::xla_calls::kAttrWeightDecay)        \
                             .Attr<int64_t>(::tf_adam_op::xla_calls::kAttrOneMinusBeta)       \
                             .Attr<int64_t>(::tf_adam_op::xla_calls::kAttrLazy)               \
                             .Attr<int64_t>(::tf_adam_op::xla_calls::kAttrScaleFirst)         \
                             .Attr<int64_t>(::tf_adam_op::xla_calls::kAttrDenseRule)          \
                             .Attr<int64_t>(::tf_adam_op::xla_calls::kAttrVTerm));            \
  XLA_FFI_REGISTER_HANDLER(XLA_FFI_GetApi(), ::tf_adam_op::xla_calls::kDenseTarget, PLATFORM, \
                           DENSE_NAME);                                                       \
  XLA_FFI_REGISTER_HANDLER(XLA_FFI_GetApi(), ::tf_adam_op::xla_calls::kSparseTarget, PLATFORM,\
                           SPARSE_NAME)

#endif  // TF_ADAM_OP_XLA_CALL_OPERANDS_H_
