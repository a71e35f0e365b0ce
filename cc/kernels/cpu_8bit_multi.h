// The dense 8-bit-state update of N tensors on the CPU, over a thread pool: what the TF kernels
// (adam_8bit_functors.h, on their intra-op pool) and the XLA custom call
// (xla/cpu_8bit_custom_calls.cc, on XLA's) both run, so both give the same bits. TensorFlow-free:
// Eigen's ThreadPoolDevice, the core rule and the block loop only.
#ifndef TF_ADAM_OP_KERNELS_CPU_8BIT_MULTI_H_
#define TF_ADAM_OP_KERNELS_CPU_8BIT_MULTI_H_

#define EIGEN_USE_THREADS

#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/adam_update_rule.h"
#include "core/blockwise_8bit.h"
#include "core/low_precision.h"
#include "kernels/cpu_8bit_loop.h"
#include "kernels/cpu_updates.h"  // ShardedFor
#include "unsupported/Eigen/CXX11/Tensor"

namespace tf_adam_op {

// One tensor of a multi-tensor 8-bit update.
template <typename T>
struct Tensor8bit {
  T* var;
  const T* grad;
  int64_t size;
  eight_bit::States8bit states;
};

// Every block of each tensor: decode, the dense rule, encode. The blocks of all tensors are one
// index space over the pool, so small tensors share threads as the float multi-tensor loop's do.
template <typename T>
void Cpu8bitMultiUpdate(const Eigen::ThreadPoolDevice& d, const Variant& variant,
                        const std::vector<Tensor8bit<T>>& tensors,
                        const AdamStep<OpMathT<T>>& step) {
  // first_block[k]: where tensor k's blocks start.
  std::vector<int64_t> first_block = {0};
  for (const Tensor8bit<T>& t : tensors) {
    first_block.push_back(first_block.back() + eight_bit::BlockCount(t.size));
  }
  const int64_t total = first_block.back();
  if (total == 0) return;
  // Per block: var and grad of T, two codes and their tables read; var and codes written.
  const Eigen::TensorOpCost cost((2 * sizeof(T) + 2) * eight_bit::kBlockSize,
                                 (sizeof(T) + 2) * eight_bit::kBlockSize,
                                 40 * eight_bit::kBlockSize);
  ShardedFor(d, total, total * eight_bit::kBlockSize, cost, [&](int64_t begin, int64_t end) {
    // The last tensor whose blocks start at or before `begin` (an empty tensor has none and
    // shares its start with the next), then on through the range.
    size_t k = std::upper_bound(first_block.begin(), first_block.end(), begin) -
               first_block.begin() - 1;
    while (begin < end) {
      const int64_t stop = std::min(end, first_block[k + 1]);
      const Tensor8bit<T>& t = tensors[k];
      Cpu8bitBlocks<T>(variant, t.var, t.grad, t.states, t.size, begin - first_block[k],
                       stop - first_block[k], step);
      begin = stop;
      ++k;
    }
  });
}

}  // namespace tf_adam_op

#endif  // TF_ADAM_OP_KERNELS_CPU_8BIT_MULTI_H_
