// The CPU handlers of the 8-bit-state custom calls (custom_calls.h, adam_8bit_xla_kernels.cc): the
// loops the TF kernels run (kernels/cpu_8bit_multi.h, cpu_8bit_sparse.h) on XLA's intra-op pool,
// after the same checks (scales, indices) and before any write.
#define EIGEN_USE_THREADS

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/blockwise_8bit.h"
#include "kernels/cpu_8bit_multi.h"
#include "kernels/cpu_8bit_sparse.h"
#include "kernels/corrupt_scales.h"
#include "kernels/cpu_updates.h"
#include "kernels/sparse_segments.h"
#include "xla/call_operands.h"
#include "xla/custom_calls.h"
#include "xla/ffi/api/c_api.h"
#include "xla/ffi/api/ffi.h"
#include "xla/ffi_thread_pool.h"

namespace tf_adam_op {
namespace {

namespace ffi = ::xla::ffi;
using xla_calls::Internal;

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

ffi::Error Decode(const ffi::RemainingArgs& args, const ffi::RemainingRets& rets, int64_t n,
                  int64_t amsgrad, int64_t nesterov, int64_t weight_decay, int64_t one_minus_beta,
                  Call8bit* call) {
  call->variant = xla_calls::MakeVariant(amsgrad, nesterov, weight_decay);
  const int results = amsgrad ? 7 : 5;
  auto first = rets.get<ffi::AnyBuffer>(0);
  if (!first.has_value()) return Internal("missing variable result");
  call->type = (*first)->element_type();
  size_t next = 0;
  ffi::Error read = xla_calls::ReadScalars(args, call->type, weight_decay != 0,
                                           one_minus_beta != 0, &call->scalars, &next);
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
ffi::Error CheckScales(const Call8bit& call, bool listed, std::string_view names) {
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

// Check8bitScaleValues (adam_8bit_xla_kernels.cc): every operand a scale vector, `names` their
// names joined by newlines; the result a float32 1.0 once all are valid.
ffi::Error CheckScaleValues(ffi::RemainingArgs args, ffi::Result<ffi::AnyBuffer> one,
                            std::string_view names) {
  const std::vector<std::string> named = absl::StrSplit(names, '\n');
  for (size_t i = 0; i < args.size(); ++i) {
    auto scales = args.get<ffi::AnyBuffer>(i);
    if (!scales.has_value()) return Internal("missing scales");
    const float* data = static_cast<const float*>(scales->untyped_data());
    const int64_t bad = eight_bit::FirstInvalidScale(data, scales->element_count());
    if (bad >= 0) {
      return ffi::Error::InvalidArgument(eight_bit::CorruptScaleMessage(
          i < named.size() ? named[i] : absl::StrCat("scales[", i, "]"), bad, data[bad]));
    }
  }
  *static_cast<float*>(one->untyped_data()) = 1.0f;
  return ffi::Error::Success();
}

ffi::Error DenseAdam8bit(ffi::ThreadPool pool, ffi::RemainingArgs args, ffi::RemainingRets rets,
                         int64_t amsgrad, int64_t weight_decay, int64_t one_minus_beta,
                         int64_t nesterov, int64_t n, int64_t listed, std::string_view names) {
  Call8bit call;
  ffi::Error decoded =
      Decode(args, rets, n, amsgrad, nesterov, weight_decay, one_minus_beta, &call);
  if (decoded.failure()) return decoded;
  ffi::Error scales = CheckScales(call, listed != 0, names);
  if (scales.failure()) return scales;
  return xla_calls::OnPool(pool, call.type, [&](const Eigen::ThreadPoolDevice& d, auto zero) {
    using T = decltype(zero);
    std::vector<Tensor8bit<T>> tensors;
    for (const Variable8bit& v : call.variables) {
      if (v.size == 0) continue;
      tensors.push_back({static_cast<T*>(v.var), static_cast<const T*>(v.grad), v.size, v.states});
    }
    Cpu8bitMultiUpdate<T>(d, call.variant, tensors, LoadStep<OpMathT<T>>(call.scalars));
  });
}

template <typename Tindex>
absl::Status SortedValidIndices(const void* indices, int64_t n, int64_t rows,
                                SortedSegments* out) {
  const Tindex* data = static_cast<const Tindex*>(indices);
  absl::Status valid = ValidateIndices(data, n, rows);
  if (!valid.ok()) return valid;
  *out = SortIntoSegments(data, n);
  return absl::OkStatus();
}

ffi::Error SparseAdam8bit(ffi::ThreadPool pool, ffi::RemainingArgs args, ffi::RemainingRets rets,
                          int64_t amsgrad, int64_t weight_decay, int64_t one_minus_beta,
                          int64_t lazy, int64_t dense_rule, int64_t has_v_term) {
  Call8bit call;
  ffi::Error decoded = Decode(args, rets, 1, amsgrad, 0, weight_decay, one_minus_beta, &call);
  if (decoded.failure()) return decoded;
  call.variant.dense_rule = dense_rule != 0;
  const Variable8bit& variable = call.variables[0];
  auto indices = args.get<ffi::AnyBuffer>(call.next);
  if (!indices.has_value()) return Internal("missing indices");
  const void* v_term = nullptr;
  if (has_v_term != 0) {
    auto term = args.get<ffi::AnyBuffer>(call.next + 1);
    if (!term.has_value()) return Internal("missing v_term");
    v_term = term->untyped_data();
  }
  ffi::Error scales = CheckScales(call, /*listed=*/false, /*names=*/"");
  if (scales.failure()) return scales;
  const int64_t n = static_cast<int64_t>(indices->element_count());
  SortedSegments segments;
  const absl::Status sorted =
      indices->element_type() == ffi::DataType::S32
          ? SortedValidIndices<int32_t>(indices->untyped_data(), n, variable.rows, &segments)
          : SortedValidIndices<int64_t>(indices->untyped_data(), n, variable.rows, &segments);
  if (!sorted.ok()) return ffi::Error::InvalidArgument(std::string(sorted.message()));
  if (variable.size == 0) return ffi::Error::Success();
  return xla_calls::OnPool(pool, call.type, [&](const Eigen::ThreadPoolDevice& d, auto zero) {
    using T = decltype(zero);
    CpuSparse8bitUpdate<T>(d, static_cast<T*>(variable.var), variable.states, variable.rows,
                           variable.size / variable.rows, static_cast<const T*>(variable.grad),
                           static_cast<const T*>(v_term), segments,
                           LoadStep<OpMathT<T>>(call.scalars), lazy != 0, call.variant);
  });
}

}  // namespace
}  // namespace tf_adam_op

XLA_FFI_DEFINE_HANDLER(kTfAdamOpDenseAdam8bitCpu, ::tf_adam_op::DenseAdam8bit,
                       ::xla::ffi::Ffi::Bind()
                           .Ctx<::xla::ffi::ThreadPool>()
                           .RemainingArgs()
                           .RemainingRets()
                           .Attr<int64_t>(::tf_adam_op::xla_calls::kAttrAmsgrad)
                           .Attr<int64_t>(::tf_adam_op::xla_calls::kAttrWeightDecay)
                           .Attr<int64_t>(::tf_adam_op::xla_calls::kAttrOneMinusBeta)
                           .Attr<int64_t>(::tf_adam_op::xla_calls::kAttrNesterov)
                           .Attr<int64_t>(::tf_adam_op::xla_calls::kAttrN)
                           .Attr<int64_t>(::tf_adam_op::xla_calls::kAttrListed)
                           .Attr<std::string_view>(::tf_adam_op::xla_calls::kAttrNames));
XLA_FFI_DEFINE_HANDLER(kTfAdamOpSparseAdam8bitCpu, ::tf_adam_op::SparseAdam8bit,
                       ::xla::ffi::Ffi::Bind()
                           .Ctx<::xla::ffi::ThreadPool>()
                           .RemainingArgs()
                           .RemainingRets()
                           .Attr<int64_t>(::tf_adam_op::xla_calls::kAttrAmsgrad)
                           .Attr<int64_t>(::tf_adam_op::xla_calls::kAttrWeightDecay)
                           .Attr<int64_t>(::tf_adam_op::xla_calls::kAttrOneMinusBeta)
                           .Attr<int64_t>(::tf_adam_op::xla_calls::kAttrLazy)
                           .Attr<int64_t>(::tf_adam_op::xla_calls::kAttrDenseRule)
                           .Attr<int64_t>(::tf_adam_op::xla_calls::kAttrVTerm));
XLA_FFI_DEFINE_HANDLER(kTfAdamOpCheckScaleValuesCpu, ::tf_adam_op::CheckScaleValues,
                       ::xla::ffi::Ffi::Bind()
                           .RemainingArgs()
                           .Ret<::xla::ffi::AnyBuffer>()
                           .Attr<std::string_view>(::tf_adam_op::xla_calls::kAttrNames));
XLA_FFI_REGISTER_HANDLER(XLA_FFI_GetApi(), ::tf_adam_op::xla_calls::kCheckScalesTarget, "Host",
                         kTfAdamOpCheckScaleValuesCpu);
XLA_FFI_REGISTER_HANDLER(XLA_FFI_GetApi(), ::tf_adam_op::xla_calls::kDense8bitTarget, "Host",
                         kTfAdamOpDenseAdam8bitCpu);
XLA_FFI_REGISTER_HANDLER(XLA_FFI_GetApi(), ::tf_adam_op::xla_calls::kSparse8bitTarget, "Host",
                         kTfAdamOpSparseAdam8bitCpu);
