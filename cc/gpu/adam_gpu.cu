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
#include "gpu/cuda_common.cuh"

namespace tf_adam_op {

namespace gpu {
namespace {

// The kernels: each thread reads the scalars and runs its part of the body (adam_gpu_bodies.h).
// R is the rule: one kernel per dtype and variant (core/adam_update_rule.h's WithDenseRule and
// WithSparseRule pick it on the host).
template <typename T, typename R>
__global__ void DenseKernel(T* var, T* m, T* v, T* vhat, const T* grad, int64_t n,
                            Scalars scalars) {
  DenseBody<T, R>(Position(), var, m, v, vhat, grad, n, LoadStep<OpMathT<T>>(scalars));
}

template <typename T, typename R>
__global__ void MultiKernel(MultiArgs<T> args, Scalars scalars) {
  MultiBody<T, R>(Position(), args, LoadStep<OpMathT<T>>(scalars));
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

template <typename T, typename R>
__global__ void SparseLazyKernel(T* var, T* m, T* v, T* vhat, int64_t row_size, SparseSegments s,
                                 const OpMathT<T>* summed, const OpMathT<T>* summed_v_term,
                                 Scalars scalars) {
  SparseLazyBody<T, R>(Position(), var, m, v, vhat, row_size, s, summed, summed_v_term,
                       LoadStep<OpMathT<T>>(scalars));
}

template <typename T, typename R>
__global__ void SparseAllRowsKernel(T* var, T* m, T* v, T* vhat, int64_t rows, int64_t row_size,
                                    SparseSegments s, const OpMathT<T>* summed,
                                    const OpMathT<T>* summed_v_term, Scalars scalars) {
  SparseAllRowsBody<T, R>(Position(), var, m, v, vhat, rows, row_size, s, summed, summed_v_term,
                          LoadStep<OpMathT<T>>(scalars));
}

template <typename T>
std::string Dense(cudaStream_t stream, const Variant& variant, const TensorPointers& t,
                  const Scalars& scalars) {
  if (t.size == 0) return {};
  std::string error;
  WithDenseRule(variant, [&](auto rule) {
    DenseKernel<T, decltype(rule)><<<Blocks(t.size), kThreads, 0, stream>>>(
        static_cast<T*>(t.var), static_cast<T*>(t.m), static_cast<T*>(t.v),
        static_cast<T*>(t.vhat), static_cast<const T*>(t.grad), t.size, scalars);
    error = LastLaunchError();
  });
  return error;
}

template <typename T>
std::string Multi(cudaStream_t stream, const Variant& variant,
                  const std::vector<TensorPointers>& tensors, const Scalars& scalars) {
  std::string error;
  WithDenseRule(variant, [&](auto rule) {
    error = ForEachMultiLaunch<T>(tensors, [&](const MultiArgs<T>& args) {
      MultiKernel<T, decltype(rule)>
          <<<Blocks(args.offsets[args.count]), kThreads, 0, stream>>>(args, scalars);
      return LastLaunchError();
    });
  });
  return error;
}

template <typename T>
std::string Sparse(cudaStream_t stream, bool lazy, const Variant& variant, void* var, void* m,
                   void* v, void* vhat, int64_t rows, int64_t row_size, const void* grad,
                   const void* v_term, const SparseSegments& s, void* summed,
                   const Scalars& scalars) {
  using C = OpMathT<T>;
  C* sums = static_cast<C*>(summed);
  const int64_t named = s.unique * row_size;
  C* v_term_sums = v_term != nullptr ? sums + named : nullptr;  // the scratch's second half
  T* var_t = static_cast<T*>(var);
  T* m_t = static_cast<T*>(m);
  T* v_t = static_cast<T*>(v);
  T* vhat_t = static_cast<T*>(vhat);
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
  const int64_t total = lazy ? named : rows * row_size;
  if (total == 0) return {};
  std::string error;
  WithSparseRule(variant, [&](auto rule) {
    using R = decltype(rule);
    if (lazy) {
      SparseLazyKernel<T, R><<<Blocks(total), kThreads, 0, stream>>>(
          var_t, m_t, v_t, vhat_t, row_size, s, sums, v_term_sums, scalars);
    } else {
      SparseAllRowsKernel<T, R><<<Blocks(total), kThreads, 0, stream>>>(
          var_t, m_t, v_t, vhat_t, rows, row_size, s, sums, v_term_sums, scalars);
    }
    error = LastLaunchError();
  });
  return error;
}

}  // namespace


std::string LaunchDense(void* stream, Dtype dtype, const Variant& variant, const TensorPointers& t,
                        const Scalars& scalars) {
#define CALL(T) Dense<T>(static_cast<cudaStream_t>(stream), variant, t, scalars)
  TF_ADAM_OP_DISPATCH(dtype, CALL);
#undef CALL
}

std::string LaunchMulti(void* stream, Dtype dtype, const Variant& variant,
                        const std::vector<TensorPointers>& tensors, const Scalars& scalars) {
#define CALL(T) Multi<T>(static_cast<cudaStream_t>(stream), variant, tensors, scalars)
  TF_ADAM_OP_DISPATCH(dtype, CALL);
#undef CALL
}

std::string LaunchSparse(void* stream, Dtype dtype, bool lazy, const Variant& variant, void* var,
                         void* m, void* v, void* vhat, int64_t rows, int64_t row_size,
                         const void* grad, const void* v_term, const SparseSegments& segments,
                         void* summed, const Scalars& scalars) {
#define CALL(T)                                                                                   \
  Sparse<T>(static_cast<cudaStream_t>(stream), lazy, variant, var, m, v, vhat, rows, row_size,   \
            grad, v_term, segments, summed, scalars)
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

std::string UploadSegments(void* stream, const std::vector<int64_t>& packed, int64_t* device,
                           int64_t n, int64_t unique, SparseSegments* out) {
  if (!packed.empty()) {
    const std::string copied =
        CopyHostToDevice(stream, device, packed.data(), packed.size() * sizeof(int64_t));
    if (!copied.empty()) return copied;
  }
  *out = PackedSegmentsAt(device, n, unique);
  return "";
}

std::string CopyDeviceToHostAndWait(void* stream, void* dst, const void* src, size_t bytes) {
  const std::string queued = Error(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost,
                                                   static_cast<cudaStream_t>(stream)));
  return queued.empty() ? SynchronizeStream(stream) : queued;
}

std::string SynchronizeStream(void* stream) {
  return Error(cudaStreamSynchronize(static_cast<cudaStream_t>(stream)));
}

std::string CudaVersion() {
  return std::to_string(CUDART_VERSION / 1000) + "." + std::to_string(CUDART_VERSION % 1000 / 10);
}

}  // namespace gpu
}  // namespace tf_adam_op
