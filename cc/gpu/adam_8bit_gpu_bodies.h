// What one GPU thread of the 8-bit-state kernels does (adam_8bit_gpu.cu), for host and device, so
// the CPU can run the very same bodies (tests/gpu/emulation). One thread per block of 256: a
// block's new absmax is a reduction over the whole block, and a thread that holds its block keeps
// the threads independent (the emulation's premise: they never talk to each other). Correct first;
// a tuned kernel (one warp per block, a shuffle reduction) can replace the body later.
#ifndef TF_ADAM_OP_GPU_ADAM_8BIT_GPU_BODIES_H_
#define TF_ADAM_OP_GPU_ADAM_8BIT_GPU_BODIES_H_

#include <cstdint>

#include "core/adam_update_rule.h"
#include "core/blockwise_8bit.h"
#include "gpu/adam_gpu.h"
#include "gpu/adam_gpu_bodies.h"

namespace tf_adam_op {
namespace gpu {

// Dense: every block of the `size` elements, one per thread of a grid-stride loop.
template <typename T, typename R, typename C = OpMathT<T>>
TF_ADAM_OP_HOST_DEVICE inline void Dense8bitBody(GridPosition g, T* var, const T* grad,
                                                 const eight_bit::States8bit& s, int64_t size,
                                                 const AdamStep<C>& step) {
  const int64_t blocks = eight_bit::BlockCount(size);
  for (int64_t b = g.thread; b < blocks; b += g.threads) {
    eight_bit::Adam8bitBlocks<R, T, eight_bit::PortableCodec, C>(var, grad, s, size, b, b + 1,
                                                                 step);
  }
}

// Sparse: the blocks listed in `blocks` (lazy: those holding a named row's element; otherwise all
// of them), with the gradient rows summed per segment (SumSegmentsBody) in `summed` (and v's term
// in `summed_v_term`, or null). An element's row is found in the segments' unique rows.
template <typename T, typename R, typename C = OpMathT<T>>
TF_ADAM_OP_HOST_DEVICE inline void Sparse8bitBody(GridPosition g, T* var,
                                                  const eight_bit::States8bit& s, int64_t rows,
                                                  int64_t row_size, const int64_t* blocks,
                                                  int64_t n_blocks, const SparseSegments& seg,
                                                  const C* summed, const C* summed_v_term,
                                                  bool lazy, const AdamStep<C>& step) {
  const int64_t size = rows * row_size;
  for (int64_t k = g.thread; k < n_blocks; k += g.threads) {
    // The segment of element e's row, or -1.
    auto segment = [&](int64_t e) -> int64_t {
      const int64_t row = e / row_size;
      int64_t lo = 0, hi = seg.unique;
      while (lo < hi) {
        const int64_t mid = (lo + hi) / 2;
        if (seg.unique_rows[mid] < row) lo = mid + 1; else hi = mid;
      }
      return lo < seg.unique && seg.unique_rows[lo] == row ? lo : -1;
    };
    auto grad_of = [&](int64_t e) -> const C* {
      const int64_t at = segment(e);
      return at < 0 ? nullptr : summed + at * row_size + e % row_size;
    };
    auto v_term_of = [&](int64_t e) -> const C* {
      const int64_t at = segment(e);
      return at < 0 || summed_v_term == nullptr ? nullptr
                                                : summed_v_term + at * row_size + e % row_size;
    };
    auto updates = [&](int64_t e) { return !lazy || segment(e) >= 0; };
    eight_bit::BlockStates<C> scratch;
    eight_bit::Adam8bitSparseBlock<R, T, C>(var, s, size, blocks[k], step, grad_of, v_term_of,
                                            updates, &scratch);
  }
}

}  // namespace gpu
}  // namespace tf_adam_op

#endif  // TF_ADAM_OP_GPU_ADAM_8BIT_GPU_BODIES_H_
