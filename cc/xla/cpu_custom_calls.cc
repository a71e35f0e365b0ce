// The CPU ("Host") handlers of the custom calls in custom_calls.h: the same loops the TF kernels run
// (kernels/cpu_updates.h), sharded over XLA's intra-op pool, so a step under XLA gives the bits a
// step outside it gives.
#define EIGEN_USE_THREADS

#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>

#include "core/adam_update_rule.h"
#include "core/update_arguments.h"
#include "kernels/cpu_updates.h"
#include "kernels/sparse_segments.h"
#include "xla/call_operands.h"
#include "xla/custom_calls.h"
#include "xla/ffi_thread_pool.h"
#include "xla/ffi/api/c_api.h"
#include "xla/ffi/api/ffi.h"

namespace tf_adam_op {
namespace {

namespace ffi = ::xla::ffi;
using xla_calls::Internal;

using xla_calls::OnPool;

ffi::Error DenseAdam(ffi::ThreadPool pool, ffi::RemainingArgs args, ffi::RemainingRets rets,
                     int64_t n, int64_t amsgrad, int64_t nesterov, int64_t weight_decay,
                     int64_t one_minus_beta) {
  xla_calls::DenseCall call;
  ffi::Error decoded = xla_calls::DecodeDense(args, rets, n, amsgrad, nesterov, weight_decay,
                                              one_minus_beta, &call);
  if (decoded.failure()) return decoded;
  return OnPool(pool, call.type, [&](const Eigen::ThreadPoolDevice& d, auto zero) {
    using T = decltype(zero);
    CpuDenseUpdate<T>(d, call.tensors, LoadStep<OpMathT<T>>(call.scalars), call.variant);
  });
}

template <typename Tindex>
absl::Status SortedValidIndices(const xla_calls::SparseCall& call, SortedSegments* out) {
  const Tindex* indices = static_cast<const Tindex*>(call.indices);
  absl::Status valid = ValidateIndices(indices, call.n_indices, call.rows);
  if (!valid.ok()) return valid;
  *out = SortIntoSegments(indices, call.n_indices);
  return absl::OkStatus();
}

ffi::Error SparseAdam(ffi::ThreadPool pool, ffi::RemainingArgs args, ffi::RemainingRets rets,
                      int64_t amsgrad, int64_t weight_decay, int64_t one_minus_beta, int64_t lazy,
                      int64_t scale_first, int64_t dense_rule, int64_t has_v_term) {
  xla_calls::SparseCall call;
  ffi::Error decoded = xla_calls::DecodeSparse(args, rets, amsgrad, weight_decay, one_minus_beta,
                                               lazy, scale_first, dense_rule, has_v_term, &call);
  if (decoded.failure()) return decoded;
  // Every index is checked before any row is written: a bad one leaves the variables unchanged.
  SortedSegments segments;
  const absl::Status sorted = call.index_type == ffi::DataType::S32
                                  ? SortedValidIndices<int32_t>(call, &segments)
                                  : SortedValidIndices<int64_t>(call, &segments);
  if (!sorted.ok()) return ffi::Error::InvalidArgument(std::string(sorted.message()));
  if (call.rows * call.row_size == 0) return ffi::Error::Success();
  return OnPool(pool, call.type, [&](const Eigen::ThreadPoolDevice& d, auto zero) {
    using T = decltype(zero);
    CpuSparseUpdate<T>(d, static_cast<T*>(call.var), static_cast<T*>(call.m),
                       static_cast<T*>(call.v), static_cast<T*>(call.vhat), call.rows,
                       call.row_size, static_cast<const T*>(call.grad),
                       static_cast<const T*>(call.v_term), segments,
                       LoadStep<OpMathT<T>>(call.scalars), call.lazy, call.variant);
  });
}

}  // namespace
}  // namespace tf_adam_op

TF_ADAM_OP_DEFINE_XLA_HANDLERS(Ctx<::xla::ffi::ThreadPool>(), Ctx<::xla::ffi::ThreadPool>(),
                               ::tf_adam_op::DenseAdam,
                               ::tf_adam_op::SparseAdam, kTfAdamOpDenseAdamCpu,
                               kTfAdamOpSparseAdamCpu, "Host");
