// The CUDA side of the Adam ops, behind an interface with neither CUDA nor TensorFlow types, so the
// OpKernels (plain C++, compiled by the host compiler) and the kernels (compiled by nvcc) meet here.
//
// Every launch goes on the caller's stream (TF's stream for the op), with a launch configuration
// derived from the size, and never synchronises. Scalars (lr, beta powers, ...) are read by the
// kernels from device memory: no host round trip. Each function returns an empty string on success
// or CUDA's error message, which the caller turns into a TF error status.
#ifndef TF_ADAM_OP_GPU_ADAM_GPU_H_
#define TF_ADAM_OP_GPU_ADAM_GPU_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/update_arguments.h"

namespace tf_adam_op {
namespace gpu {

// Storage types of var, m, v and grad. Half and bfloat16 are computed in float, rounded once.
enum class Dtype { kHalf, kBfloat16, kFloat, kDouble };

// Scalars are ScalarPointers into device memory.
using Scalars = ScalarPointers;

// The variant (nesterov, AMSGrad, weight decay; scale_first for the sparse kernels) picks one of
// the rule's compiled forms; the weight decay scalar is scalars.weight_decay, vhat the
// TensorPointers' (or LaunchSparse's) vhat.

// Dense: elements [0, t.size) of t.var, t.m, t.v (t.vhat) updated with t.grad.
std::string LaunchDense(void* stream, Dtype dtype, const Variant& variant, const TensorPointers& t,
                        const Scalars& scalars);

// Multi-tensor: all tensors in one launch per kMaxTensorsPerLaunch tensors (their pointers travel
// as kernel arguments, as in apex's multi_tensor_apply; nothing is copied to the device first).
constexpr int kMaxTensorsPerLaunch = 48;
std::string LaunchMulti(void* stream, Dtype dtype, const Variant& variant,
                        const std::vector<TensorPointers>& tensors, const Scalars& scalars);

// beta1_power *= beta1, beta2_power *= beta2, in the powers' type, after the updates on the stream.
std::string LaunchAdvancePowers(void* stream, void* beta1_power, void* beta2_power,
                                bool powers_are_double, const void* beta1, const void* beta2,
                                bool betas_are_double);

// Sparse. The host has validated the indices and sorted them (stably) into segments: `order` lists
// the positions of the gradient rows grouped by row, segment k covering
// order[segment_starts[k] .. segment_starts[k + 1]) and naming row unique_rows[k] (ascending).
// All three arrays are device int64. `summed` is device scratch of unique * row_size elements of
// the compute type, twice that when `v_term` (v's gradient term, laid out as grad) is given; it is
// null otherwise, and the kernel computes the term from the gradient. Duplicate rows are summed
// in input order from zero, without atomics, so results are deterministic and equal the CPU
// kernel's. vhat is null without AMSGrad.
struct SparseSegments {
  const int64_t* order;
  const int64_t* segment_starts;
  const int64_t* unique_rows;
  int64_t unique;
};
std::string LaunchSparse(void* stream, Dtype dtype, bool lazy, const Variant& variant, void* var,
                         void* m, void* v, void* vhat, int64_t rows, int64_t row_size,
                         const void* grad, const void* v_term, const SparseSegments& segments,
                         void* summed, const Scalars& scalars);

// The host-side segments (PackSegments in adam_gpu_bodies.h: order, segment starts, unique rows)
// copied into `device` (device int64, packed.size() of them) on the stream, and *out their view
// there. `n` is the number of gradient rows, `unique` of segments.
std::string UploadSegments(void* stream, const std::vector<int64_t>& packed, int64_t* device,
                           int64_t n, int64_t unique, SparseSegments* out);

// The message of the error a caller reports for a launcher's `error` ("" on success): the same
// words whether an op kernel or an XLA custom call made the launch.
inline std::string FailureMessage(const std::string& error, const char* what) {
  if (error.empty()) return error;
  return "tf_adam_op: " + std::string(what) + " failed on the GPU: " + error;
}

// Asynchronous copies on the stream. A host source may be freed when the call returns (pageable
// memory is staged before the call returns).
std::string CopyDeviceToDevice(void* stream, void* dst, const void* src, size_t bytes);
std::string CopyHostToDevice(void* stream, void* dst, const void* src, size_t bytes);
// A copy to host memory that returns when the data is there (after the stream's earlier work).
std::string CopyDeviceToHostAndWait(void* stream, void* dst, const void* src, size_t bytes);
// Returns when all work queued on the stream so far has run.
std::string SynchronizeStream(void* stream);

// The CUDA runtime this library was built with, e.g. "13.0".
std::string CudaVersion();

}  // namespace gpu
}  // namespace tf_adam_op

#endif  // TF_ADAM_OP_GPU_ADAM_GPU_H_
