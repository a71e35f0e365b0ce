// The dense 8-bit-state update on the CPU: blocks of core/blockwise_8bit.h, with the AVX-512 codec
// (kernels/cpu_8bit_codec_avx512.h) where the CPU has it and the instruction set in use is AVX-512
// (cpu_adam_loop.cc's CpuSimd()). Both codecs give the same codes and values.
#ifndef TF_ADAM_OP_KERNELS_CPU_8BIT_LOOP_H_
#define TF_ADAM_OP_KERNELS_CPU_8BIT_LOOP_H_

#include <cstdint>

#include "core/adam_update_rule.h"
#include "core/blockwise_8bit.h"
#include "core/low_precision.h"

namespace tf_adam_op {

// Blocks [first, last) of `size` elements of var and grad, updated with their 8-bit states.
template <typename T>
void Cpu8bitBlocks(const Variant& variant, T* var, const T* grad, const eight_bit::States8bit& s,
                   int64_t size, int64_t first, int64_t last, const AdamStep<OpMathT<T>>& step);

// The codec Cpu8bitBlocks<float> runs in this process: "avx512" or "portable".
const char* Cpu8bitCodec();

}  // namespace tf_adam_op

#endif  // TF_ADAM_OP_KERNELS_CPU_8BIT_LOOP_H_
