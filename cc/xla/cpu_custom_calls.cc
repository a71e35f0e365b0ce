// The CPU ("Host") handlers of the custom calls in custom_calls.h: the same loops the TF kernels run
// (kernels/cpu_updates.h), sharded over XLA's intra-op pool, so a step under XLA gives the bits a
// step outside it gives.
#define EIGEN_USE_THREADS

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/adam_update_rule.h"
#include "core/update_arguments.h"
#include "kernels/cpu_updates.h"
#include "kernels/sparse_segments.h"
#include "xla/ffi/api/c_api.h"
#include "xla/ffi/api/ffi.h"
#include "xla/custom_calls.h"

namespace tf_adam_op {
namespace {

namespace ffi = ::xla::ffi;

// XLA's intra-op pool as Eigen's pool interface, so the kernels' ShardedFor (Eigen's parallelFor)
// runs on it. Lives for one handler call; parallelFor returns only when every task it scheduled
// has run.
class FfiThreadPool final : public Eigen::ThreadPoolInterface {
 public:
  explicit FfiThreadPool(ffi::ThreadPool* pool) : pool_(pool) {}
  void Schedule(std::function<void()> fn) override { pool_->Schedule(std::move(fn)); }
  int NumThreads() const override { return static_cast<int>(pool_->num_threads()); }
  int CurrentThreadId() const override { return -1; }

 private:
  ffi::ThreadPool* pool_;
};

template <typename Fn>
ffi::Error OnPool(ffi::ThreadPool& pool, Fn fn) {
  FfiThreadPool adapter(&pool);
  const int threads = std::max(1, adapter.NumThreads());
  Eigen::ThreadPoolDevice device(&adapter, threads);
  return fn(device);
}

ffi::Error Internal(const std::string& what) {
  return ffi::Error::Internal(absl::StrCat("tf_adam_op custom call: ", what));
}

// The operands every call starts with: the six scalars and the optional ones, as ScalarPointers.
template <typename C>
ffi::ErrorOr<ScalarPointers> ReadScalars(const ffi::RemainingArgs& args, bool weight_decay,
                                         bool one_minus_beta, size_t* next) {
  const ffi::DataType want = sizeof(C) == 8 ? ffi::DataType::F64 : ffi::DataType::F32;
  std::vector<const void*> p;
  const size_t count = xla_calls::kScalars + (weight_decay ? 1 : 0) + (one_minus_beta ? 2 : 0);
  for (size_t i = 0; i < count; ++i) {
    auto buffer = args.get<ffi::AnyBuffer>(i);
    if (!buffer.has_value()) return ffi::Unexpected(Internal("missing scalar operand"));
    if (buffer->element_type() != want || buffer->element_count() != 1) {
      return ffi::Unexpected(Internal("a scalar operand has the wrong type or size"));
    }
    p.push_back(buffer->untyped_data());
  }
  ScalarPointers s{p[0], p[1], sizeof(C) == 8, p[2], p[3], p[4], p[5]};
  size_t k = xla_calls::kScalars;
  if (weight_decay) s.weight_decay = p[k++];
  if (one_minus_beta) {
    s.one_minus_beta1 = p[k++];
    s.one_minus_beta2 = p[k++];
  }
  *next = k;
  return s;
}

Variant MakeVariant(int64_t amsgrad, int64_t nesterov, int64_t weight_decay) {
  Variant variant;
  variant.amsgrad = amsgrad != 0;
  variant.nesterov = nesterov != 0;
  variant.weight_decay = static_cast<WeightDecay>(weight_decay);
  return variant;
}

// Calls fn(T{}) for the variables' element type.
template <typename Fn>
ffi::Error ForElementType(ffi::DataType type, Fn fn) {
  switch (type) {
    case ffi::DataType::F16: return fn(Eigen::half{});
    case ffi::DataType::BF16: return fn(Eigen::bfloat16{});
    case ffi::DataType::F32: return fn(float{});
    case ffi::DataType::F64: return fn(double{});
    default: return Internal("unsupported variable type");
  }
}

ffi::Error DenseAdam(ffi::ThreadPool pool, ffi::RemainingArgs args, ffi::RemainingRets rets,
                     int64_t n, int64_t amsgrad, int64_t nesterov, int64_t weight_decay,
                     int64_t one_minus_beta) {
  const Variant variant = MakeVariant(amsgrad, nesterov, weight_decay);
  const int per_var_args = variant.amsgrad ? 5 : 4;  // var, m, v, (vhat), grad
  const int per_var_rets = variant.amsgrad ? 4 : 3;
  auto first_var = rets.get<ffi::AnyBuffer>(0);
  if (!first_var.has_value()) return Internal("missing variable result");
  return ForElementType((*first_var)->element_type(), [&](auto zero) -> ffi::Error {
    using T = decltype(zero);
    using C = OpMathT<T>;
    size_t next = 0;
    auto scalars = ReadScalars<C>(args, weight_decay != 0, one_minus_beta != 0, &next);
    if (!scalars.has_value()) return scalars.error();
    std::vector<TensorPointers> tensors(n);
    for (int64_t k = 0; k < n; ++k) {
      auto out = [&](int j) { return rets.get<ffi::AnyBuffer>(k * per_var_rets + j); };
      auto var = out(0), m = out(1), v = out(2);
      auto grad = args.get<ffi::AnyBuffer>(next + k * per_var_args + per_var_args - 1);
      if (!var.has_value() || !m.has_value() || !v.has_value() || !grad.has_value()) {
        return Internal("missing operand or result");
      }
      tensors[k] = {(*var)->untyped_data(), (*m)->untyped_data(), (*v)->untyped_data(),
                    grad->untyped_data(), static_cast<int64_t>((*var)->element_count())};
      if (variant.amsgrad) {
        auto vhat = out(3);
        if (!vhat.has_value()) return Internal("missing vhat result");
        tensors[k].vhat = (*vhat)->untyped_data();
      }
    }
    const AdamStep<C> step = LoadStep<C>(*scalars);
    return OnPool(pool, [&](const Eigen::ThreadPoolDevice& d) {
      CpuDenseUpdate<T>(d, tensors, step, variant);
      return ffi::Error::Success();
    });
  });
}

template <typename Tindex>
ffi::Error SortedValidIndices(const ffi::AnyBuffer& indices, int64_t rows, SortedSegments* out) {
  const Tindex* data = static_cast<const Tindex*>(indices.untyped_data());
  const int64_t n = static_cast<int64_t>(indices.element_count());
  const absl::Status valid = ValidateIndices(data, n, rows);
  if (!valid.ok()) return ffi::Error::InvalidArgument(std::string(valid.message()));
  *out = SortIntoSegments(data, n);
  return ffi::Error::Success();
}

ffi::Error SparseAdam(ffi::ThreadPool pool, ffi::RemainingArgs args, ffi::RemainingRets rets,
                      int64_t amsgrad, int64_t weight_decay, int64_t one_minus_beta, int64_t lazy,
                      int64_t scale_first, int64_t dense_rule, int64_t has_v_term) {
  Variant variant = MakeVariant(amsgrad, /*nesterov=*/0, weight_decay);
  variant.scale_first = scale_first != 0;
  variant.dense_form = dense_rule != 0;
  auto var = rets.get<ffi::AnyBuffer>(0), m = rets.get<ffi::AnyBuffer>(1),
       v = rets.get<ffi::AnyBuffer>(2);
  if (!var.has_value() || !m.has_value() || !v.has_value()) return Internal("missing result");
  return ForElementType((*var)->element_type(), [&](auto zero) -> ffi::Error {
    using T = decltype(zero);
    using C = OpMathT<T>;
    size_t next = 0;
    auto scalars = ReadScalars<C>(args, weight_decay != 0, one_minus_beta != 0, &next);
    if (!scalars.has_value()) return scalars.error();
    next += variant.amsgrad ? 4 : 3;  // the variables' operands: their results alias them
    auto grad = args.get<ffi::AnyBuffer>(next), indices = args.get<ffi::AnyBuffer>(next + 1);
    if (!grad.has_value() || !indices.has_value()) return Internal("missing grad or indices");
    const T* v_term = nullptr;
    if (has_v_term != 0) {
      auto term = args.get<ffi::AnyBuffer>(next + 2);
      if (!term.has_value()) return Internal("missing v_term");
      v_term = static_cast<const T*>(term->untyped_data());
    }
    T* vhat = nullptr;
    if (variant.amsgrad) {
      auto out = rets.get<ffi::AnyBuffer>(3);
      if (!out.has_value()) return Internal("missing vhat result");
      vhat = static_cast<T*>((*out)->untyped_data());
    }
    const auto dims = (*var)->dimensions();
    const int64_t rows = dims.size() > 0 ? dims[0] : 1;
    const int64_t elements = static_cast<int64_t>((*var)->element_count());
    // Every index is checked before any row is written: a bad one leaves the variables unchanged.
    SortedSegments segments;
    const ffi::Error sorted =
        indices->element_type() == ffi::DataType::S32
            ? SortedValidIndices<int32_t>(*indices, rows, &segments)
            : SortedValidIndices<int64_t>(*indices, rows, &segments);
    if (sorted.failure()) return sorted;
    if (elements == 0) return ffi::Error::Success();
    const AdamStep<C> step = LoadStep<C>(*scalars);
    return OnPool(pool, [&](const Eigen::ThreadPoolDevice& d) {
      CpuSparseUpdate<T>(d, static_cast<T*>((*var)->untyped_data()),
                         static_cast<T*>((*m)->untyped_data()),
                         static_cast<T*>((*v)->untyped_data()), vhat, rows,
                         elements / std::max<int64_t>(rows, 1),
                         static_cast<const T*>(grad->untyped_data()), v_term, segments, step,
                         lazy != 0, variant);
      return ffi::Error::Success();
    });
  });
}

}  // namespace
}  // namespace tf_adam_op

namespace ffi = ::xla::ffi;
namespace calls = ::tf_adam_op::xla_calls;

XLA_FFI_DEFINE_HANDLER(kTfAdamOpDenseAdam, ::tf_adam_op::DenseAdam,
                       ffi::Ffi::Bind()
                           .Ctx<ffi::ThreadPool>()
                           .RemainingArgs()
                           .RemainingRets()
                           .Attr<int64_t>(calls::kAttrN)
                           .Attr<int64_t>(calls::kAttrAmsgrad)
                           .Attr<int64_t>(calls::kAttrNesterov)
                           .Attr<int64_t>(calls::kAttrWeightDecay)
                           .Attr<int64_t>(calls::kAttrOneMinusBeta));

XLA_FFI_DEFINE_HANDLER(kTfAdamOpSparseAdam, ::tf_adam_op::SparseAdam,
                       ffi::Ffi::Bind()
                           .Ctx<ffi::ThreadPool>()
                           .RemainingArgs()
                           .RemainingRets()
                           .Attr<int64_t>(calls::kAttrAmsgrad)
                           .Attr<int64_t>(calls::kAttrWeightDecay)
                           .Attr<int64_t>(calls::kAttrOneMinusBeta)
                           .Attr<int64_t>(calls::kAttrLazy)
                           .Attr<int64_t>(calls::kAttrScaleFirst)
                           .Attr<int64_t>(calls::kAttrDenseRule)
                           .Attr<int64_t>(calls::kAttrVTerm));

// Registered with the XLA inside libtensorflow_framework (XLA_FFI_GetApi is its FFI table), for
// XLA's CPU platform, "Host".
XLA_FFI_REGISTER_HANDLER(XLA_FFI_GetApi(), calls::kDenseTarget, "Host", kTfAdamOpDenseAdam);
XLA_FFI_REGISTER_HANDLER(XLA_FFI_GetApi(), calls::kSparseTarget, "Host", kTfAdamOpSparseAdam);
