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
  step.alpha = lr * Sqrt(C(1) - beta2_power) / (C(1) - beta1_power);
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
  m_c += (g - m_c) * step.one_minus_beta1;
  v_c += (g * g - v_c) * step.one_minus_beta2;
  const C numerator = kNesterov ? (g * step.one_minus_beta1 + step.beta1 * m_c) : m_c;
  const C var_c = static_cast<C>(*var) - (numerator * step.alpha) / (Sqrt(v_c) + step.epsilon);
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
  C m_c = static_cast<C>(*m) * step.beta1;
  C v_c = static_cast<C>(*v) * step.beta2;
  if (grad != nullptr) {
    const C g = *grad;
    m_c = m_c + g * step.one_minus_beta1;
    if (v_term != nullptr) {
      v_c = v_c + *v_term;
    } else {
      v_c = v_c + (kScaleFirst ? g * (g * step.one_minus_beta2) : (g * g) * step.one_minus_beta2);
    }
  }
  const C var_c = static_cast<C>(*var) - (step.alpha * m_c) / (Sqrt(v_c) + step.epsilon);
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
