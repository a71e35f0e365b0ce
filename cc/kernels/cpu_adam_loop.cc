#include "kernels/cpu_adam_loop.h"

namespace tf_adam_op {
namespace {

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
// One clone per ISA; an ifunc resolver picks the best the CPU supports when the library loads.
#define TF_ADAM_OP_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define TF_ADAM_OP_SIMD_CLONES
#endif

TF_ADAM_OP_SIMD_CLONES
void FloatLoop(bool use_nesterov, float* var, float* m, float* v, const float* grad, int64_t begin,
               int64_t end, const AdamStep<float> step) {
  AdamUpdateRange<float>(use_nesterov, var, m, v, grad, begin, end, step);
}

TF_ADAM_OP_SIMD_CLONES
void DoubleLoop(bool use_nesterov, double* var, double* m, double* v, const double* grad,
                int64_t begin, int64_t end, const AdamStep<double> step) {
  AdamUpdateRange<double>(use_nesterov, var, m, v, grad, begin, end, step);
}

}  // namespace

template <>
void CpuAdamUpdateRange<float>(bool use_nesterov, float* var, float* m, float* v,
                               const float* grad, int64_t begin, int64_t end,
                               const AdamStep<float>& step) {
  FloatLoop(use_nesterov, var, m, v, grad, begin, end, step);
}

template <>
void CpuAdamUpdateRange<double>(bool use_nesterov, double* var, double* m, double* v,
                                const double* grad, int64_t begin, int64_t end,
                                const AdamStep<double>& step) {
  DoubleLoop(use_nesterov, var, m, v, grad, begin, end, step);
}

}  // namespace tf_adam_op
