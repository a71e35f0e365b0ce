// The GPU specialisations of the functors: they reach the op's CUDA stream and call the launchers
// in gpu/adam_gpu.h. Included by the op files only when the CUDA kernels are built.
//
// The kernels' "device" is a tag, GpuDevice: they need the op's stream, never Eigen's GpuDevice, so
// no CUDA header reaches the host compiler, and the library loads where no CUDA is installed (the
// CUDA runtime is linked statically; it looks for the driver only when a kernel is launched).
#ifndef TF_ADAM_OP_KERNELS_GPU_FUNCTORS_H_
#define TF_ADAM_OP_KERNELS_GPU_FUNCTORS_H_

#include <string>
#include <type_traits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gpu/adam_gpu.h"
#include "gpu/adam_gpu_bodies.h"
#include "gpu/dtype_of.h"
#include "kernels/apply_adam_v1.h"
#include "kernels/sparse_apply_adam_v1.h"
#include "kernels/training_variables.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "xla/stream_executor/stream.h"

namespace tf_adam_op {

struct GpuDevice {};

inline void* CudaStream(tensorflow::OpKernelContext* ctx) {
  return ctx->op_device_context()->stream()->platform_specific_handle().stream;
}

// A launcher's error message as a TF status (Internal: a CUDA failure is no bad input).
inline absl::Status CudaStatus(const std::string& error, const char* what) {
  if (error.empty()) return absl::OkStatus();
  return absl::InternalError(gpu::FailureMessage(error, what));
}

template <typename T>
constexpr gpu::Dtype GpuDtype() {
  return gpu::DtypeOf<T>();
}

template <>
inline absl::Status CopyDeviceBuffer<GpuDevice>(tensorflow::OpKernelContext* ctx, void* dst,
                                                const void* src, size_t bytes) {
  return CudaStatus(gpu::CopyDeviceToDevice(CudaStream(ctx), dst, src, bytes),
                    "the copy-on-write copy");
}

namespace functor {

template <typename T>
struct ApplyAdamV1<GpuDevice, T> {
  absl::Status operator()(tensorflow::OpKernelContext* ctx, const TensorPointers& tensor,
                          const ScalarPointers& scalars, const Variant& variant) const {
    return CudaStatus(gpu::LaunchDense(CudaStream(ctx), GpuDtype<T>(), variant, tensor, scalars),
                      "the Adam update");
  }
};

template <typename T>
struct ApplyAdamV1Multi<GpuDevice, T> {
  absl::Status operator()(tensorflow::OpKernelContext* ctx,
                          const std::vector<TensorPointers>& tensors,
                          const ScalarPointers& scalars, const Variant& variant) const {
    return CudaStatus(
        gpu::LaunchMulti(CudaStream(ctx), GpuDtype<T>(), variant, tensors, scalars),
        "the multi-tensor Adam update");
  }
};

template <>
struct AdvanceBetaPowers<GpuDevice> {
  absl::Status operator()(tensorflow::OpKernelContext* ctx, void* beta1_power, void* beta2_power,
                          bool powers_are_double, const void* beta1, const void* beta2,
                          bool betas_are_double) const {
    return CudaStatus(gpu::LaunchAdvancePowers(CudaStream(ctx), beta1_power, beta2_power,
                                               powers_are_double, beta1, beta2, betas_are_double),
                      "advancing the beta powers");
  }
};

template <typename T>
struct SparseApplyAdamV1<GpuDevice, T> {
  using C = OpMathT<T>;

  absl::Status operator()(tensorflow::OpKernelContext* ctx, T* var, T* m, T* v, T* vhat,
                          int64_t rows, int64_t row_size, const T* grad, const T* v_term,
                          const SortedSegments& segments, const ScalarPointers& scalars, bool lazy,
                          const Variant& variant) const {
    // The host-side segments travel to the device in one copy: order, segment starts, unique rows.
    const int64_t n = static_cast<int64_t>(segments.order.size());
    const int64_t unique = segments.unique();
    const std::vector<int64_t> packed =
        gpu::PackSegments(segments.order, segments.segment_starts, segments.unique_rows);
    tensorflow::Tensor on_device, summed;
    TF_RETURN_IF_ERROR(ctx->allocate_temp(tensorflow::DT_INT64,
                                          tensorflow::TensorShape({static_cast<int64_t>(packed.size())}),
                                          &on_device));
    TF_RETURN_IF_ERROR(ctx->allocate_temp(tensorflow::DataTypeToEnum<C>::value,
                                          tensorflow::TensorShape({(v_term ? 2 : 1) * unique * row_size}),
                                          &summed));
    void* stream = CudaStream(ctx);
    gpu::SparseSegments device;
    TF_RETURN_IF_ERROR(CudaStatus(gpu::UploadSegments(stream, packed,
                                                      on_device.flat<int64_t>().data(), n,
                                                      unique, &device),
                                  "copying the sparse segments"));
    return CudaStatus(gpu::LaunchSparse(stream, GpuDtype<T>(), lazy, variant, var, m, v, vhat,
                                        rows, row_size, grad, v_term, device, summed.data(),
                                        scalars),
                      "the sparse Adam update");
  }
};

}  // namespace functor
}  // namespace tf_adam_op

#endif  // TF_ADAM_OP_KERNELS_GPU_FUNCTORS_H_
