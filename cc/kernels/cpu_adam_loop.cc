#include "kernels/cpu_adam_loop.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace tf_adam_op {
namespace {

// One copy of the loop per instruction set. The compiler vectorises each for its ISA; the
// arithmetic is the same IEEE operations in every copy, so all give the same bits. `flatten`
// inlines every rule (12 variants) into the copy, so none is left compiled for the baseline only.
#if defined(__x86_64__) && defined(__GNUC__)
#define TF_ADAM_OP_X86_SIMD 1
#define TF_ADAM_OP_TARGET(isa) __attribute__((target(isa), flatten))
#else
#define TF_ADAM_OP_X86_SIMD 0
#define TF_ADAM_OP_TARGET(isa)
#endif

template <typename T>
using Loop = void (*)(const Variant&, T*, T*, T*, T*, const T*, int64_t, int64_t,
                      const AdamStep<T>);

#define TF_ADAM_OP_DEFINE_LOOP(NAME, T, ATTRIBUTE)                                              \
  ATTRIBUTE void NAME(const Variant& variant, T* var, T* m, T* v, T* vhat, const T* grad,       \
                      int64_t begin, int64_t end, const AdamStep<T> step) {                     \
    AdamUpdateRange<T>(variant, var, m, v, vhat, grad, begin, end, step);                       \
  }
TF_ADAM_OP_DEFINE_LOOP(FloatBaseline, float, )
TF_ADAM_OP_DEFINE_LOOP(DoubleBaseline, double, )
#if TF_ADAM_OP_X86_SIMD
TF_ADAM_OP_DEFINE_LOOP(FloatAvx2, float, TF_ADAM_OP_TARGET("avx2"))
TF_ADAM_OP_DEFINE_LOOP(DoubleAvx2, double, TF_ADAM_OP_TARGET("avx2"))
TF_ADAM_OP_DEFINE_LOOP(FloatAvx512, float, TF_ADAM_OP_TARGET("avx512f"))
TF_ADAM_OP_DEFINE_LOOP(DoubleAvx512, double, TF_ADAM_OP_TARGET("avx512f"))
#endif
#undef TF_ADAM_OP_DEFINE_LOOP

struct Selection {
  const char* simd;
  Loop<float> float_loop;
  Loop<double> double_loop;
};

// The widest ISA the CPU has, or a narrower one named by TF_ADAM_OP_CPU_SIMD (avx512f, avx2,
// baseline), which lets tests run every copy on one machine. Asking for an ISA the CPU lacks
// gets the widest it has, and a message on stderr.
Selection Select() {
  const Selection baseline{"baseline", &FloatBaseline, &DoubleBaseline};
#if TF_ADAM_OP_X86_SIMD
  __builtin_cpu_init();
  const Selection avx2{"avx2", &FloatAvx2, &DoubleAvx2};
  const Selection avx512{"avx512f", &FloatAvx512, &DoubleAvx512};
  const bool has_avx512 = __builtin_cpu_supports("avx512f");
  const bool has_avx2 = __builtin_cpu_supports("avx2");
  const Selection best = has_avx512 ? avx512 : has_avx2 ? avx2 : baseline;
  const char* requested = std::getenv("TF_ADAM_OP_CPU_SIMD");
  if (requested == nullptr || *requested == '\0') return best;
  if (std::strcmp(requested, "baseline") == 0) return baseline;
  if (std::strcmp(requested, "avx2") == 0 && has_avx2) return avx2;
  if (std::strcmp(requested, "avx512f") == 0 && has_avx512) return avx512;
  std::fprintf(stderr, "tf_adam_op: TF_ADAM_OP_CPU_SIMD=%s is not available on this CPU; using %s\n",
               requested, best.simd);
  return best;
#else
  return baseline;
#endif
}

const Selection& Selected() {
  static const Selection selection = Select();
  return selection;
}

}  // namespace

const char* CpuSimd() { return Selected().simd; }

template <>
void CpuAdamUpdateRange<float>(const Variant& variant, float* var, float* m, float* v, float* vhat,
                               const float* grad, int64_t begin, int64_t end,
                               const AdamStep<float>& step) {
  Selected().float_loop(variant, var, m, v, vhat, grad, begin, end, step);
}

template <>
void CpuAdamUpdateRange<double>(const Variant& variant, double* var, double* m, double* v,
                                double* vhat, const double* grad, int64_t begin, int64_t end,
                                const AdamStep<double>& step) {
  Selected().double_loop(variant, var, m, v, vhat, grad, begin, end, step);
}

}  // namespace tf_adam_op
