// What both CUDA files of the Adam ops share (adam_gpu.cu, adam_8bit_gpu.cu): the arithmetic type
// of CUDA's half and bfloat16, the launch configuration and the error of a launch.
#ifndef TF_ADAM_OP_GPU_CUDA_COMMON_CUH_
#define TF_ADAM_OP_GPU_CUDA_COMMON_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <string>

#include "core/adam_update_rule.h"
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

constexpr int kThreads = 256;

inline std::string Error(cudaError_t status) {
  return status == cudaSuccess ? std::string() : std::string(cudaGetErrorString(status));
}

inline std::string LastLaunchError() { return Error(cudaGetLastError()); }

// Enough blocks to fill the device (a grid-stride loop covers the rest), never more than needed.
inline int Blocks(int64_t elements) {
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

// One switch over the storage type for each entry point: CALL(T) for CUDA's type of `dtype`.
#define TF_ADAM_OP_DISPATCH(dtype, CALL)              \
  switch (dtype) {                                    \
    case Dtype::kHalf: return CALL(__half);           \
    case Dtype::kBfloat16: return CALL(__nv_bfloat16); \
    case Dtype::kFloat: return CALL(float);           \
    case Dtype::kDouble: return CALL(double);         \
  }                                                   \
  return "unknown dtype"

}  // namespace gpu
}  // namespace tf_adam_op

#endif  // TF_ADAM_OP_GPU_CUDA_COMMON_CUH_
