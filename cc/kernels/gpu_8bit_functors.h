// The GPU specialisations of the 8-bit ops' functors (adam_8bit_functors.h): the CUDA kernels of
// gpu/adam_8bit_gpu.h on the op's stream. Included by adam_8bit_op.cc only when the CUDA kernels
// are built. The scales are checked on the host, so a GPU step copies them there first and waits
// (one copy of 4 bytes per 256 elements of each state); the sparse update's segments and blocks
// are found on the host, as on the CPU, and copied to the device.
#ifndef TF_ADAM_OP_KERNELS_GPU_8BIT_FUNCTORS_H_
#define TF_ADAM_OP_KERNELS_GPU_8BIT_FUNCTORS_H_

#include <vector>

#include "gpu/adam_8bit_gpu.h"
#include "kernels/adam_8bit_functors.h"
#include "kernels/gpu_functors.h"  // GpuDevice, CudaStream, CudaStatus, GpuDtype

namespace tf_adam_op {
namespace functor {

template <>
struct HostScales<GpuDevice> {
  absl::Status operator()(tensorflow::OpKernelContext* ctx, const tensorflow::Tensor& scales,
                          std::vector<float>* copy, const float** data) const {
    copy->resize(scales.NumElements());
    *data = copy->data();
    if (copy->empty()) return absl::OkStatus();
    return CudaStatus(gpu::CopyDeviceToHostAndWait(CudaStream(ctx), copy->data(),
                                                   scales.flat<float>().data(),
                                                   copy->size() * sizeof(float)),
                      "reading the 8-bit states' scales");
  }
};

template <typename T>
struct Adam8bitDense<GpuDevice, T> {
  absl::Status operator()(tensorflow::OpKernelContext* ctx, const Variant& variant,
                          const std::vector<Tensor8bit<T>>& tensors,
                          const ScalarPointers& scalars) const {
    for (const Tensor8bit<T>& t : tensors) {  // one launch per tensor
      TF_RETURN_IF_ERROR(CudaStatus(gpu::LaunchDense8bit(CudaStream(ctx), GpuDtype<T>(), variant,
                                                         t.var, t.grad, t.size, t.states, scalars),
                                    "the 8-bit-state Adam update"));
    }
    return absl::OkStatus();
  }
};

template <typename T>
struct Adam8bitSparse<GpuDevice, T> {
  using C = OpMathT<T>;

  absl::Status operator()(tensorflow::OpKernelContext* ctx, const Variant& variant, bool lazy,
                          T* var, const eight_bit::States8bit& states, int64_t rows,
                          int64_t row_size, const T* grad, const T* v_term,
                          const SortedSegments& segments, const ScalarPointers& scalars) const {
    const int64_t size = rows * row_size;
    if (size == 0) return absl::OkStatus();
    // The blocks to update, as the CPU kernel finds them (cpu_8bit_sparse.h).
    const std::vector<int64_t> blocks = BlocksToUpdate(lazy, segments.unique_rows, rows, row_size);
    const int64_t n = static_cast<int64_t>(segments.order.size());
    const int64_t unique = segments.unique();
    const std::vector<int64_t> packed =
        gpu::PackSegments(segments.order, segments.segment_starts, segments.unique_rows);
    tensorflow::Tensor on_device, block_list, summed;
    TF_RETURN_IF_ERROR(ctx->allocate_temp(
        tensorflow::DT_INT64, tensorflow::TensorShape({static_cast<int64_t>(packed.size())}),
        &on_device));
    TF_RETURN_IF_ERROR(ctx->allocate_temp(
        tensorflow::DT_INT64, tensorflow::TensorShape({static_cast<int64_t>(blocks.size())}),
        &block_list));
    TF_RETURN_IF_ERROR(ctx->allocate_temp(
        tensorflow::DataTypeToEnum<C>::value,
        tensorflow::TensorShape({(v_term ? 2 : 1) * unique * row_size}), &summed));
    void* stream = CudaStream(ctx);
    gpu::SparseSegments device;
    TF_RETURN_IF_ERROR(CudaStatus(gpu::UploadSegments(stream, packed,
                                                      on_device.flat<int64_t>().data(), n,
                                                      unique, &device),
                                  "copying the sparse segments"));
    if (!blocks.empty()) {
      TF_RETURN_IF_ERROR(CudaStatus(
          gpu::CopyHostToDevice(stream, block_list.flat<int64_t>().data(), blocks.data(),
                                blocks.size() * sizeof(int64_t)),
          "copying the blocks to update"));
    }
    return CudaStatus(
        gpu::LaunchSparse8bit(stream, GpuDtype<T>(), lazy, variant, var, states, rows, row_size,
                              grad, v_term, device, block_list.flat<int64_t>().data(),
                              static_cast<int64_t>(blocks.size()), summed.data(), scalars),
        "the sparse 8-bit-state Adam update");
  }
};

}  // namespace functor
}  // namespace tf_adam_op

#endif  // TF_ADAM_OP_KERNELS_GPU_8BIT_FUNCTORS_H_
