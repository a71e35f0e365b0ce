// The dense Adam loop on the CPU, vectorised for the widest x86 SIMD the machine has.
//
// TF's wheel (and a default build of this package) targets baseline x86-64, i.e. SSE2: 4 floats per
// instruction. float and double get their own entry points, compiled three times (AVX-512, AVX2,
// baseline) with GCC target attributes; the widest the CPU has is picked on first use (or a narrower
// one named by TF_ADAM_OP_CPU_SIMD, so tests can run each), and the wheel stays portable.
// Vectorising never changes a result: vector add, mul, div and sqrt are IEEE operations rounding
// exactly as the scalar ones, and -ffp-contract=off keeps FMA out (AVX2 and AVX-512 machines have
// FMA; contracting m*alpha + ... would round differently from stock).
#ifndef TF_ADAM_OP_KERNELS_CPU_ADAM_LOOP_H_
#define TF_ADAM_OP_KERNELS_CPU_ADAM_LOOP_H_

#include <cstdint>

#include "core/adam_update_rule.h"
#include "core/low_precision.h"

namespace tf_adam_op {

// Elements [begin, end) of flat var, m, v (vhat with AMSGrad, else null) and grad. Half and
// bfloat16 use the portable loop.
template <typename T>
void CpuAdamUpdateRange(const Variant& variant, T* var, T* m, T* v, T* vhat, const T* grad,
                        int64_t begin, int64_t end, const AdamStep<OpMathT<T>>& step) {
  AdamUpdateRange<T>(variant, var, m, v, vhat, grad, begin, end, step);
}

// The instruction set of the float/double loop in use: "avx512f", "avx2" or "baseline".
const char* CpuSimd();

template <>
void CpuAdamUpdateRange<float>(const Variant& variant, float* var, float* m, float* v, float* vhat,
                               const float* grad, int64_t begin, int64_t end,
                               const AdamStep<float>& step);
template <>
void CpuAdamUpdateRange<double>(const Variant& variant, double* var, double* m, double* v,
                                double* vhat, const double* grad, int64_t begin, int64_t end,
                                const AdamStep<double>& step);

}  // namespace tf_adam_op

#endif  // TF_ADAM_OP_KERNELS_CPU_ADAM_LOOP_H_
