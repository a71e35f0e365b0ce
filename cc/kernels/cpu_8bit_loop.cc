#include "kernels/cpu_8bit_loop.h"

#include <cstring>

#include "kernels/cpu_adam_loop.h"  // CpuSimd(): the instruction set in use

#if defined(__x86_64__) && defined(__GNUC__)
#include "kernels/cpu_8bit_codec_avx512.h"
#define TF_ADAM_OP_AVX512_CODEC 1
#else
#define TF_ADAM_OP_AVX512_CODEC 0
#endif

namespace tf_adam_op {
namespace {

#if TF_ADAM_OP_AVX512_CODEC
template <typename R>
TF_ADAM_OP_AVX512_8BIT void FloatBlocksAvx512(float* var, const float* grad,
                                              const eight_bit::States8bit& s, int64_t size,
                                              int64_t first, int64_t last,
                                              const AdamStep<float> step) {
  eight_bit::Adam8bitBlocks<R, float, eight_bit::Avx512Codec>(var, grad, s, size, first, last,
                                                               step);
}
#endif

// The AVX-512 codec where the instruction set in use is AVX-512 (TF_ADAM_OP_CPU_SIMD can ask for
// a narrower one) and the CPU has the extensions the codec needs.
bool UseAvx512() {
#if TF_ADAM_OP_AVX512_CODEC
  static const bool use =
      std::strcmp(CpuSimd(), "avx512f") == 0 && eight_bit::CpuHasAvx512Codec();
  return use;
#else
  return false;
#endif
}

}  // namespace

const char* Cpu8bitCodec() { return UseAvx512() ? "avx512" : "portable"; }

template <typename T>
void Cpu8bitBlocks(const Variant& variant, T* var, const T* grad, const eight_bit::States8bit& s,
                   int64_t size, int64_t first, int64_t last, const AdamStep<OpMathT<T>>& step) {
  WithDenseRule(variant, [&](auto rule) {
    using R = decltype(rule);
#if TF_ADAM_OP_AVX512_CODEC
    if constexpr (std::is_same<T, float>::value) {
      if (UseAvx512()) return FloatBlocksAvx512<R>(var, grad, s, size, first, last, step);
    }
#endif
    eight_bit::Adam8bitBlocks<R, T>(var, grad, s, size, first, last, step);
  });
}

#define TF_ADAM_OP_INSTANTIATE(T)                                                              \
  template void Cpu8bitBlocks<T>(const Variant&, T*, const T*, const eight_bit::States8bit&,   \
                                 int64_t, int64_t, int64_t, const AdamStep<OpMathT<T>>&);
TF_ADAM_OP_INSTANTIATE(Eigen::half)
TF_ADAM_OP_INSTANTIATE(Eigen::bfloat16)
TF_ADAM_OP_INSTANTIATE(float)
TF_ADAM_OP_INSTANTIATE(double)
#undef TF_ADAM_OP_INSTANTIATE

}  // namespace tf_adam_op
