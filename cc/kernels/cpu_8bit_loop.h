// The dense 8-bit-state update on the CPU: blocks of core/blockwise_8bit.h, with an AVX-512 encoder
// and decoder where the CPU has them (the instruction set cpu_adam_loop.cc picks, CpuSimd()). Both
// encoders give the same codes: the vectorised one computes the same cell and midpoint comparison.
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

// Whether Cpu8bitBlocks<float> runs the AVX-512 codec in this process.
bool Cpu8bitVectorised();

}  // namespace tf_adam_op

#endif  // TF_ADAM_OP_KERNELS_CPU_8BIT_LOOP_H_
