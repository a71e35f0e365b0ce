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
#ifndef TF_ADAM_OP_CORE_ADAM_UPDATE_RULE_H_
#define TF_ADAM_OP_CORE_ADAM_UPDATE_RULE_H_

#include <cmath>
#include <cstdint>

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
};

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
  return step;
}

// One element of the dense rule. T is the storage type, C = OpMathT<T> the arithmetic type.
template <bool kNesterov, typename T, typename C = OpMathT<T>>
TF_ADAM_OP_HOST_DEVICE inline void AdamUpdateElement(T* var, T* m, T* v, const T grad,
                                                     const AdamStep<C>& step) {
  const C g = static_cast<C>(grad);
  C m_c = static_cast<C>(*m);
  C v_c = static_cast<C>(*v);
  m_c = SumNaNFirst(m_c, ProductNaNFirst(step.one_minus_beta1, g - m_c));
  v_c = SumNaNFirst(v_c, ProductNaNFirst(step.one_minus_beta2, g * g - v_c));
  C numerator = m_c;
  C denominator = SumNaNFirst(step.epsilon, Sqrt(v_c));
  if (kNesterov) {
    const C scaled_grad = ProductNaNFirst(step.one_minus_beta1, g);
    const C scaled_m = ProductNaNFirst(step.beta1, m_c);
    // Stock's nesterov kernel lets sqrt(v)'s NaN win over epsilon's; in the numerator its double
    // kernel keeps the first term's, its float kernel varies with the position (see
    // test_nan_bits.py): we take its usual choice.
    denominator = SumNaNFirst(Sqrt(v_c), step.epsilon);
    numerator = sizeof(C) == sizeof(double) ? SumNaNFirst(scaled_grad, scaled_m)
                                            : SumNaNFirst(scaled_m, scaled_grad);
  }
  const C var_c = static_cast<C>(*var) - ProductNaNFirst(step.alpha, numerator) / denominator;
  *m = static_cast<T>(m_c);
  *v = static_cast<T>(v_c);
  *var = static_cast<T>(var_c);
}

// Elements [begin, end) of flat arrays. 64-bit indices: tensors past 2^31 elements are fine.
// Written as a plain loop over restrict pointers so the compiler vectorises it; vector add, mul, div
// and sqrt round exactly as the scalar ones, so vectorising never changes a bit.
template <bool kNesterov, typename T, typename C = OpMathT<T>>
TF_ADAM_OP_HOST_DEVICE inline void AdamUpdateRange(T* __restrict__ var, T* __restrict__ m,
                                                   T* __restrict__ v, const T* __restrict__ grad,
                                                   int64_t begin, int64_t end,
                                                   const AdamStep<C> step) {
  for (int64_t i = begin; i < end; ++i) {
    AdamUpdateElement<kNesterov, T, C>(var + i, m + i, v + i, grad[i], step);
  }
}

template <typename T, typename C = OpMathT<T>>
TF_ADAM_OP_HOST_DEVICE inline void AdamUpdateRange(bool use_nesterov, T* var, T* m, T* v,
                                                   const T* grad, int64_t begin, int64_t end,
                                                   const AdamStep<C>& step) {
  if (use_nesterov) {
    AdamUpdateRange<true, T, C>(var, m, v, grad, begin, end, step);
  } else {
    AdamUpdateRange<false, T, C>(var, m, v, grad, begin, end, step);
  }
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

template <bool kScaleFirst, typename T, typename C = OpMathT<T>>
TF_ADAM_OP_HOST_DEVICE inline void AdamSparseElement(T* var, T* m, T* v, const C* grad,
                                                     const C* v_term, const AdamStep<C>& step) {
  C m_c = ProductNaNFirst(step.beta1, static_cast<C>(*m));
  C v_c = ProductNaNFirst(step.beta2, static_cast<C>(*v));
  if (grad != nullptr) {
    const C g = *grad;
    m_c = SumNaNFirst(m_c, ProductNaNFirst(step.one_minus_beta1, g));
    if (v_term != nullptr) {
      v_c = SumNaNFirst(v_c, *v_term);
    } else if (kScaleFirst) {
      v_c = SumNaNFirst(v_c, g * (g * step.one_minus_beta2));
    } else {
      v_c = SumNaNFirst(v_c, ProductNaNFirst(step.one_minus_beta2, g * g));
    }
  }
  const C var_c = static_cast<C>(*var) - ProductNaNFirst(step.alpha, m_c) /
                                             SumNaNFirst(step.epsilon, Sqrt(v_c));
  *m = static_cast<T>(m_c);
  *v = static_cast<T>(v_c);
  *var = static_cast<T>(var_c);
}

// One row of `row_size` elements; `grad_row` (in the arithmetic type, already summed over duplicate
// indices) is null for a row that has no gradient; `v_term_row` (summed alike) is null unless the
// caller hands v's term in.
template <bool kScaleFirst, typename T, typename C = OpMathT<T>>
TF_ADAM_OP_HOST_DEVICE inline void AdamSparseRow(T* var_row, T* m_row, T* v_row, const C* grad_row,
                                                 const C* v_term_row, int64_t row_size,
                                                 const AdamStep<C>& step) {
  if (grad_row == nullptr) {
    for (int64_t j = 0; j < row_size; ++j) {
      AdamSparseElement<kScaleFirst, T, C>(var_row + j, m_row + j, v_row + j, nullptr, nullptr,
                                           step);
    }
  } else if (v_term_row == nullptr) {
    for (int64_t j = 0; j < row_size; ++j) {
      AdamSparseElement<kScaleFirst, T, C>(var_row + j, m_row + j, v_row + j, grad_row + j, nullptr,
                                           step);
    }
  } else {
    for (int64_t j = 0; j < row_size; ++j) {
      AdamSparseElement<kScaleFirst, T, C>(var_row + j, m_row + j, v_row + j, grad_row + j,
                                           v_term_row + j, step);
    }
  }
}

template <typename T, typename C = OpMathT<T>>
TF_ADAM_OP_HOST_DEVICE inline void AdamSparseRow(bool scale_first, T* var_row, T* m_row, T* v_row,
                                                 const C* grad_row, const C* v_term_row,
                                                 int64_t row_size, const AdamStep<C>& step) {
  if (scale_first) {
    AdamSparseRow<true, T, C>(var_row, m_row, v_row, grad_row, v_term_row, row_size, step);
  } else {
    AdamSparseRow<false, T, C>(var_row, m_row, v_row, grad_row, v_term_row, row_size, step);
  }
}

}  // namespace tf_adam_op

#endif  // TF_ADAM_OP_CORE_ADAM_UPDATE_RULE_H_
