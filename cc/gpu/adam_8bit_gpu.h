// The CUDA side of the 8-bit-state ops, behind an interface without CUDA or TensorFlow types (as
// adam_gpu.h): launches on the caller's stream, scalars read from device memory, "" or CUDA's
// error message returned.
#ifndef TF_ADAM_OP_GPU_ADAM_8BIT_GPU_H_
#define TF_ADAM_OP_GPU_ADAM_8BIT_GPU_H_

#include <cstdint>
#include <string>

#include "core/blockwise_8bit.h"
#include "core/update_arguments.h"
#include "gpu/adam_gpu.h"

namespace tf_adam_op {
namespace gpu {

// The two codebooks (signed, unsigned) in device memory, copied there on first use (once per
// process: one device is assumed). *books_out gets {signed, unsigned}.
std::string DeviceCodebooks(const eight_bit::Codebook* books_out[2]);

// Dense: every block of `size` elements of var (dtype) and grad, their states in `states` (device
// pointers; the codebook pointers are filled in here).
std::string LaunchDense8bit(void* stream, Dtype dtype, const Variant& variant, void* var,
                            const void* grad, int64_t size, eight_bit::States8bit states,
                            const Scalars& scalars);

// Sparse: `blocks` (device int64, n_blocks of them) are the blocks to update (lazy: those holding
// a named row's element; otherwise every block); segments, summed (and v_term) as LaunchSparse's.
std::string LaunchSparse8bit(void* stream, Dtype dtype, bool lazy, const Variant& variant,
                             void* var, eight_bit::States8bit states, int64_t rows,
                             int64_t row_size, const void* grad, const void* v_term,
                             const SparseSegments& segments, const int64_t* blocks,
                             int64_t n_blocks, void* summed, const Scalars& scalars);

}  // namespace gpu
}  // namespace tf_adam_op

#endif  // TF_ADAM_OP_GPU_ADAM_8BIT_GPU_H_
