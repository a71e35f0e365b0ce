// The operands of the 8-bit-state custom calls (custom_calls.h) decoded into the 8-bit loops'
// arguments, and the scale checks made before any write: what the CPU and the GPU handlers share
// (cpu_8bit_custom_calls.cc, gpu_8bit_custom_calls.cc). Buffers are wherever the call runs; the
// checks read scales in host memory (a GPU handler copies them there first).
#ifndef TF_ADAM_OP_XLA_CALL_OPERANDS_8BIT_H_
#define TF_ADAM_OP_XLA_CALL_OPERANDS_8BIT_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/blockwise_8bit.h"
#include "core/update_arguments.h"
#include "kernels/corrupt_scales.h"
#include "xla/call_operands.h"
#include "xla/ffi/api/c_api.h"
#include "xla/ffi/api/ffi.h"

namespace tf_adam_op {
namespace xla_calls {

// One variable of a call: its results (var, then codes and scales of m, v and vhat) and its grad.
struct Variable8bit {
  void* var;
  int64_t rows = 1;
  int64_t size = 0;
  eight_bit::States8bit states{};
  const void* grad;
};

// A call: the scalars, then per variable its states' operands (their results alias them) and its
// grad; `next` is the operand after the last grad.
struct Call8bit {
  ffi::DataType type;
  Variant variant;
  ScalarPointers scalars;
  std::vector<Variable8bit> variables;
  size_t next;
};

// The n variables of a call (the codebooks the host's; a GPU launcher puts the device's in).
inline ffi::Error Decode8bit(const ffi::RemainingArgs& args, const ffi::RemainingRets& rets,
                             int64_t n, int64_t amsgrad, int64_t nesterov, int64_t weight_decay,
                             int64_t one_minus_beta, Call8bit* call) {
  call->variant = MakeVariant(amsgrad, nesterov, weight_decay);
  const int results = amsgrad ? 7 : 5;
  auto first = rets.get<ffi::AnyBuffer>(0);
  if (!first.has_value()) return Internal("missing variable result");
  call->type = (*first)->element_type();
  size_t next = 0;
  ffi::Error read = ReadScalars(args, call->type, weight_decay != 0, one_minus_beta != 0,
                                &call->scalars, &next);
  if (read.failure()) return read;
  for (int64_t k = 0; k < n; ++k) {
    std::vector<void*> out(results);
    Variable8bit variable;
    for (int j = 0; j < results; ++j) {
      auto buffer = rets.get<ffi::AnyBuffer>(k * results + j);
      if (!buffer.has_value()) return Internal("missing variable result");
      out[j] = (*buffer)->untyped_data();
      if (j == 0) {
        if ((*buffer)->element_type() != call->type) return Internal("variables of two types");
        variable.size = static_cast<int64_t>((*buffer)->element_count());
        const auto dims = (*buffer)->dimensions();
        variable.rows = dims.size() > 0 ? dims[0] : 1;
      }
    }
    variable.var = out[0];
    variable.states = eight_bit::States8bit{
        &eight_bit::SignedCodebook(), &eight_bit::UnsignedCodebook(),
        static_cast<uint8_t*>(out[1]), static_cast<float*>(out[2]),
        static_cast<uint8_t*>(out[3]), static_cast<float*>(out[4])};
    if (amsgrad) {
      variable.states.vhat_codes = static_cast<uint8_t*>(out[5]);
      variable.states.vhat_absmax = static_cast<float*>(out[6]);
    }
    next += results;  // the variable's operands: its results alias them
    auto grad = args.get<ffi::AnyBuffer>(next++);
    if (!grad.has_value()) return Internal("missing grad");
    variable.grad = grad->untyped_data();
    call->variables.push_back(variable);
  }
  call->next = next;
  return ffi::Error::Success();
}

// Every scale of every variable can have come from a step (>= 0 and finite, or NaN), as the TF
// kernels check, named as they name them: the input (m_absmax; of a list, m_absmax[k]), after
// the variable's name where the op was given names ("the 8-bit states of 'w': ...").
inline ffi::Error CheckScales(const Call8bit& call, bool listed, std::string_view names) {
  const std::vector<std::string> named =
      names.empty() ? std::vector<std::string>() : absl::StrSplit(names, '\n');
  for (size_t k = 0; k < call.variables.size(); ++k) {
    const eight_bit::States8bit& states = call.variables[k].states;
    const int64_t blocks = eight_bit::BlockCount(call.variables[k].size);
    const std::pair<const float*, const char*> scales[] = {{states.m_absmax, "m_absmax"},
                                                           {states.v_absmax, "v_absmax"},
                                                           {states.vhat_absmax, "vhat_absmax"}};
    for (const auto& [data, input] : scales) {
      if (data == nullptr) continue;
      const int64_t bad = eight_bit::FirstInvalidScale(data, blocks);
      if (bad < 0) continue;
      const std::string message = eight_bit::CorruptScaleMessage(
          listed ? absl::StrCat(input, "[", k, "]") : std::string(input), bad, data[bad]);
      return ffi::Error::InvalidArgument(
          k < named.size() ? absl::StrCat("the 8-bit states of ", named[k], ": ", message)
                           : message);
    }
  }
  return ffi::Error::Success();
}

// A sparse call: its one variable (Decode8bit), then its indices and v_term (null without one).
struct SparseCall8bit {
  Call8bit call;
  const void* indices;
  ffi::DataType index_type;
  int64_t n_indices;
  const void* v_term = nullptr;
};

inline ffi::Error DecodeSparse8bit(const ffi::RemainingArgs& args, const ffi::RemainingRets& rets,
                                   int64_t amsgrad, int64_t weight_decay, int64_t one_minus_beta,
                                   int64_t dense_rule, int64_t has_v_term, SparseCall8bit* out) {
  ffi::Error decoded =
      Decode8bit(args, rets, 1, amsgrad, 0, weight_decay, one_minus_beta, &out->call);
  if (decoded.failure()) return decoded;
  out->call.variant.dense_rule = dense_rule != 0;
  auto indices = args.get<ffi::AnyBuffer>(out->call.next);
  if (!indices.has_value()) return Internal("missing indices");
  out->indices = indices->untyped_data();
  out->index_type = indices->element_type();
  out->n_indices = static_cast<int64_t>(indices->element_count());
  if (has_v_term != 0) {
    auto term = args.get<ffi::AnyBuffer>(out->call.next + 1);
    if (!term.has_value()) return Internal("missing v_term");
    out->v_term = term->untyped_data();
  }
  return ffi::Error::Success();
}

// Check8bitScaleValues' check of its operand i, `scales` (n of them, in host memory), named by
// the i-th of `named` (the op's names), else "scales[i]".
inline ffi::Error CheckScaleVector(const float* scales, int64_t n, size_t i,
                                   const std::vector<std::string>& named) {
  const int64_t bad = eight_bit::FirstInvalidScale(scales, n);
  if (bad < 0) return ffi::Error::Success();
  return ffi::Error::InvalidArgument(eight_bit::CorruptScaleMessage(
      i < named.size() ? named[i] : absl::StrCat("scales[", i, "]"), bad, scales[bad]));
}

}  // namespace xla_calls
}  // namespace tf_adam_op

// The three 8-bit handlers' bindings and registrations for one platform: the dense and sparse
// updates (DENSE_CONTEXT, SPARSE_CONTEXT: the CPU's thread pool, or a GPU's stream and scratch)
// and Check8bitScaleValues (CHECK_BIND: its binding before the operands, `Ffi::Bind()` on the
// CPU, with the stream's `.Ctx` on a GPU).
#define TF_ADAM_OP_DEFINE_8BIT_XLA_HANDLERS(DENSE_CONTEXT, SPARSE_CONTEXT, CHECK_BIND, DENSE_FN, \
                                            SPARSE_FN, CHECK_FN, SUFFIX, PLATFORM)               \
  XLA_FFI_DEFINE_HANDLER(kTfAdamOpDenseAdam8bit##SUFFIX, DENSE_FN,                               \
                         ::xla::ffi::Ffi::Bind()                                                 \
                             .DENSE_CONTEXT                                                      \
                             .RemainingArgs()                                                    \
                             .RemainingRets()                                                    \
                             .Attr<int64_t>(::tf_adam_op::xla_calls::kAttrAmsgrad)               \
                             .Attr<int64_t>(::tf_adam_op::xla_calls::kAttrWeightDecay)           \
                             .Attr<int64_t>(::tf_adam_op::xla_calls::kAttrOneMinusBeta)          \
                             .Attr<int64_t>(::tf_adam_op::xla_calls::kAttrNesterov)              \
                             .Attr<int64_t>(::tf_adam_op::xla_calls::kAttrN)                     \
                             .Attr<int64_t>(::tf_adam_op::xla_calls::kAttrListed)                \
                             .Attr<std::string_view>(::tf_adam_op::xla_calls::kAttrNames));      \
  XLA_FFI_DEFINE_HANDLER(kTfAdamOpSparseAdam8bit##SUFFIX, SPARSE_FN,                             \
                         ::xla::ffi::Ffi::Bind()                                                 \
                             .SPARSE_CONTEXT                                                     \
                             .RemainingArgs()                                                    \
                             .RemainingRets()                                                    \
                             .Attr<int64_t>(::tf_adam_op::xla_calls::kAttrAmsgrad)               \
                             .Attr<int64_t>(::tf_adam_op::xla_calls::kAttrWeightDecay)           \
                             .Attr<int64_t>(::tf_adam_op::xla_calls::kAttrOneMinusBeta)          \
                             .Attr<int64_t>(::tf_adam_op::xla_calls::kAttrLazy)                  \
                             .Attr<int64_t>(::tf_adam_op::xla_calls::kAttrDenseRule)             \
                             .Attr<int64_t>(::tf_adam_op::xla_calls::kAttrVTerm));               \
  XLA_FFI_DEFINE_HANDLER(kTfAdamOpCheckScaleValues##SUFFIX, CHECK_FN,                            \
                         CHECK_BIND                                                              \
                             .RemainingArgs()                                                    \
                             .Ret<::xla::ffi::AnyBuffer>()                                       \
                             .Attr<std::string_view>(::tf_adam_op::xla_calls::kAttrNames));      \
  XLA_FFI_REGISTER_HANDLER(XLA_FFI_GetApi(), ::tf_adam_op::xla_calls::kCheckScalesTarget,        \
                           PLATFORM, kTfAdamOpCheckScaleValues##SUFFIX);                          \
  XLA_FFI_REGISTER_HANDLER(XLA_FFI_GetApi(), ::tf_adam_op::xla_calls::kDense8bitTarget,          \
                           PLATFORM, kTfAdamOpDenseAdam8bit##SUFFIX);                             \
  XLA_FFI_REGISTER_HANDLER(XLA_FFI_GetApi(), ::tf_adam_op::xla_calls::kSparse8bitTarget,         \
                           PLATFORM, kTfAdamOpSparseAdam8bit##SUFFIX)

#endif  // TF_ADAM_OP_XLA_CALL_OPERANDS_8BIT_H_
