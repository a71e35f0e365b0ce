// The Adam update rule, written once for every path: the CPU and CUDA kernels of every op and the
// TF-free pybind11 module all call these functions. No TensorFlow include may appear here.
//
// The operation order is stock TensorFlow's ApplyAdam kernel (training_ops.cc), so that float32 and
// float64 results are bit-identical to stock when compiled without FMA contraction:
//   alpha = lr * sqrt(1 - beta2_power) / (1 - beta1_power)
//   m    += (g - m) * (1 - beta1)
//   v    += (g * g - v) * (1 - beta2)
//   var  -= (m * alpha) / (sqrt(v) + epsilon)
//   nesterov: var -= ((g * (1 - beta1) + beta1 * m) * alpha) / (sqrt(v) + epsilon)
// Two options extend it, each a compile-time flag, so the plain rule's loop is exactly what it was:
//   amsgrad (stock's ApplyAdamWithAmsgrad): vhat = max(vhat, v), and sqrt(vhat) replaces sqrt(v)
//   decoupled weight decay, applied to var in the same pass, before the Adam step:
//     kTimesVar   var -= weight_decay * var        (TF1 contrib's AdamW, TF Addons)
//     kTimesVarLr var -= (var * weight_decay) * lr (Keras 3's AdamW)
// 1 - beta1 and 1 - beta2 are computed here from beta1 and beta2 unless the caller hands them in
// (Keras 3 computes them from Python floats in double and rounds once, which differs in float32).
#ifndef TF_ADAM_OP_CORE_ADAM_UPDATE_RULE_H_
#define TF_ADAM_OP_CORE_ADAM_UPDATE_RULE_H_

#include <cmath>
#include <cstdint>
#include <type_traits>

#if defined(__CUDACC__)
#define TF_ADAM_OP_HOST_DEVICE __host__ __device__
#else
#define TF_ADAM_OP_HOST_DEVICE
#endif

namespace tf_adam_op {

// IEEE square root of the arithmetic type (float stays float: sqrtf/sqrtps, never via double).
template <typename C>
TF_ADAM_OP_HOST_DEVICE inline C Sqrt(C x) {
#if defined(__CUDA_ARCH__)
  return sqrt(x);  // CUDA's float and double overloads
#else
  return std::sqrt(x);
#endif
}

// The type the arithmetic is done in ("opmath"): low-precision storage types specialise this to
// float (see low_precision.h), so a half or bfloat16 element is rounded once, on store.
template <typename T>
struct OpMath {
  using type = T;
};
template <typename T>
using OpMathT = typename OpMath<T>::type;

// NaN propagation, so that NaN results carry stock's bits too. When both sources of an x86 add or
// multiply are NaN the result is the first source's NaN (quieted), and a compiler may put the two
// sources of a commutative operation in either order. So where both can be NaN we say which one's
// NaN wins, as in stock's kernels (TF 2.21's wheel, read off with NaN payloads: the scalar of a
// product with a scalar, epsilon in sqrt(v) + epsilon, the state in m + term and v + term). With a
// NaN `first` the result is first + first (first's NaN, quieted); otherwise first op second, which
// yields second's NaN if it is one.
template <typename C>
TF_ADAM_OP_HOST_DEVICE inline C SumNaNFirst(C first, C second) {
  return first != first ? first + first : first + second;
}
template <typename C>
TF_ADAM_OP_HOST_DEVICE inline C ProductNaNFirst(C first, C second) {
  return first != first ? first * first : first * second;
}

// The per-step scalars, derived once per op call rather than once per element.
template <typename C>
struct AdamStep {
  C alpha;            // lr * sqrt(1 - beta2_power) / (1 - beta1_power)
  C beta1;
  C beta2;
  C one_minus_beta1;
  C one_minus_beta2;
  C epsilon;
  C lr;            // for the Keras weight decay convention only
  C weight_decay;  // 0 unless the variant decays
};

// Decoupled weight decay: none, TF1 contrib / TF Addons' var * wd, or Keras 3's var * wd * lr.
enum class WeightDecay : int { kNone = 0, kTimesVar = 1, kTimesVarLr = 2 };

// The options of one update, as the ops receive them (attrs and optional inputs). `nesterov`
// applies to the dense rule, `scale_first` and `dense_rule` (see the sparse rule below) to the
// sparse one.
struct Variant {
  bool nesterov = false;
  bool scale_first = false;
  bool dense_rule = false;
  bool amsgrad = false;
  WeightDecay weight_decay = WeightDecay::kNone;
};

// The same options as compile-time constants (picked once per launch, on the host, by
// WithDenseRule / WithSparseRule below): the rule's functions are instantiated per Rule, so a
// flag that is off costs nothing (no load of vhat, no branch in the loop).
template <bool kNesterov, bool kScaleFirst, bool kAmsgrad, WeightDecay kDecay,
          bool kDenseRule = false>
struct Rule {
  static constexpr bool nesterov = kNesterov;
  static constexpr bool scale_first = kScaleFirst;
  static constexpr bool dense_rule = kDenseRule;
  static constexpr bool amsgrad = kAmsgrad;
  static constexpr WeightDecay weight_decay = kDecay;
};

namespace internal {
template <bool kNesterov, bool kScaleFirst, bool kAmsgrad, bool kDenseRule, typename Fn>
inline void WithDecay(WeightDecay decay, Fn&& fn) {
  switch (decay) {
    case WeightDecay::kTimesVar:
      return fn(Rule<kNesterov, kScaleFirst, kAmsgrad, WeightDecay::kTimesVar, kDenseRule>());
    case WeightDecay::kTimesVarLr:
      return fn(Rule<kNesterov, kScaleFirst, kAmsgrad, WeightDecay::kTimesVarLr, kDenseRule>());
    default:
      return fn(Rule<kNesterov, kScaleFirst, kAmsgrad, WeightDecay::kNone, kDenseRule>());
  }
}
template <bool kNesterov, bool kScaleFirst, bool kDenseRule = false, typename Fn>
inline void WithAmsgrad(const Variant& v, Fn&& fn) {
  if (v.amsgrad) {
    WithDecay<kNesterov, kScaleFirst, true, kDenseRule>(v.weight_decay, fn);
  } else {
    WithDecay<kNesterov, kScaleFirst, false, kDenseRule>(v.weight_decay, fn);
  }
}
}  // namespace internal

// fn(Rule<...>()) for a dense update's variant (nesterov, amsgrad, weight decay: 12 rules).
template <typename Fn>
inline void WithDenseRule(const Variant& v, Fn&& fn) {
  if (v.nesterov) {
    internal::WithAmsgrad<true, false>(v, fn);
  } else {
    internal::WithAmsgrad<false, false>(v, fn);
  }
}

// fn(Rule<...>()) for a sparse update's variant (stock's form, scale_first or the dense form;
// amsgrad; weight decay: 18 rules).
template <typename Fn>
inline void WithSparseRule(const Variant& v, Fn&& fn) {
  if (v.dense_rule) {
    internal::WithAmsgrad<false, false, true>(v, fn);
  } else if (v.scale_first) {
    internal::WithAmsgrad<false, true>(v, fn);
  } else {
    internal::WithAmsgrad<false, false>(v, fn);
  }
}

template <typename C>
TF_ADAM_OP_HOST_DEVICE inline AdamStep<C> MakeAdamStep(C beta1_power, C beta2_power, C lr, C beta1,
                                                       C beta2, C epsilon) {
  AdamStep<C> step;
  step.alpha = ProductNaNFirst(Sqrt(C(1) - beta2_power), lr) / (C(1) - beta1_power);
  step.beta1 = beta1;
  step.beta2 = beta2;
  step.one_minus_beta1 = C(1) - beta1;
  step.one_minus_beta2 = C(1) - beta2;
  step.epsilon = epsilon;
  step.lr = lr;
  step.weight_decay = C(0);
  return step;
}

// var after the decoupled weight decay (R::weight_decay), before the Adam step.
template <typename R, typename C>
TF_ADAM_OP_HOST_DEVICE inline C DecayedVar(C var, const AdamStep<C>& step) {
  if (R::weight_decay == WeightDecay::kTimesVar) {
    return var - ProductNaNFirst(step.weight_decay, var);  // contrib: var.assign_sub(wd * var)
  }
  if (R::weight_decay == WeightDecay::kTimesVarLr) {
    return var - (var * step.weight_decay) * step.lr;  // Keras: var.assign_sub(var * wd * lr)
  }
  return var;
}

// The second moment the denominator uses: v, or (AMSGrad) vhat = max(vhat, v), stored. Written as
// Eigen's cwiseMax(vhat, v) evaluates (std::max's rule: a NaN in either keeps vhat), as stock does.
template <typename R, typename T, typename C>
TF_ADAM_OP_HOST_DEVICE inline C SecondMoment(T* vhat, C v_c) {
  if (!R::amsgrad) return v_c;
  const C vhat_c = static_cast<C>(*vhat);
  const C max_c = vhat_c < v_c ? v_c : vhat_c;
  *vhat = static_cast<T>(max_c);
  return max_c;
}

// One element of the dense rule. T is the storage type, C = OpMathT<T> the arithmetic type, S the
// type m, v and vhat are kept in (T; C where an 8-bit state was decoded, core/blockwise_8bit.h);
// vhat is read only when R::amsgrad (it may be null otherwise).
template <typename R, typename T, typename C = OpMathT<T>, typename S = T>
TF_ADAM_OP_HOST_DEVICE inline void AdamUpdateElement(T* var, S* m, S* v, S* vhat, const T grad,
                                                     const AdamStep<C>& step) {
  const C g = static_cast<C>(grad);
  C m_c = static_cast<C>(*m);
  C v_c = static_cast<C>(*v);
  m_c = SumNaNFirst(m_c, ProductNaNFirst(step.one_minus_beta1, g - m_c));
  v_c = SumNaNFirst(v_c, ProductNaNFirst(step.one_minus_beta2, g * g - v_c));
  const C second = SecondMoment<R>(vhat, v_c);
  C numerator = m_c;
  C denominator = SumNaNFirst(step.epsilon, Sqrt(second));
  if (R::nesterov) {
    const C scaled_grad = ProductNaNFirst(step.one_minus_beta1, g);
    const C scaled_m = ProductNaNFirst(step.beta1, m_c);
    // Stock's nesterov kernel lets sqrt(v)'s NaN win over epsilon's; in the numerator its double
    // kernel keeps the first term's, its float kernel varies with the position (see
    // test_nan_bits.py): we take its usual choice.
    denominator = SumNaNFirst(Sqrt(second), step.epsilon);
    numerator = sizeof(C) == sizeof(double) ? SumNaNFirst(scaled_grad, scaled_m)
                                            : SumNaNFirst(scaled_m, scaled_grad);
  }
  const C var_c = DecayedVar<R>(static_cast<C>(*var), step) -
                  ProductNaNFirst(step.alpha, numerator) / denominator;
  *m = static_cast<S>(m_c);
  *v = static_cast<S>(v_c);
  *var = static_cast<T>(var_c);
}

// Elements [begin, end) of flat arrays. 64-bit indices: tensors past 2^31 elements are fine.
// Written as a plain loop over restrict pointers so the compiler vectorises it; vector add, mul, div,
// sqrt and max round exactly as the scalar ones, so vectorising never changes a bit.
template <typename R, typename T, typename C = OpMathT<T>>
TF_ADAM_OP_HOST_DEVICE inline void AdamUpdateRange(T* __restrict__ var, T* __restrict__ m,
                                                   T* __restrict__ v, T* __restrict__ vhat,
                                                   const T* __restrict__ grad, int64_t begin,
                                                   int64_t end, const AdamStep<C> step) {
  for (int64_t i = begin; i < end; ++i) {
    AdamUpdateElement<R, T, C>(var + i, m + i, v + i, R::amsgrad ? vhat + i : nullptr, grad[i],
                               step);
  }
}

// Host-side: picks the rule once per call.
template <typename T, typename C = OpMathT<T>>
inline void AdamUpdateRange(const Variant& variant, T* var, T* m, T* v,
                                                   T* vhat, const T* grad, int64_t begin,
                                                   int64_t end, const AdamStep<C>& step) {
  WithDenseRule(variant, [&](auto rule) {
    AdamUpdateRange<decltype(rule), T, C>(var, m, v, vhat, grad, begin, end, step);
  });
}

// --- Sparse rows ------------------------------------------------------------------------------
// Stock's sparse path (adam.py, _apply_sparse_shared) is a chain of TF ops with its own order:
//   m = m * beta1;  m[rows] += g * (1 - beta1)
//   v = v * beta2;  v[rows] += (g * g) * (1 - beta2)
//   var -= (alpha * m) / (sqrt(v) + epsilon)
// where g is the gradient with duplicate indices summed. A row without a gradient only decays m and
// v (it gets no "+ 0", which would turn -0 into +0). `grad` is null for such a row.
//
// v's gradient term, (g * g) * (1 - beta2) as stock writes it, is where graphs differ: grappler's
// arithmetic optimizer rewrites it into g * (g * (1 - beta2)) (kScaleFirst), which rounds
// differently, unless constant folding evaluated it as written first. So a caller can also hand the
// term in, computed by TF ops written as stock writes them (`v_term`, summed over duplicates like the
// gradient): whatever grappler does to stock's expression it then does to ours.

// The dense form (R::dense_rule): each row follows the dense rule, with g the row's gradient summed
// over duplicate indices and g * g replaced by `v_term`, the sum of the duplicates' squares: what
// Keras 3's Adam computes for an IndexedSlices gradient (it squares the slices, then densifies).
// A row without a gradient (every row is updated unless lazy) takes g = g * g = 0 and its weight
// decay, as the dense rule on Keras's densified gradient does. Both pointers are null for such a
// row and both are given otherwise.
template <typename R, typename T, typename C = OpMathT<T>, typename S = T>
TF_ADAM_OP_HOST_DEVICE inline void AdamSparseDenseRuleElement(T* var, S* m, S* v, S* vhat,
                                                              const C* grad, const C* grad_squared,
                                                              const AdamStep<C>& step) {
  const C g = grad != nullptr ? *grad : C(0);
  const C g_squared = grad != nullptr ? *grad_squared : C(0);
  C m_c = static_cast<C>(*m);
  C v_c = static_cast<C>(*v);
  m_c = SumNaNFirst(m_c, ProductNaNFirst(step.one_minus_beta1, g - m_c));
  v_c = SumNaNFirst(v_c, ProductNaNFirst(step.one_minus_beta2, g_squared - v_c));
  const C second = SecondMoment<R>(vhat, v_c);
  const C var_c = DecayedVar<R>(static_cast<C>(*var), step) -
                  ProductNaNFirst(step.alpha, m_c) / SumNaNFirst(step.epsilon, Sqrt(second));
  *m = static_cast<S>(m_c);
  *v = static_cast<S>(v_c);
  *var = static_cast<T>(var_c);
}

// The rows the sparse modes update follow the dense options too: AMSGrad's vhat on every row the
// mode updates; the weight decay only on the rows with a gradient (TF Addons decays the batch's
// rows: a gather, a multiply and a scatter_add before the update), once per row however often
// its index repeats in the batch.
template <typename R, typename T, typename C = OpMathT<T>, typename S = T>
TF_ADAM_OP_HOST_DEVICE inline void AdamSparseElement(T* var, S* m, S* v, S* vhat, const C* grad,
                                                     const C* v_term, const AdamStep<C>& step) {
  if (R::dense_rule) {
    AdamSparseDenseRuleElement<R, T, C, S>(var, m, v, vhat, grad, v_term, step);
    return;
  }
  C m_c = ProductNaNFirst(step.beta1, static_cast<C>(*m));
  C v_c = ProductNaNFirst(step.beta2, static_cast<C>(*v));
  C var_c = static_cast<C>(*var);
  if (grad != nullptr) {
    const C g = *grad;
    m_c = SumNaNFirst(m_c, ProductNaNFirst(step.one_minus_beta1, g));
    if (v_term != nullptr) {
      v_c = SumNaNFirst(v_c, *v_term);
    } else if (R::scale_first) {
      v_c = SumNaNFirst(v_c, g * (g * step.one_minus_beta2));
    } else {
      v_c = SumNaNFirst(v_c, ProductNaNFirst(step.one_minus_beta2, g * g));
    }
    var_c = DecayedVar<R>(var_c, step);
  }
  const C second = SecondMoment<R>(vhat, v_c);
  var_c = var_c - ProductNaNFirst(step.alpha, m_c) / SumNaNFirst(step.epsilon, Sqrt(second));
  *m = static_cast<S>(m_c);
  *v = static_cast<S>(v_c);
  *var = static_cast<T>(var_c);
}

// One row of `row_size` elements; `grad_row` (in the arithmetic type, already summed over duplicate
// indices) is null for a row that has no gradient; `v_term_row` (summed alike) is null unless the
// caller hands v's term in; `vhat_row` is read only when R::amsgrad.
template <typename R, typename T, typename C = OpMathT<T>>
TF_ADAM_OP_HOST_DEVICE inline void AdamSparseRow(T* var_row, T* m_row, T* v_row, T* vhat_row,
                                                 const C* grad_row, const C* v_term_row,
                                                 int64_t row_size, const AdamStep<C>& step) {
  auto vhat_at = [vhat_row](int64_t j) { return R::amsgrad ? vhat_row + j : nullptr; };
  if (grad_row == nullptr) {
    for (int64_t j = 0; j < row_size; ++j) {
      AdamSparseElement<R, T, C>(var_row + j, m_row + j, v_row + j, vhat_at(j), nullptr, nullptr,
                                 step);
    }
  } else if (v_term_row == nullptr) {
    for (int64_t j = 0; j < row_size; ++j) {
      AdamSparseElement<R, T, C>(var_row + j, m_row + j, v_row + j, vhat_at(j), grad_row + j,
                                 nullptr, step);
    }
  } else {
    for (int64_t j = 0; j < row_size; ++j) {
      AdamSparseElement<R, T, C>(var_row + j, m_row + j, v_row + j, vhat_at(j), grad_row + j,
                                 v_term_row + j, step);
    }
  }
}

}  // namespace tf_adam_op

#endif  // TF_ADAM_OP_CORE_ADAM_UPDATE_RULE_H_
