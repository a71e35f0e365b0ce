// What the 8-bit-state ops (adam_8bit_op.cc) do differently per device: read the states' scales
// on the host (for the checks made before anything is written) and run the updates. The CPU's are
// here; the GPU's, over the CUDA kernels of gpu/adam_8bit_gpu.h, in gpu_8bit_functors.h.
#ifndef TF_ADAM_OP_KERNELS_ADAM_8BIT_FUNCTORS_H_
#define TF_ADAM_OP_KERNELS_ADAM_8BIT_FUNCTORS_H_

#define EIGEN_USE_THREADS

#include <algorithm>
#include <vector>

#include "core/blockwise_8bit.h"
#include "core/update_arguments.h"
#include "kernels/cpu_8bit_loop.h"
#include "kernels/cpu_8bit_sparse.h"
#include "kernels/cpu_updates.h"
#include "kernels/sparse_segments.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "unsupported/Eigen/CXX11/Tensor"

namespace tf_adam_op {

using CPUDevice = Eigen::ThreadPoolDevice;

// One tensor of a multi-tensor 8-bit update.
template <typename T>
struct Tensor8bit {
  T* var;
  const T* grad;
  int64_t size;
  eight_bit::States8bit states;
};

namespace functor {

// *data: the float32 scales of `scales` readable on the host (on a GPU, copied into *copy).
template <typename Device>
struct HostScales {
  absl::Status operator()(tensorflow::OpKernelContext* ctx, const tensorflow::Tensor& scales,
                          std::vector<float>* copy, const float** data) const;
};

// Every block of each tensor (one for the single-variable op): decode, the dense rule, encode.
// The scalars are where `scalars` points, in the memory of the device the op runs on.
template <typename Device, typename T>
struct Adam8bitDense {
  absl::Status operator()(tensorflow::OpKernelContext* ctx, const Variant& variant,
                          const std::vector<Tensor8bit<T>>& tensors,
                          const ScalarPointers& scalars) const;
};

// var is [rows, row_size]; grad (and v_term, or null) [n, row_size], grouped by `segments`.
template <typename Device, typename T>
struct Adam8bitSparse {
  absl::Status operator()(tensorflow::OpKernelContext* ctx, const Variant& variant, bool lazy,
                          T* var, const eight_bit::States8bit& states, int64_t rows,
                          int64_t row_size, const T* grad, const T* v_term,
                          const SortedSegments& segments, const ScalarPointers& scalars) const;
};

template <>
struct HostScales<CPUDevice> {
  absl::Status operator()(tensorflow::OpKernelContext*, const tensorflow::Tensor& scales,
                          std::vector<float>*, const float** data) const {
    *data = scales.flat<float>().data();
    return absl::OkStatus();
  }
};

template <typename T>
struct Adam8bitDense<CPUDevice, T> {
  absl::Status operator()(tensorflow::OpKernelContext* ctx, const Variant& variant,
                          const std::vector<Tensor8bit<T>>& tensors,
                          const ScalarPointers& scalars) const {
    // The blocks of all tensors are one index space over the pool: first_block[k] is where
    // tensor k's start.
    std::vector<int64_t> first_block = {0};
    for (const Tensor8bit<T>& t : tensors) {
      first_block.push_back(first_block.back() + eight_bit::BlockCount(t.size));
    }
    const int64_t total = first_block.back();
    if (total == 0) return absl::OkStatus();
    const AdamStep<OpMathT<T>> step = LoadStep<OpMathT<T>>(scalars);
    // Per block: var and grad of T, two codes and their tables read; var and codes written.
    const Eigen::TensorOpCost cost((2 * sizeof(T) + 2) * eight_bit::kBlockSize,
                                   (sizeof(T) + 2) * eight_bit::kBlockSize,
                                   40 * eight_bit::kBlockSize);
    ShardedFor(ctx->eigen_device<CPUDevice>(), total, total * eight_bit::kBlockSize, cost,
               [&](int64_t begin, int64_t end) {
      // The last tensor whose blocks start at or before `begin`, then on through the range.
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
    return absl::OkStatus();
  }
};

template <typename T>
struct Adam8bitSparse<CPUDevice, T> {
  absl::Status operator()(tensorflow::OpKernelContext* ctx, const Variant& variant, bool lazy,
                          T* var, const eight_bit::States8bit& states, int64_t rows,
                          int64_t row_size, const T* grad, const T* v_term,
                          const SortedSegments& segments, const ScalarPointers& scalars) const {
    CpuSparse8bitUpdate<T>(ctx->eigen_device<CPUDevice>(), var, states, rows, row_size, grad,
                           v_term, segments, LoadStep<OpMathT<T>>(scalars), lazy, variant);
    return absl::OkStatus();
  }
};

}  // namespace functor
}  // namespace tf_adam_op

#endif  // TF_ADAM_OP_KERNELS_ADAM_8BIT_FUNCTORS_H_
