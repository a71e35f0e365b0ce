// The CPU handlers of the 8-bit-state custom calls (custom_calls.h, adam_8bit_xla_kernels.cc): the
// loops the TF kernels run (kernels/cpu_8bit_multi.h, cpu_8bit_sparse.h) on XLA's intra-op pool,
// after the same checks (scales, indices) and before any write.
#define EIGEN_USE_THREADS

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_split.h"
#include "core/blockwise_8bit.h"
#include "kernels/cpu_8bit_multi.h"
#include "kernels/cpu_8bit_sparse.h"
#include "kernels/cpu_updates.h"
#include "kernels/sparse_segments.h"
#include "xla/call_operands.h"
#include "xla/call_operands_8bit.h"
#include "xla/custom_calls.h"
#include "xla/ffi/api/c_api.h"
#include "xla/ffi/api/ffi.h"
#include "xla/ffi_thread_pool.h"

namespace tf_adam_op {
namespace {

namespace ffi = ::xla::ffi;
using xla_calls::Call8bit;
using xla_calls::Internal;
using xla_calls::Variable8bit;

// Check8bitScaleValues (adam_8bit_xla_kernels.cc): every operand a scale vector, `names` their
// names joined by newlines; the result a float32 1.0 once all are valid.
ffi::Error CheckScaleValues(ffi::RemainingArgs args, ffi::Result<ffi::AnyBuffer> one,
                            std::string_view names) {
  const std::vector<std::string> named = absl::StrSplit(names, '\n');
  for (size_t i = 0; i < args.size(); ++i) {
    auto scales = args.get<ffi::AnyBuffer>(i);
    if (!scales.has_value()) return Internal("missing scales");
    ffi::Error valid = xla_calls::CheckScaleVector(
        static_cast<const float*>(scales->untyped_data()), scales->element_count(), i, named);
    if (valid.failure()) return valid;
  }
  *static_cast<float*>(one->untyped_data()) = 1.0f;
  return ffi::Error::Success();
}

ffi::Error DenseAdam8bit(ffi::ThreadPool pool, ffi::RemainingArgs args, ffi::RemainingRets rets,
                         int64_t amsgrad, int64_t weight_decay, int64_t one_minus_beta,
                         int64_t nesterov, int64_t n, int64_t listed, std::string_view names) {
  Call8bit call;
  ffi::Error decoded =
      xla_calls::Decode8bit(args, rets, n, amsgrad, nesterov, weight_decay, one_minus_beta, &call);
  if (decoded.failure()) return decoded;
  ffi::Error scales = xla_calls::CheckScales(call, listed != 0, names);
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
  xla_calls::SparseCall8bit sparse;
  ffi::Error decoded = xla_calls::DecodeSparse8bit(args, rets, amsgrad, weight_decay,
                                                   one_minus_beta, dense_rule, has_v_term, &sparse);
  if (decoded.failure()) return decoded;
  const Call8bit& call = sparse.call;
  const Variable8bit& variable = call.variables[0];
  ffi::Error scales = xla_calls::CheckScales(call, /*listed=*/false, /*names=*/"");
  if (scales.failure()) return scales;
  const int64_t n = sparse.n_indices;
  SortedSegments segments;
  const absl::Status sorted =
      sparse.index_type == ffi::DataType::S32
          ? SortedValidIndices<int32_t>(sparse.indices, n, variable.rows, &segments)
          : SortedValidIndices<int64_t>(sparse.indices, n, variable.rows, &segments);
  if (!sorted.ok()) return ffi::Error::InvalidArgument(std::string(sorted.message()));
  if (variable.size == 0) return ffi::Error::Success();
  return xla_calls::OnPool(pool, call.type, [&](const Eigen::ThreadPoolDevice& d, auto zero) {
    using T = decltype(zero);
    CpuSparse8bitUpdate<T>(d, static_cast<T*>(variable.var), variable.states, variable.rows,
                           variable.size / variable.rows, static_cast<const T*>(variable.grad),
                           static_cast<const T*>(sparse.v_term), segments,
                           LoadStep<OpMathT<T>>(call.scalars), lazy != 0, call.variant);
  });
}

}  // namespace
}  // namespace tf_adam_op

TF_ADAM_OP_DEFINE_8BIT_XLA_HANDLERS(Ctx<::xla::ffi::ThreadPool>(),
                                    Ctx<::xla::ffi::ThreadPool>(),
                                    ::xla::ffi::Ffi::Bind(),
                                    ::tf_adam_op::DenseAdam8bit, ::tf_adam_op::SparseAdam8bit,
                                    ::tf_adam_op::CheckScaleValues, Cpu, "Host");
