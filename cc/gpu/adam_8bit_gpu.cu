// CUDA kernels of the 8-bit-state ops: the bodies of adam_8bit_gpu_bodies.h, one thread per block of
// 256 elements, compiled as adam_gpu.cu is (--fmad=false, IEEE division and square root), so the
// codes and values are the CPU kernel's.
#include <cuda_runtime.h>

#include <mutex>

#include "core/adam_update_rule.h"
#include "core/blockwise_8bit.h"
#include "gpu/adam_8bit_gpu.h"
#include "gpu/adam_8bit_gpu_bodies.h"
#include "gpu/cuda_common.cuh"

namespace tf_adam_op {
namespace gpu {
namespace {

template <typename T, typename R>
__global__ void Dense8bitKernel(T* var, const T* grad, eight_bit::States8bit states, int64_t size,
                                Scalars scalars) {
  Dense8bitBody<T, R>(Position(), var, grad, states, size, LoadStep<OpMathT<T>>(scalars));
}

template <typename T>
__global__ void SumSegments8bitKernel(const T* grad, SparseSegments s, int64_t row_size,
                                      OpMathT<T>* summed) {
  SumSegmentsBody<T>(Position(), grad, s, row_size, summed);
}

template <typename T, typename R>
__global__ void Sparse8bitKernel(T* var, eight_bit::States8bit states, int64_t rows,
                                 int64_t row_size, const int64_t* blocks, int64_t n_blocks,
                                 SparseSegments s, const OpMathT<T>* summed,
                                 const OpMathT<T>* summed_v_term, bool lazy, Scalars scalars) {
  Sparse8bitBody<T, R>(Position(), var, states, rows, row_size, blocks, n_blocks, s, summed,
                       summed_v_term, lazy, LoadStep<OpMathT<T>>(scalars));
}

// Threads per launch: one per block of 256 elements.
int Grid(int64_t blocks) { return Blocks(blocks); }

template <typename T>
std::string Dense8bit(cudaStream_t stream, const Variant& variant, void* var, const void* grad,
                      int64_t size, const eight_bit::States8bit& states, const Scalars& scalars) {
  if (size == 0) return {};
  std::string error;
  WithDenseRule(variant, [&](auto rule) {
    Dense8bitKernel<T, decltype(rule)><<<Grid(eight_bit::BlockCount(size)), kThreads, 0, stream>>>(
        static_cast<T*>(var), static_cast<const T*>(grad), states, size, scalars);
    error = LastLaunchError();
  });
  return error;
}

template <typename T>
std::string Sparse8bit(cudaStream_t stream, bool lazy, const Variant& variant, void* var,
                       const eight_bit::States8bit& states, int64_t rows, int64_t row_size,
                       const void* grad, const void* v_term, const SparseSegments& s,
                       const int64_t* blocks, int64_t n_blocks, void* summed,
                       const Scalars& scalars) {
  using C = OpMathT<T>;
  C* sums = static_cast<C*>(summed);
  const int64_t named = s.unique * row_size;
  C* v_term_sums = v_term != nullptr ? sums + named : nullptr;
  if (named > 0) {
    SumSegments8bitKernel<T><<<Blocks(named), kThreads, 0, stream>>>(
        static_cast<const T*>(grad), s, row_size, sums);
    std::string error = LastLaunchError();
    if (!error.empty()) return error;
    if (v_term_sums != nullptr) {
      SumSegments8bitKernel<T><<<Blocks(named), kThreads, 0, stream>>>(
          static_cast<const T*>(v_term), s, row_size, v_term_sums);
      error = LastLaunchError();
      if (!error.empty()) return error;
    }
  }
  if (n_blocks == 0) return {};
  std::string error;
  WithSparseRule(variant, [&](auto rule) {
    Sparse8bitKernel<T, decltype(rule)><<<Grid(n_blocks), kThreads, 0, stream>>>(
        static_cast<T*>(var), states, rows, row_size, blocks, n_blocks, s, sums, v_term_sums,
        lazy, scalars);
    error = LastLaunchError();
  });
  return error;
}

}  // namespace

std::string DeviceCodebooks(const eight_bit::Codebook* books_out[2]) {
  static std::mutex mutex;
  static eight_bit::Codebook* books = nullptr;
  std::lock_guard<std::mutex> lock(mutex);
  if (books == nullptr) {
    eight_bit::Codebook* device = nullptr;
    std::string error = Error(cudaMalloc(&device, 2 * sizeof(eight_bit::Codebook)));
    if (!error.empty()) return error;
    const eight_bit::Codebook* host[2] = {&eight_bit::SignedCodebook(),
                                          &eight_bit::UnsignedCodebook()};
    for (int k = 0; k < 2; ++k) {
      error = Error(cudaMemcpy(device + k, host[k], sizeof(eight_bit::Codebook),
                               cudaMemcpyHostToDevice));
      if (!error.empty()) return error;
    }
    books = device;  // kept until the process ends
  }
  books_out[0] = books;
  books_out[1] = books + 1;
  return {};
}

std::string LaunchDense8bit(void* stream, Dtype dtype, const Variant& variant, void* var,
                            const void* grad, int64_t size, eight_bit::States8bit states,
                            const Scalars& scalars) {
  const eight_bit::Codebook* books[2];
  const std::string error = DeviceCodebooks(books);
  if (!error.empty()) return error;
  states.signed_book = books[0];
  states.unsigned_book = books[1];
#define CALL(T) Dense8bit<T>(static_cast<cudaStream_t>(stream), variant, var, grad, size, states, scalars)
  TF_ADAM_OP_DISPATCH(dtype, CALL);
#undef CALL
}

std::string LaunchSparse8bit(void* stream, Dtype dtype, bool lazy, const Variant& variant,
                             void* var, eight_bit::States8bit states, int64_t rows,
                             int64_t row_size, const void* grad, const void* v_term,
                             const SparseSegments& segments, const int64_t* blocks,
                             int64_t n_blocks, void* summed, const Scalars& scalars) {
  const eight_bit::Codebook* books[2];
  const std::string error = DeviceCodebooks(books);
  if (!error.empty()) return error;
  states.signed_book = books[0];
  states.unsigned_book = books[1];
#define CALL(T)                                                                              \
  Sparse8bit<T>(static_cast<cudaStream_t>(stream), lazy, variant, var, states, rows, row_size, \
                grad, v_term, segments, blocks, n_blocks, summed, scalars)
  TF_ADAM_OP_DISPATCH(dtype, CALL);
#undef CALL
}
#undef TF_ADAM_OP_DISPATCH

}  // namespace gpu
}  // namespace tf_adam_op
