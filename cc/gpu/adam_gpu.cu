// CUDA kernels of the Adam ops, all built on the shared rule in core/adam_update_rule.h; what each
// thread does is in adam_gpu_bodies.h, which the host can run too. Every thread reads the step's
// scalars from device memory (LoadStep); they stay in cache.
//
// Compiled with --fmad=false and IEEE division and square root (nvcc's defaults, no fast math): the
// GPU rounds every operation as the CPU kernel does, so CPU and GPU results are identical.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>

#include "core/adam_update_rule.h"
#include "core/update_arguments.h"
#include "gpu/adam_gpu.h"
#include "gpu/adam_gpu_bodies.h"

namespace tf_adam_op {

template <>
struct OpMath<__half> {
  using type = float;
};
template <>
struct OpMath<__nv_bfloat16> {
  using type = float;
};

namespace gpu {
namespace {

constexpr int kThreads = 256;

std::string Error(cudaError_t status) {
  return status == cudaSuccess ? std::string() : std::string(cudaGetErrorString(status));
}

std::string LastLaunchError() { return Error(cudaGetLastError()); }

// Enough blocks to fill the device (a grid-stride loop covers the rest), never more than needed.
int Blocks(int64_t elements) {
  static const int max_blocks = [] {
    int device = 0, sms = 80;
    if (cudaGetDevice(&device) == cudaSuccess) {
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
    }
    return sms * 8;
  }();
  const int64_t needed = (elements + kThreads - 1) / kThreads;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(needed, max_blocks)));
}

__device__ inline GridPosition Position() {
  return {static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x,
          static_cast<int64_t>(blockDim.x) * gridDim.x};
}

// The kernels: each thread reads the scalars and runs its part of the body (adam_gpu_bodies.h).
template <typename T, bool kNesterov>
__global__ void DenseKernel(T* var, T* m, T* v, const T* grad, int64_t n, Scalars scalars) {
  DenseBody<T, kNesterov>(Position(), var, m, v, grad, n, LoadStep<OpMathT<T>>(scalars));
}

template <typename T, bool kNesterov>
__global__ void MultiKernel(MultiArgs<T> args, Scalars scalars) {
  MultiBody<T, kNesterov>(Position(), args, LoadStep<OpMathT<T>>(scalars));
}

template <typename P, typename B>
__global__ void AdvancePowersKernel(P* beta1_power, P* beta2_power, const B* beta1,
                                    const B* beta2) {
  *beta1_power = *beta1_power * static_cast<P>(*beta1);
  *beta2_power = *beta2_power * static_cast<P>(*beta2);
}

template <typename T>
__global__ void SumSegmentsKernel(const T* grad, SparseSegments s, int64_t row_size,
                                  OpMathT<T>* summed) {
  SumSegmentsBody<T>(Position(), grad, s, row_size, summed);
}

template <typename T, bool kScaleFirst>
__global__ void SparseLazyKernel(T* var, T* m, T* v, int64_t row_size, SparseSegments s,
                                 const OpMathT<T>* summed, const OpMathT<T>* summed_v_term,
                                 Scalars scalars) {
  SparseLazyBody<T, kScaleFirst>(Position(), var, m, v, row_size, s, summed, summed_v_term,
                                 LoadStep<OpMathT<T>>(scalars));
}

template <typename T, bool kScaleFirst>
__global__ void SparseAllRowsKernel(T* var, T* m, T* v, int64_t rows, int64_t row_size,
                                    SparseSegments s, const OpMathT<T>* summed,
                                    const OpMathT<T>* summed_v_term, Scalars scalars) {
  SparseAllRowsBody<T, kScaleFirst>(Position(), var, m, v, rows, row_size, s, summed,
                                    summed_v_term, LoadStep<OpMathT<T>>(scalars));
}

template <typename T>
std::string Dense(cudaStream_t stream, bool nesterov, void* var, void* m, void* v, const void* grad,
                  int64_t n, const Scalars& scalars) {
  if (n == 0) return {};
  auto kernel = nesterov ? DenseKernel<T, true> : DenseKernel<T, false>;
  kernel<<<Blocks(n), kThreads, 0, stream>>>(static_cast<T*>(var), static_cast<T*>(m),
                                              static_cast<T*>(v), static_cast<const T*>(grad), n,
                                              scalars);
  return LastLaunchError();
}

template <typename T>
std::string Multi(cudaStream_t stream, bool nesterov, const std::vector<TensorPointers>& tensors,
                  const Scalars& scalars) {
  auto kernel = nesterov ? MultiKernel<T, true> : MultiKernel<T, false>;
  return ForEachMultiLaunch<T>(tensors, [&](const MultiArgs<T>& args) {
    kernel<<<Blocks(args.offsets[args.count]), kThreads, 0, stream>>>(args, scalars);
    return LastLaunchError();
  });
}

template <typename T>
std::string Sparse(cudaStream_t stream, bool lazy, bool scale_first, void* var, void* m, void* v,
                   int64_t rows, int64_t row_size, const void* grad, const void* v_term,
                   const SparseSegments& s, void* summed, const Scalars& scalars) {
  using C = OpMathT<T>;
  C* sums = static_cast<C*>(summed);
  const int64_t named = s.unique * row_size;
  C* v_term_sums = v_term != nullptr ? sums + named : nullptr;  // the scratch's second half
  T* var_t = static_cast<T*>(var);
  T* m_t = static_cast<T*>(m);
  T* v_t = static_cast<T*>(v);
  if (named > 0) {
    SumSegmentsKernel<T><<<Blocks(named), kThreads, 0, stream>>>(static_cast<const T*>(grad), s,
                                                                 row_size, sums);
    std::string error = LastLaunchError();
    if (!error.empty()) return error;
    if (v_term_sums != nullptr) {
      SumSegmentsKernel<T><<<Blocks(named), kThreads, 0, stream>>>(
          static_cast<const T*>(v_term), s, row_size, v_term_sums);
      error = LastLaunchError();
      if (!error.empty()) return error;
    }
  }
  if (lazy) {
    if (named == 0) return {};
    auto kernel = scale_first ? SparseLazyKernel<T, true> : SparseLazyKernel<T, false>;
    kernel<<<Blocks(named), kThreads, 0, stream>>>(var_t, m_t, v_t, row_size, s, sums, v_term_sums,
                                                   scalars);
    return LastLaunchError();
  }
  const int64_t total = rows * row_size;
  if (total == 0) return {};
  auto kernel = scale_first ? SparseAllRowsKernel<T, true> : SparseAllRowsKernel<T, false>;
  kernel<<<Blocks(total), kThreads, 0, stream>>>(var_t, m_t, v_t, rows, row_size, s, sums,
                                                 v_term_sums, scalars);
  return LastLaunchError();
}

}  // namespace

// One switch over the storage type for each entry point.
#define TF_ADAM_OP_DISPATCH(dtype, CALL)              \
  switch (dtype) {                                    \
    case Dtype::kHalf: return CALL(__half);           \
    case Dtype::kBfloat16: return CALL(__nv_bfloat16); \
    case Dtype::kFloat: return CALL(float);           \
    case Dtype::kDouble: return CALL(double);         \
  }                                                   \
  return "unknown dtype"

std::string LaunchDense(void* stream, Dtype dtype, bool use_nesterov, void* var, void* m, void* v,
                        const void* grad, int64_t n, const Scalars& scalars) {
#define CALL(T) Dense<T>(static_cast<cudaStream_t>(stream), use_nesterov, var, m, v, grad, n, scalars)
  TF_ADAM_OP_DISPATCH(dtype, CALL);
#undef CALL
}

std::string LaunchMulti(void* stream, Dtype dtype, bool use_nesterov,
                        const std::vector<TensorPointers>& tensors, const Scalars& scalars) {
#define CALL(T) Multi<T>(static_cast<cudaStream_t>(stream), use_nesterov, tensors, scalars)
  TF_ADAM_OP_DISPATCH(dtype, CALL);
#undef CALL
}

std::string LaunchSparse(void* stream, Dtype dtype, bool lazy, bool scale_first, void* var,
                         void* m, void* v, int64_t rows, int64_t row_size, const void* grad,
                         const void* v_term, const SparseSegments& segments, void* summed,
                         const Scalars& scalars) {
#define CALL(T)                                                                                  \
  Sparse<T>(static_cast<cudaStream_t>(stream), lazy, scale_first, var, m, v, rows, row_size, grad, \
            v_term, segments, summed, scalars)
  TF_ADAM_OP_DISPATCH(dtype, CALL);
#undef CALL
}
#undef TF_ADAM_OP_DISPATCH

std::string LaunchAdvancePowers(void* stream, void* beta1_power, void* beta2_power,
                                bool powers_are_double, const void* beta1, const void* beta2,
                                bool betas_are_double) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (powers_are_double && betas_are_double) {
    AdvancePowersKernel<double, double><<<1, 1, 0, s>>>(
        static_cast<double*>(beta1_power), static_cast<double*>(beta2_power),
        static_cast<const double*>(beta1), static_cast<const double*>(beta2));
  } else if (powers_are_double) {
    AdvancePowersKernel<double, float><<<1, 1, 0, s>>>(
        static_cast<double*>(beta1_power), static_cast<double*>(beta2_power),
        static_cast<const float*>(beta1), static_cast<const float*>(beta2));
  } else if (betas_are_double) {
    AdvancePowersKernel<float, double><<<1, 1, 0, s>>>(
        static_cast<float*>(beta1_power), static_cast<float*>(beta2_power),
        static_cast<const double*>(beta1), static_cast<const double*>(beta2));
  } else {
    AdvancePowersKernel<float, float><<<1, 1, 0, s>>>(
        static_cast<float*>(beta1_power), static_cast<float*>(beta2_power),
        static_cast<const float*>(beta1), static_cast<const float*>(beta2));
  }
  return LastLaunchError();
}

std::string CopyDeviceToDevice(void* stream, void* dst, const void* src, size_t bytes) {
  return Error(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice,
                               static_cast<cudaStream_t>(stream)));
}

std::string CopyHostToDevice(void* stream, void* dst, const void* src, size_t bytes) {
  return Error(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice,
                               static_cast<cudaStream_t>(stream)));
}

std::string CudaVersion() {
  return std::to_string(CUDART_VERSION / 1000) + "." + std::to_string(CUDART_VERSION % 1000 / 10);
}

}  // namespace gpu
}  // namespace tf_adam_op
