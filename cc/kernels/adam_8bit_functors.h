// What the 8-bit-state ops (adam_8bit_op.cc) do differently per device: read the states' scales
// on the host (for the checks made before anything is written) and run the updates. The CPU's are
// here; the GPU's, over the CUDA kernels of gpu/adam_8bit_gpu.h, in gpu_8bit_functors.h.
#ifndef TF_ADAM_OP_KERNELS_ADAM_8BIT_FUNCTORS_H_
#define TF_ADAM_OP_KERNELS_ADAM_8BIT_FUNCTORS_H_

#define EIGEN_USE_THREADS

#include <vector>

#include "core/blockwise_8bit.h"
#include "core/update_arguments.h"
#include "kernels/cpu_8bit_multi.h"  // Tensor8bit
#include "kernels/cpu_8bit_sparse.h"
#include "kernels/cpu_updates.h"
#include "kernels/sparse_segments.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "unsupported/Eigen/CXX11/Tensor"

namespace tf_adam_op {

using CPUDevice = Eigen::ThreadPoolDevice;

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
    Cpu8bitMultiUpdate<T>(ctx->eigen_device<CPUDevice>(), variant, tensors,
                          LoadStep<OpMathT<T>>(scalars));
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
